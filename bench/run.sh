#!/usr/bin/env bash
# `make bench`: throughput and update-to-served delay of the Integration Cache Service, measured
# against nginx serving the same bytes as the ceiling for a small-JSON HTTP server on this machine.
#
#   bench/run.sh BINARY            (make bench passes build-bench/integration_cache, a Release build)
#
# Everything lives in a temporary directory: a throw-away PostgreSQL (scripts/pgcluster.sh, fsync
# off) seeded with 1,000 enterprises by scripts/seed.py, the service on a free loopback port with
# default settings, and nginx from a private prefix answering GET /integrations/* with a real body
# of the service. Every exit path (normal end, error under `set -e`, Ctrl-C, SIGTERM) stops what was
# started, by pid, and removes the directory (BENCH_KEEP=1 keeps it for a look at the logs).
#
# Steps: (1) set-up; (2) wrk at 1 and 50 connections, alternating the two servers, several rounds,
# with server CPU from /proc/PID/stat; (3) update-to-served delay with bench/lag_probe.py, idle and
# under load; (4) dispatch intake: POST /dispatch/call-event (bench/dispatch.lua) at 1 and 50
# connections against a second service on a second PostgreSQL with fsync=on (durable commits),
# its three delivery targets stood in for by nginx answering at once, then a check that the outbox
# drains; (5) the summary on stdout and in docs/PERFORMANCE.md (bench/report.py).
# Nothing here is a pass/fail assertion: a run with errors is reported as such, not as a number.
# The exit status is non-zero only when the bench itself could not run (e.g. the service did not
# start). Knobs: BENCH_DURATION (s per run, 5), BENCH_WARMUP (s, 1), BENCH_ROUNDS (5),
# BENCH_LAG_SAMPLES (100), BENCH_DISPATCH_DURATION (s per dispatch run, 3), BENCH_DRAIN_DEADLINE
# (s the outbox gets to drain after the last dispatch run, 25), BENCH_OUT (docs/PERFORMANCE.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

[ $# -eq 1 ] || { echo "usage: bench/run.sh BINARY" >&2; exit 2; }
bin=$(realpath -e "$1" 2>/dev/null) || { echo "bench: $1 not found" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: $bin is not executable" >&2; exit 1; }

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-5}
LAG_SAMPLES=${BENCH_LAG_SAMPLES:-100}
DISPATCH_DURATION=${BENCH_DISPATCH_DURATION:-3}
DRAIN_DEADLINE=${BENCH_DRAIN_DEADLINE:-25}
OUT=${BENCH_OUT:-$root/docs/PERFORMANCE.md}
FIRST=1000 # enterprises 1000..1999: four digits each, so every /integrations path has one length
COUNT=1000
CONFIG_BYTES=2000 # integrations_config size per enterprise, as seed.py suggests for benchmarks
# connections:wrk-threads pairs; wrk gets one thread per 25 connections at most (2 cores here)
LOADS=("1:1" "50:2")

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in wrk nginx curl psql pgrep python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh bench)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ic-bench.XXXXXX")
mkdir -p "$tmp/wrk"
svc_pid="" nginx_pid="" load_pid="" dsp_pid=""

# Stops one process we started: SIGTERM, up to 10 s of grace, then SIGKILL.
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Runs once, on any exit.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ "$status" -ne 0 ]; then
    for f in service dispatch-service; do
      [ -f "$tmp/$f.log" ] || continue
      log "last lines of $f.log:"
      tail -n 20 "$tmp/$f.log" >&2
    done
  fi
  stop_pid "$load_pid" INT
  stop_pid "$dsp_pid" TERM
  stop_pid "$nginx_pid" TERM
  stop_pid "$svc_pid" TERM
  [ -d "$tmp/pg" ] && "$root/scripts/pgcluster.sh" stop "$tmp/pg"
  [ -d "$tmp/pgd" ] && "$root/scripts/pgcluster.sh" stop "$tmp/pgd"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL PID SECONDS: until URL answers 200, the process dies, or the deadline passes.
