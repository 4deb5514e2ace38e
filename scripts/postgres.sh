#!/usr/bin/env bash
# A throw-away PostgreSQL server for the store tests, on 127.0.0.1 only.
#
#   scripts/postgres.sh install          make sure the server binaries are installed (apt-get as root)
#   scripts/postgres.sh start [PORT]     init a fresh cluster in a temp folder, start it; prints "URL DATADIR"
#                                        (fsync off unless TANDEM_PG_FSYNC=on: the benchmarks turn it on)
#   scripts/postgres.sh stop DATADIR     stop that cluster and delete its folder
set -euo pipefail
# shellcheck source=scripts/apt.sh
. "$(dirname "$0")/apt.sh"

find_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

install() {
    find_bin >/dev/null && return 0
    apt_install postgres.sh PostgreSQL postgresql
    find_bin >/dev/null
}

as_owner() {   # run a server command as the cluster owner (PostgreSQL refuses to run as root)
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local port="${1:-0}" bin dir
    install
    bin="$(find_bin)"
    if [ "$port" = 0 ]; then
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    dir="$(mktemp -d /tmp/tandem-pg.XXXXXX)"
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && { id postgres >/dev/null 2>&1 || as_owner true; chown postgres "$dir"; }
    as_owner "$bin/initdb" -D "$dir/data" -U tandem --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=${TANDEM_PG_FSYNC:-off}" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U tandem tandem
    echo "postgresql+psycopg://tandem@127.0.0.1:$port/tandem $dir"
}

stop() {
    local dir="$1" bin
    bin="$(find_bin)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    install) install ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    *) echo "usage: $0 install | start [PORT] | stop DATADIR" >&2; exit 2 ;;
esac
