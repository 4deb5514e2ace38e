#!/usr/bin/env bash
# A real browser for the tests of the HTML pages Tandem ships (Debian's Chromium, headless).
#
#   scripts/browser.sh install     make sure Chromium is installed (apt-get as root); prints its path
set -euo pipefail
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

find_browser() {
    local b
    for b in chromium chromium-browser google-chrome; do
        command -v "$b" >/dev/null 2>&1 && { command -v "$b"; return 0; }
    done
    return 1
}

install() {
    find_browser && return 0
    apt_install browser.sh Chromium chromium
    find_browser
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: scripts/browser.sh install" >&2; exit 2 ;;
esac
