#!/usr/bin/env bash
# What the `peers` benchmark (aggregator/benches/peers/) compares crowdflow with:
# PostgreSQL with the postgresql-hll extension (Debian's postgresql-15-hll). The benchmark
# calls this script itself; run by hand it prepares the same things.
#
#   bash scripts/peers.sh install      # Debian's postgresql, postgresql-NN-hll and mosquitto, if missing
#   bash scripts/peers.sh start DIR    # a PostgreSQL cluster in DIR on a free port; prints its URL
#   bash scripts/peers.sh stop DIR     # stops that cluster (its data stays in DIR for the next run)
#
# With CROWDFLOW_TEST_POSTGRES=URL set, `start` prints that URL instead of starting a server
# (the server must have the extension installed: `install` does that for a local Debian one).
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

install() {
    [ -n "$(pg_bin)" ] || apt_install postgresql
    local major
    major=$(basename "$(dirname "$(pg_bin)")")
    [ -f "/usr/share/postgresql/$major/extension/hll.control" ] || apt_install "postgresql-$major-hll"
    # The ingest part's external broker.
    ensure_mosquitto
}

start() {
    local dir=$1
    if [ -n "${CROWDFLOW_TEST_POSTGRES:-}" ]; then
        echo "$CROWDFLOW_TEST_POSTGRES"
        return 0
    fi
    local bin port run=()
    bin=$(pg_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # initdb refuses to run as root: run the server as the package's postgres user.
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        run=(runuser -u postgres --)
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    port=$(free_port)
    # The benchmark's server is tuned like a production one for reads (shared buffers big
    # enough for the week of data's hot part), not for durability of a throwaway load.
    "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
        "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c shared_buffers=1GB" \
        start >/dev/null || { cat "$dir/server.log" >&2; die "PostgreSQL did not start"; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1
    [ -n "${CROWDFLOW_TEST_POSTGRES:-}" ] && return 0
    local run=()
    [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?start needs a directory}" ;;
    stop) stop "${2:?stop needs a directory}" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
