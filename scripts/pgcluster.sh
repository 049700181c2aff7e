#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for the demo, the tests and the benchmarks.
# PostgreSQL refuses to run as root, so the cluster belongs to the `postgres` user; it lives in a
# directory of the caller's choosing, listens on 127.0.0.1 on a free port, and is stopped by pid.
#   scripts/pgcluster.sh start DIR   -> initialises (once) and starts; prints the port on stdout
#   scripts/pgcluster.sh stop DIR    -> fast shutdown, waits until the postmaster is gone
#   scripts/pgcluster.sh kill DIR    -> immediate shutdown (for crash tests)
# Authentication is `trust` on loopback only: the cluster holds demo or test data and nothing else.
set -euo pipefail

cmd=${1:?usage: pgcluster.sh start|stop|kill DIR}
dir=${2:?usage: pgcluster.sh start|stop|kill DIR}
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/postgres" ] || { echo "PostgreSQL 15 is not installed (scripts/install-deps.sh)" >&2; exit 1; }

as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    # the postgres user must be able to reach DIR: grant search (not read) on its parent
    chmod a+x "$(dirname "$dir")"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=${PGCLUSTER_PORT:-$(free_port)}
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PGCLUSTER_FSYNC:-on} -c max_connections=200" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    echo "$port"
    ;;
  stop | kill)
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    mode=fast; [ "$cmd" = kill ] && mode=immediate
    as_pg "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 30 stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: pgcluster.sh start|stop|kill DIR" >&2; exit 2 ;;
esac
