#!/usr/bin/env bash
# What the network lab (tandem/netlab.py) needs: iproute2's `ip` and `tc` (network namespaces, tbf)
# and iptables (partitions), used inside a namespace of the lab's own, as root.
#
#   scripts/netlab.sh install     make sure iptables is installed (apt-get as root)
set -euo pipefail
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

have() {
    command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 \
        && { command -v iptables >/dev/null 2>&1 || command -v iptables-legacy >/dev/null 2>&1; }
}

install() {
    have && return 0
    apt_install netlab.sh iptables/iproute2 iptables iproute2
    have
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: scripts/netlab.sh install" >&2; exit 2 ;;
esac
