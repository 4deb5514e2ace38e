#!/usr/bin/env bash
# A real browser for the tests of the HTML pages Tandem ships (Debian's Chromium, headless).
#
#   scripts/browser.sh install     make sure Chromium is installed (apt-get as root); prints its path
set -euo pipefail

find_browser() {
    local b
    for b in chromium chromium-browser google-chrome; do
        command -v "$b" >/dev/null 2>&1 && { command -v "$b"; return 0; }
    done
    return 1
}

install() {
    find_browser && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "browser.sh: Chromium is not installed and cannot be installed here (need root and apt-get)" >&2
        return 1
    fi
    echo "browser.sh: installing Chromium with apt-get" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    find_browser
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: scripts/browser.sh install" >&2; exit 2 ;;
esac
