#!/usr/bin/env bash
# `make demo`: the service against a throw-away PostgreSQL filled with 50 demo enterprises.
# Starts a private cluster (scripts/pgcluster.sh) in a temporary directory, seeds it
# (scripts/seed.py), applies the migrations, prints a few commands to try, and runs the service
# until Ctrl-C or until it exits. Every exit path stops what was started -- the service by its pid,
# the cluster through pgcluster.sh -- and removes the temporary directory.
#   IC_LISTEN=127.0.0.1:8020 (default) chooses the service address.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/build/integration_cache
listen=${IC_LISTEN:-127.0.0.1:8020}

[ -x "$bin" ] || { echo "demo: $bin not found; run 'make build' first" >&2; exit 1; }
command -v psql >/dev/null ||
  { echo "demo: psql not found (scripts/install-deps.sh test)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ic-demo.XXXXXX")
svc_pid=""

# Runs once, on any exit: a normal end, an error under `set -e`, Ctrl-C or SIGTERM.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$svc_pid" ] && kill -0 "$svc_pid" 2>/dev/null; then
    kill -TERM "$svc_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$svc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" 2>/dev/null || true
  fi
  "$root/scripts/pgcluster.sh" stop "$tmp/pg" || true
  rm -rf "$tmp"
  echo "demo: stopped, temporary cluster removed" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting PostgreSQL in $tmp/pg" >&2
port=$(PGCLUSTER_FSYNC=off "$root/scripts/pgcluster.sh" start "$tmp/pg")
db="host=127.0.0.1 port=$port user=postgres dbname=postgres"

echo "demo: seeding 50 enterprises (0100-0149) and three edge cases (0150-0152)" >&2
python3 "$root/scripts/seed.py" --count 50 |
  PGCLIENTENCODING=UTF8 psql "$db" -X -q -v ON_ERROR_STOP=1 >/dev/null

DATABASE_URL=$db "$bin" migrate

# In the background so that this script keeps its traps; `wait` below is the foreground.
DATABASE_URL=$db "$bin" serve --listen "$listen" </dev/null &
svc_pid=$!

for _ in $(seq 150); do
  kill -0 "$svc_pid" 2>/dev/null || break
  curl -fs -o /dev/null "http://$listen/ready" && break
  sleep 0.1
done
if ! kill -0 "$svc_pid" 2>/dev/null; then
  status=0
  wait "$svc_pid" || status=$?
  svc_pid=""
  echo "demo: the service exited during start-up with status $status" >&2
  exit "$status"
fi

url=http://$listen
cat <<EOF

  Integration Cache Service demo -- $url  (Ctrl-C stops everything)

  curl -s $url/integrations/0101
  curl -s $url/config/0101
  curl -s $url/config/0101/ms
  curl -s $url/stats
  curl -s $url/health

  LISTEN/NOTIFY at work -- disable ms for 0101 in the database, then ask again:
  psql "$db" -c "UPDATE enterprises SET integrations_config = jsonb_set(integrations_config, '{ms,enabled}', 'false') WHERE number = '0101'"
  curl -s $url/integrations/0101

EOF

status=0
wait "$svc_pid" || status=$?
svc_pid=""
echo "demo: service exited with status $status" >&2
exit "$status"
