#!/usr/bin/env bash
# What the network lab (tandem/netlab.py) needs: iproute2's `ip` and `tc` (network namespaces, tbf)
# and iptables (partitions), used inside a namespace of the lab's own, as root.
#
#   scripts/netlab.sh install     make sure iptables is installed (apt-get as root)
set -euo pipefail

have() {
    command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 \
        && { command -v iptables >/dev/null 2>&1 || command -v iptables-legacy >/dev/null 2>&1; }
}

install() {
    have && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "netlab.sh: iptables/iproute2 are not installed and cannot be installed here (need root and apt-get)" >&2
        return 1
    fi
    echo "netlab.sh: installing iptables and iproute2 with apt-get" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >&2
    have
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: scripts/netlab.sh install" >&2; exit 2 ;;
esac