wait_http() {
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || die "process $pid exited while waiting for $url"
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.05
  done
  die "no 200 from $url within $3 s"
}

# cpu_ticks PID...: utime + stime of the processes (all their threads), in clock ticks.
# The comm field may hold spaces, so everything up to ") " is cut before counting fields.
cpu_ticks() {
  local pid sum=0 fields
  for pid in "$@"; do
    read -r fields <"/proc/$pid/stat"
    fields=${fields##*) }
    read -r -a f <<<"$fields"
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}

# cpu_each STATFILE...: utime + stime in clock ticks of each /proc/.../stat file, one per line
# (0 for one that has gone). Used for the per-worker / per-thread split of the server's CPU.
cpu_each() {
  local file fields
  for file in "$@"; do
    if read -r fields <"$file" 2>/dev/null; then
      fields=${fields##*) }
      read -r -a f <<<"$fields"
      echo $((f[11] + f[12]))
    else
      echo 0
    fi
  done
}

# machine_busy: busy clock ticks of the whole machine (all cores) from /proc/stat; set against the
# server's and wrk's CPU it shows whether something else ran during a measurement.
machine_busy() {
  local _cpu user nice system _idle _iowait irq softirq _rest
  read -r _cpu user nice system _idle _iowait irq softirq _rest </proc/stat
  echo $((user + nice + system + irq + softirq))
}

# stats_get NAME [PORT]: one integer member of a service's /stats (0 when it cannot be read);
# PORT defaults to the cache service's.
stats_get() {
  local v
  v=$(curl -fsS --max-time 2 "http://127.0.0.1:${2:-$svc_port}/stats" | grep -o "\"$1\":[0-9]*" | cut -d: -f2) || true
  echo "${v:-0}"
}

# meta KEY VALUE: facts for the report.
meta() { printf '%s\t%s\n' "$1" "$2" >>"$tmp/meta.tsv"; }

# ---------------------------------------------------------------------------------------------
# 1. Set-up
# ---------------------------------------------------------------------------------------------
log "starting PostgreSQL in $tmp/pg"
pg_port=$(PGCLUSTER_FSYNC=off "$root/scripts/pgcluster.sh" start "$tmp/pg")
db="host=127.0.0.1 port=$pg_port user=postgres dbname=postgres"

log "seeding $COUNT enterprises ($FIRST..$((FIRST + COUNT - 1)), ~$CONFIG_BYTES-byte configs)"
python3 "$root/scripts/seed.py" --count "$COUNT" --first "$FIRST" --config-bytes "$CONFIG_BYTES" \
  --no-extras | PGCLIENTENCODING=UTF8 psql "$db" -X -q -v ON_ERROR_STOP=1 >/dev/null
served=$(psql "$db" -X -A -t -c \
  "SELECT count(*) FROM enterprises WHERE active AND integrations_config IS NOT NULL
     AND number ~ '^[0-9]{4}$' AND number::int BETWEEN $FIRST AND $((FIRST + COUNT - 1))")
[ "$served" -eq "$COUNT" ] || die "seed.py produced $served served enterprises in the range, not $COUNT"

DATABASE_URL=$db "$bin" migrate 2>"$tmp/migrate.log" || { cat "$tmp/migrate.log" >&2; die "migrate failed"; }

svc_port=$(free_port)
log "starting the service on 127.0.0.1:$svc_port"
DATABASE_URL=$db "$bin" serve --listen "127.0.0.1:$svc_port" </dev/null 2>"$tmp/service.log" &
svc_pid=$!
wait_http "http://127.0.0.1:$svc_port/ready" "$svc_pid" 30

# The reference body: what the service answers for the first enterprise, byte for byte.
body=$(curl -fsS "http://127.0.0.1:$svc_port/integrations/$FIRST")
case $body in
  *'$'*) die "the body contains '\$', which nginx's return directive would expand" ;;
esac
printf '%s' "$body" >"$tmp/body.json"
nginx_body=${body//\\/\\\\}
nginx_body=${nginx_body//\'/\\\'}

nginx_port=$(free_port)
# stand-ins for the three delivery targets of call-event dispatch (step 4), in the same nginx
rc_port=$(free_port) uon_port=$(free_port) ms_port=$(free_port)
workers=$(nproc)
nginx_user=""
# as root the workers would run as the compiled-in user; name Debian's web user explicitly
[ "$(id -u)" -eq 0 ] && id www-data >/dev/null 2>&1 && nginx_user="user www-data;"
mkdir -p "$tmp/nginx"
conf=$(<"$here/nginx.conf.in")
conf=${conf//@PREFIX@/"$tmp/nginx"}
conf=${conf//@WORKERS@/"$workers"}
conf=${conf//@PORT@/"$nginx_port"}
conf=${conf//@RETAILCRM_PORT@/"$rc_port"}
conf=${conf//@UON_PORT@/"$uon_port"}
conf=${conf//@MS_PORT@/"$ms_port"}
conf=${conf//@USER@/"$nginx_user"}
conf=${conf//@BODY@/"$nginx_body"}
printf '%s\n' "$conf" >"$tmp/nginx/nginx.conf"
log "starting nginx ($workers workers) on 127.0.0.1:$nginx_port"
nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" -g 'daemon off;' \
  </dev/null 2>"$tmp/nginx/stderr.log" &
nginx_pid=$!
wait_http "http://127.0.0.1:$nginx_port/integrations/$FIRST" "$nginx_pid" 10
[ "$(curl -fsS "http://127.0.0.1:$nginx_port/integrations/$FIRST")" = "$body" ] ||
  die "nginx does not answer the reference body"
for p in "$rc_port" "$uon_port" "$ms_port"; do
  [ "$(curl -fsS -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$p/internal/x")" = '{}' ] ||
    die "the nginx stand-in on port $p does not answer POST /internal/ with {}"
done

meta date "$(date '+%Y-%m-%d %H:%M:%S %Z')"
meta loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"
meta nproc "$(nproc)"
meta cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
meta kernel "$(uname -r)"
meta wrk "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
meta nginx "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
meta postgres "$(psql "$db" -X -A -t -c 'SHOW server_version')"
meta libmicrohttpd "$(dpkg-query -W -f='${Version}' libmicrohttpd12 2>/dev/null || echo unknown)"
meta commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
meta binary "${bin#"$root"/}"
meta service_threads "$(grep -o 'with [0-9]* threads' "$tmp/service.log" | head -n1 | awk '{print $2}')"
meta ic_threads "${IC_THREADS:-default}"
meta nginx_workers "$workers"
meta body_bytes "${#body}"
meta body "$body"
meta enterprises "$COUNT (numbers $FIRST..$((FIRST + COUNT - 1)))"
meta config_bytes "$CONFIG_BYTES"
meta duration "$DURATION"
meta warmup "$WARMUP"
meta rounds "$ROUNDS"
clk_tck=$(getconf CLK_TCK)
meta clk_tck "$clk_tck"
meta lag_samples "$LAG_SAMPLES"

# ---------------------------------------------------------------------------------------------
# 2. Throughput
# ---------------------------------------------------------------------------------------------
printf 'server\tconns\tthreads\tround\tstatus\trps\trequests\tp50_us\tp99_us\tmax_us\tnon200\tsocket_errors\tcpu_ticks\tcpu_split\twrk_cpu_s\tmachine_ticks\thits\tmisses\n' \
  >"$tmp/results.tsv"

# wrk_cmd PORT CONNS THREADS SECONDS: the wrk command line (printed into the report as well).
wrk_cmd() {
  echo wrk -t"$3" -c"$2" -d"$4"s --latency -s "$here/integrations.lua" "http://127.0.0.1:$1" -- "$FIRST" "$COUNT"
}

# measure SERVER CONNS THREADS ROUND SECONDS: one wrk run; appends a row to results.tsv unless
# ROUND is "warmup". Server CPU is read from /proc before and after; for nginx the master and all
# its workers count. cpu_split lists the CPU seconds of each nginx process / service thread that
# worked (did the load spread over the cores?). Before each run of ours the cache is refreshed
# (POST /cache/refresh, outside the measured window), so no entry reaches its 90 s TTL during the
# run and every request is a hit; the /stats deltas show whether that held.
measure() {
  local server=$1 conns=$2 threads=$3 round=$4 secs=$5
  local port pid pids statfiles out="$tmp/wrk/$server-c$conns-$round"
  if [ "$server" = ours ]; then
    port=$svc_port
    pids=("$svc_pid")
    statfiles=(/proc/"$svc_pid"/task/*/stat)
    curl -fsS -X POST --max-time 10 "http://127.0.0.1:$svc_port/cache/refresh" >/dev/null ||
      log "warning: POST /cache/refresh failed"
  else
    port=$nginx_port
    mapfile -t pids < <(echo "$nginx_pid"; pgrep -P "$nginx_pid")
    statfiles=()
    for pid in "${pids[@]}"; do statfiles+=("/proc/$pid/stat"); done
  fi
  local cmd hits0=0 misses0=0 ticks0 ticks1 each0 each1 busy0 busy1
  read -r -a cmd <<<"$(wrk_cmd "$port" "$conns" "$threads" "$secs")"
  [ "$round" = 1 ] && echo "${cmd[*]}" | sed "s|$here|bench|; s|$port|${server^^}_PORT|" >>"$tmp/commands.txt"
  if [ "$server" = ours ]; then hits0=$(stats_get hits); misses0=$(stats_get misses); fi
  ticks0=$(cpu_ticks "${pids[@]}")
  mapfile -t each0 < <(cpu_each "${statfiles[@]}")
  busy0=$(machine_busy)
  local TIMEFORMAT='%U %S'
  { time "${cmd[@]}" >"$out.out" 2>"$out.err"; } 2>"$out.time" || true
  busy1=$(machine_busy)
  ticks1=$(cpu_ticks "${pids[@]}")
  mapfile -t each1 < <(cpu_each "${statfiles[@]}")
  [ "$round" = warmup ] && return 0

  local hits=- misses=-
  if [ "$server" = ours ]; then
    hits=$(($(stats_get hits) - hits0))
    misses=$(($(stats_get misses) - misses0))
  fi
  local line status
  line=$(grep '^BENCH ' "$out.out" || true)
  local -A r=()
  for kv in $line; do
    case $kv in *=*) r[${kv%%=*}]=${kv#*=} ;; esac
  done
  local sock_err=$((${r[errors_connect]:-0} + ${r[errors_read]:-0} + ${r[errors_write]:-0} + ${r[errors_timeout]:-0}))
  if [ -z "$line" ]; then
    status="wrk failed: $(head -c 200 "$out.err" | tr '\n\t' '  ')"
  elif [ "${r[non200]}" -gt 0 ] || [ "$sock_err" -gt 0 ]; then
    status=errors
  else
    status=ok
  fi
  local wrk_cpu split="" i d
  wrk_cpu=$(awk '{printf "%.2f", $1 + $2}' "$out.time" 2>/dev/null || echo -)
  for i in "${!each1[@]}"; do
    d=$((each1[i] - each0[i]))
    [ "$d" -gt 0 ] && split+="${split:+/}$(awk -v t="$d" -v hz="$clk_tck" 'BEGIN{printf "%.2f", t / hz}')"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$server" "$conns" "$threads" "$round" "$status" "${r[rps]:--}" "${r[requests]:--}" \
    "${r[p50_us]:--}" "${r[p99_us]:--}" "${r[max_us]:--}" "${r[non200]:--}" "$sock_err" \
    "$((ticks1 - ticks0))" "${split:--}" "$wrk_cpu" "$((busy1 - busy0))" "$hits" "$misses" >>"$tmp/results.tsv"
  log "  $server c=$conns round $round: $status, ${r[rps]:-?} req/s, p99 ${r[p99_us]:-?} us"
}

for load in "${LOADS[@]}"; do
  conns=${load%%:*} threads=${load##*:}
  log "throughput at $conns connection(s): warm-up ${WARMUP}s each, then $ROUNDS rounds of ${DURATION}s"
  measure ours "$conns" "$threads" warmup "$WARMUP"
  measure nginx "$conns" "$threads" warmup "$WARMUP"
  for round in $(seq "$ROUNDS"); do
    # alternate which server goes first, so neither always runs on a machine just warmed by the other
    if [ $((round % 2)) -eq 1 ]; then order=(ours nginx); else order=(nginx ours); fi
    for server in "${order[@]}"; do
      measure "$server" "$conns" "$threads" "$round" "$DURATION"
    done
  done
done

# ---------------------------------------------------------------------------------------------
# 3. Update-to-served delay
# ---------------------------------------------------------------------------------------------
# psycopg2 comes from Debian (python3-psycopg2), i.e. for /usr/bin/python3, which may not be the
# first python3 on PATH.
probe_py=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import psycopg2' 2>/dev/null; then probe_py=$py; break; fi
done

# lag NAME: runs the probe, result in lag-NAME.json (or the reason it did not run in lag-NAME.err).
lag() {
  local name=$1
  if [ -z "$probe_py" ]; then
    echo "not measured: psycopg2 missing (apt-get install python3-psycopg2)" >"$tmp/lag-$name.err"
    return 0
  fi
  "$probe_py" "$here/lag_probe.py" --db "$db" --url "http://127.0.0.1:$svc_port" \
    --samples "$LAG_SAMPLES" >"$tmp/lag-$name.json" 2>"$tmp/lag-$name.err" ||
    log "lag probe ($name) failed: $(tail -n 1 "$tmp/lag-$name.err")"
}

log "update-to-served delay: $LAG_SAMPLES samples, idle"
lag idle

log "update-to-served delay: $LAG_SAMPLES samples, under load (wrk -t1 -c50 on the service)"
read -r -a load_cmd <<<"$(wrk_cmd "$svc_port" 50 1 60)"
meta lag_load_cmd "$(echo "${load_cmd[*]}" | sed "s|$here|bench|; s|$svc_port|OURS_PORT|")"
"${load_cmd[@]}" >"$tmp/wrk/lag-load.out" 2>&1 &
load_pid=$!
sleep 0.5 # let wrk open its connections; outside any sample
lag load
stop_pid "$load_pid" INT # wrk prints its summary (and our BENCH line) on SIGINT
load_pid=""
grep '^BENCH ' "$tmp/wrk/lag-load.out" >"$tmp/lag-load.wrk" || true

# ---------------------------------------------------------------------------------------------
# 4. Report
# ---------------------------------------------------------------------------------------------
curl -fsS --max-time 2 "http://127.0.0.1:$svc_port/stats" >"$tmp/stats.json" || echo '{}' >"$tmp/stats.json"
grep -E ' (WARN|ERROR) ' "$tmp/service.log" >"$tmp/service-warnings.log" || true
cp "$tmp/nginx/error.log" "$tmp/nginx-error.log" 2>/dev/null || : >"$tmp/nginx-error.log"
mkdir -p "$(dirname "$OUT")"
python3 "$here/report.py" --dir "$tmp" --out "$OUT"
log "wrote ${OUT#"$root"/}"
