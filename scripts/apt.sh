# Sourced by the service scripts: install Debian packages the tests need, once, as root.
#
#   apt_install SCRIPT WHAT PACKAGE...   e.g. apt_install browser.sh Chromium chromium
apt_install() {
    local script="$1" what="$2"
    shift 2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "$script: $what is not installed and cannot be installed here (need root and apt-get)" >&2
        return 1
    fi
    echo "$script: installing $what with apt-get" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
