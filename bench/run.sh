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
# under load; (4) dispatch intake: POST /dispatch/call-event (bench/dispatch.lua) at 1, 10, 25
# and 50 connections against a second service on a second PostgreSQL with fsync=on (durable commits),
# its three delivery targets stood in for by nginx answering at once, then a check that the outbox
# drains; (5) the summary on stdout and in docs/PERFORMANCE.md (bench/report.py), with gnuplot
# charts docs/perf-*.png. Step 2 covers GET /integrations/{n} and GET /config/{n}/{type} at 1, 50
# and 200 connections and 50 connections pipelining 10 requests each; step 3 adds the miss latency
# (bench/probe.py miss) and, with the cache service stopped, the cost growth (3b): full refresh
# time, RSS and GET latency during a refresh at 1k, 10k and 100k enterprises.
# Nothing here is a pass/fail assertion: a run with errors is reported as such, not as a number.
# The exit status is non-zero only when the bench itself could not run (e.g. the service did not
# start). Knobs: BENCH_DURATION (s per run, 3), BENCH_WARMUP (s, 1), BENCH_ROUNDS (3),
# BENCH_LAG_SAMPLES (1000), BENCH_DISPATCH_DURATION (s per dispatch run, 3), BENCH_DRAIN_BETWEEN
# (s the outbox gets to drain before each dispatch load after the first, 90), BENCH_DRAIN_DEADLINE
# (s the outbox gets to drain after the last dispatch run, 90), BENCH_OUT (docs/PERFORMANCE.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

[ $# -eq 1 ] || { echo "usage: bench/run.sh BINARY" >&2; exit 2; }
bin=$(realpath -e "$1" 2>/dev/null) || { echo "bench: $1 not found" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench: $bin is not executable" >&2; exit 1; }

DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
LAG_SAMPLES=${BENCH_LAG_SAMPLES:-1000}
DISPATCH_DURATION=${BENCH_DISPATCH_DURATION:-3}
DRAIN_DEADLINE=${BENCH_DRAIN_DEADLINE:-90}
# Each dispatch load starts from a drained outbox: deliveries (three per event) run slower than
# the intake, and each load should start from the same state, not from what the one before left.
DRAIN_BETWEEN=${BENCH_DRAIN_BETWEEN:-90}
OUT=${BENCH_OUT:-$root/docs/PERFORMANCE.md}
FIRST=1000 # enterprises 1000..1999: four digits each, so every /integrations path has one length
COUNT=1000
MISS_SAMPLES=${BENCH_MISS_SAMPLES:-1000}
GROWTH_SIZES=${BENCH_GROWTH_SIZES:-"1000 10000 100000"}
CONFIG_BYTES=2000 # integrations_config size per enterprise, as seed.py suggests for benchmarks
# connections:wrk-threads pairs; wrk gets one thread per 25 connections at most (2 cores here)
# dispatch loads, connections:wrk-threads: from one connection (one durable commit per event) to
# 50; wrk is a closed loop, so its latency at N connections is N / throughput on average, and the
# loads between show up to which concurrency the p99 stays low
LOADS=("1:1" "10:1" "25:1" "50:2")
# the cache-hit loads, connections:wrk-threads:pipeline depth (requests per write per connection)
CACHE_LOADS=("1:1:1" "50:2:1" "200:2:1" "50:2:10")

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

# ctx_switches STATFILE...: voluntary and involuntary context switches, summed over the threads /
# processes whose /proc/.../stat files are given (their status files beside them), as "VOL INVOL".
# A server thread that finds no work sleeps (voluntary); one that always has work is preempted
# (involuntary) and then waits for a core with its connections.
ctx_switches() {
  local file vol=0 invol=0 k v
  for file in "$@"; do
    while read -r k v; do
      case $k in
        voluntary_ctxt_switches:) vol=$((vol + v)) ;;
        nonvoluntary_ctxt_switches:) invol=$((invol + v)) ;;
      esac
    done < <(cat "${file%/stat}/status" 2>/dev/null)
  done
  echo "$vol $invol"
}

# timed_wrk OUT CMD...: runs one wrk command line; its output in OUT.out / OUT.err, its own user
# and system CPU seconds in OUT.time. A failure is left to wrk_outcome to report.
timed_wrk() {
  local out=$1 TIMEFORMAT='%U %S'
  shift
  { time "$@" >"$out.out" 2>"$out.err"; } 2>"$out.time" || true
}

# disk_written DEV: kB written to block device DEV so far (/proc/diskstats), or "-".
disk_written() {
  awk -v d="$1" '$3 == d {print $10 / 2; found = 1} END {if (!found) print "-"}' /proc/diskstats
}

# machine_steal: clock ticks the hypervisor gave to others while this machine wanted to run
# (/proc/stat "steal"); a stall nobody in the machine caused shows up here.
machine_steal() { awk '/^cpu / {print $9}' /proc/stat; }

# dirty_kb: the page cache's dirty and under-write-back data now, kB (/proc/meminfo).
dirty_kb() { awk '/^(Dirty|Writeback):/ {s += $2} END {print s + 0}' /proc/meminfo; }

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

# sql_of EXPR: the SQL text that a macro expression of src/*/queries.h expands to (through the C
# preprocessor, so it is exactly what the service sends); empty when that fails.
sql_of() {
  printf '#include "db/queries.h"\n#include "dispatch/queries.h"\n%s\n' "$1" |
    gcc -E -P -I "$root/src" - 2>/dev/null |
    python3 -c 'import ast, sys; print(ast.literal_eval(sys.stdin.read().strip().splitlines()[-1]))' 2>/dev/null ||
    true
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

# The request paths wrk rotates over (bench/integrations.lua reads one a line): /integrations/{n}
# for every enterprise, and /config/{n}/{type} with the integration that seed.py padded to
# ~CONFIG_BYTES (retailcrm when the enterprise has it, else uon; every seeded one has either).
psql "$db" -X -A -t -c "SELECT '/integrations/' || number FROM enterprises
  WHERE number ~ '^[0-9]{4}$' AND number::int BETWEEN $FIRST AND $((FIRST + COUNT - 1)) ORDER BY number" \
  >"$tmp/paths-integrations.txt"
psql "$db" -X -A -t -c "SELECT '/config/' || number || '/' ||
    CASE WHEN jsonb_typeof(integrations_config -> 'retailcrm') = 'object' THEN 'retailcrm' ELSE 'uon' END
  FROM enterprises WHERE number ~ '^[0-9]{4}$' AND number::int BETWEEN $FIRST AND $((FIRST + COUNT - 1))
  ORDER BY number" >"$tmp/paths-config.txt"
[ "$(wc -l <"$tmp/paths-config.txt")" -eq "$COUNT" ] || die "could not list the /config paths"
config_path=$(head -n1 "$tmp/paths-config.txt")
config_body=$(curl -fsS "http://127.0.0.1:$svc_port$config_path") || die "GET $config_path failed"
case $config_body in
  *'$'*) die "the config body contains '\$', which nginx's return directive would expand" ;;
esac
nginx_config_body=${config_body//\\/\\\\}
nginx_config_body=${nginx_config_body//\'/\\\'}

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
conf=${conf//@CONFIG_BODY@/"$nginx_config_body"}
printf '%s\n' "$conf" >"$tmp/nginx/nginx.conf"
log "starting nginx ($workers workers) on 127.0.0.1:$nginx_port"
nginx -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" -g 'daemon off;' \
  </dev/null 2>"$tmp/nginx/stderr.log" &
nginx_pid=$!
wait_http "http://127.0.0.1:$nginx_port/integrations/$FIRST" "$nginx_pid" 10
[ "$(curl -fsS "http://127.0.0.1:$nginx_port/integrations/$FIRST")" = "$body" ] ||
  die "nginx does not answer the reference body"
[ "$(curl -fsS "http://127.0.0.1:$nginx_port$config_path")" = "$config_body" ] ||
  die "nginx does not answer the reference config body"
for p in "$rc_port" "$uon_port" "$ms_port"; do
  [ "$(curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$p/internal/x")" = '{}' ] ||
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
meta config_body_bytes "${#config_body}"
meta config_path "$config_path"
meta enterprises "$COUNT (numbers $FIRST..$((FIRST + COUNT - 1)))"
meta config_bytes "$CONFIG_BYTES"
meta duration "$DURATION"
meta warmup "$WARMUP"
meta rounds "$ROUNDS"
clk_tck=$(getconf CLK_TCK)
meta clk_tck "$clk_tck"
meta lag_samples "$LAG_SAMPLES"
# shellcheck source=bench/profile.sh
. "$here/profile.sh"

# ---------------------------------------------------------------------------------------------
# 2. Throughput
# ---------------------------------------------------------------------------------------------
printf 'endpoint\tserver\tconns\tthreads\tround\tstatus\trps\trequests\tp50_us\tp99_us\tmax_us\tnon200\tsocket_errors\tcpu_ticks\tcpu_split\twrk_cpu_s\tmachine_ticks\thits\tmisses\tsleeps\tpreempted\n' \
  >"$tmp/results.tsv"

# wrk_cmd PORT CONNS THREADS SECONDS [ENDPOINT [DEPTH]]: the wrk command line (printed into the
# report as well); ENDPOINT integrations (default) or config picks the paths file, DEPTH > 1
# pipelines that many requests per write.
wrk_cmd() {
  echo wrk -t"$3" -c"$2" -d"$4"s --latency -s "$here/integrations.lua" "http://127.0.0.1:$1" -- \
    "$tmp/paths-${5:-integrations}.txt" "${6:-1}"
}

# measure SERVER ENDPOINT LOAD THREADS DEPTH ROUND SECONDS: one wrk run (LOAD: connections, or
# CONNSxDEPTH when pipelined); appends a row to results.tsv unless
# ROUND is "warmup". Server CPU is read from /proc before and after; for nginx the master and all
# its workers count. cpu_split lists the CPU seconds of each nginx process / service thread that
# worked (did the load spread over the cores?). Before each run of ours the cache is refreshed
# (POST /cache/refresh, outside the measured window), so no entry reaches its 90 s TTL during the
# run and every request is a hit; the /stats deltas show whether that held.
# wrk_outcome OUT: reads the BENCH line of a wrk run into the caller's associative array r and
# sets the caller's line, status (ok, errors, or why wrk failed), sock_err, wrk_cpu and split (CPU
# seconds per server process, from the caller's each0/each1). Shared by the cache and dispatch runs.
wrk_outcome() {
  local out=$1 kv i d
  line=$(grep '^BENCH ' "$out.out" || true)
  for kv in $line; do
    case $kv in *=*) r[${kv%%=*}]=${kv#*=} ;; esac
  done
  sock_err=$((${r[errors_connect]:-0} + ${r[errors_read]:-0} + ${r[errors_write]:-0} + ${r[errors_timeout]:-0}))
  if [ -z "$line" ]; then
    status="wrk failed: $(head -c 200 "$out.err" | tr '\n\t' '  ')"
  elif [ "${r[non200]:-0}" -gt 0 ] || [ "${r[bad_body]:-0}" -gt 0 ] || [ "$sock_err" -gt 0 ]; then
    status=errors
  else
    status=ok
  fi
  wrk_cpu=$(awk '{printf "%.2f", $1 + $2}' "$out.time" 2>/dev/null || echo -)
  split=""
  for i in "${!each1[@]}"; do
    d=$((each1[i] - each0[i]))
    [ "$d" -gt 0 ] && split+="${split:+/}$(awk -v t="$d" -v hz="$clk_tck" 'BEGIN{printf "%.2f", t / hz}')"
  done
  return 0
}

measure() {
  local server=$1 endpoint=$2 conns=$3 threads=$4 depth=$5 round=$6 secs=$7
  local port pid pids statfiles out="$tmp/wrk/$server-$endpoint-c$conns-$round"
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
  local cmd hits0=0 misses0=0 ticks0 ticks1 each0 each1 busy0 busy1 vol0 vol1 invol0 invol1
  read -r -a cmd <<<"$(wrk_cmd "$port" "${conns%%x*}" "$threads" "$secs" "$endpoint" "$depth")"
  [ "$round" = 1 ] && echo "${cmd[*]}" | sed "s|$here|bench|; s|$tmp|TMP|; s|$port|${server^^}_PORT|" >>"$tmp/commands.txt"
  if [ "$server" = ours ]; then hits0=$(stats_get hits); misses0=$(stats_get misses); fi
  ticks0=$(cpu_ticks "${pids[@]}")
  mapfile -t each0 < <(cpu_each "${statfiles[@]}")
  read -r vol0 invol0 <<<"$(ctx_switches "${statfiles[@]}")"
  busy0=$(machine_busy)
  timed_wrk "$out" "${cmd[@]}"
  busy1=$(machine_busy)
  ticks1=$(cpu_ticks "${pids[@]}")
  mapfile -t each1 < <(cpu_each "${statfiles[@]}")
  read -r vol1 invol1 <<<"$(ctx_switches "${statfiles[@]}")"
  [ "$round" = warmup ] && return 0

  local hits=- misses=-
  if [ "$server" = ours ]; then
    hits=$(($(stats_get hits) - hits0))
    misses=$(($(stats_get misses) - misses0))
  fi
  local line status sock_err wrk_cpu split
  local -A r=()
  wrk_outcome "$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$endpoint" "$server" "$conns" "$threads" "$round" "$status" "${r[rps]:--}" "${r[requests]:--}" \
    "${r[p50_us]:--}" "${r[p99_us]:--}" "${r[max_us]:--}" "${r[non200]:--}" "$sock_err" \
    "$((ticks1 - ticks0))" "${split:--}" "$wrk_cpu" "$((busy1 - busy0))" "$hits" "$misses" \
    "$((vol1 - vol0))" "$((invol1 - invol0))" >>"$tmp/results.tsv"
  log "  $endpoint $server c=$conns round $round: $status, ${r[rps]:-?} req/s, p99 ${r[p99_us]:-?} us"
}

for endpoint in integrations config; do
  for load in "${CACHE_LOADS[@]}"; do
    IFS=: read -r conns threads depth <<<"$load"
    label=$conns
    [ "$depth" -gt 1 ] && label="${conns}x$depth"
    log "throughput, /$endpoint at $label connection(s): warm-up ${WARMUP}s each, then $ROUNDS rounds of ${DURATION}s"
    measure ours "$endpoint" "$label" "$threads" "$depth" warmup "$WARMUP"
    measure nginx "$endpoint" "$label" "$threads" "$depth" warmup "$WARMUP"
    for round in $(seq "$ROUNDS"); do
      # alternate which server goes first, so neither always runs on a machine just warmed by the other
      if [ $((round % 2)) -eq 1 ]; then order=(ours nginx); else order=(nginx ours); fi
      for server in "${order[@]}"; do
        measure "$server" "$endpoint" "$label" "$threads" "$depth" "$round" "$DURATION"
      done
    done
  done
done

# 2b. A profile of each server under the load where the service is furthest from nginx (the
# pipelined /config), for the report's excerpt of what bounds the cache-hit targets.
profiling=0
if profile_check; then
  profiling=1
  meta profile_load "\`/config\` at 50 connections with 10 pipelined (wrk -t2 -c50, ${DURATION} s)"
  log "profiles: /config at 50 connections, 10 pipelined, each server sampled by perf"
  curl -fsS -X POST --max-time 10 "http://127.0.0.1:$svc_port/cache/refresh" >/dev/null || true
  read -r -a cmd <<<"$(wrk_cmd "$svc_port" 50 2 "$DURATION" config 10)"
  profile_hits ours "$svc_port" "$svc_pid" "${cmd[@]}"
  read -r -a cmd <<<"$(wrk_cmd "$nginx_port" 50 2 "$DURATION" config 10)"
  profile_hits nginx "$nginx_port" "$( (echo "$nginx_pid"; pgrep -P "$nginx_pid") | paste -sd, -)" "${cmd[@]}"
else
  log "profiles: skipped ($(cat "$profile_dir/unavailable"))"
fi

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

# Miss latency: POST /cache/invalidate/{n} then a timed GET /integrations/{n} (bench/probe.py),
# so every sample loads one enterprise from PostgreSQL.
log "miss latency: $MISS_SAMPLES samples (invalidate, then a timed GET)"
python3 "$here/probe.py" miss --url "http://127.0.0.1:$svc_port" --paths "$tmp/paths-integrations.txt" \
  --samples "$MISS_SAMPLES" >"$tmp/miss.json" 2>"$tmp/miss.err" ||
  log "miss probe failed: $(tail -n 1 "$tmp/miss.err")"
meta miss_samples "$MISS_SAMPLES"

# ---------------------------------------------------------------------------------------------
# 4. Dispatch intake
# ---------------------------------------------------------------------------------------------
# The cache service is done: its /stats and warnings are kept for the report and it stops, so
# that nothing of it (a periodic full refresh, say) runs during the dispatch measurement.
curl -fsS --max-time 2 "http://127.0.0.1:$svc_port/stats" >"$tmp/stats.json" || echo '{}' >"$tmp/stats.json"
grep -E ' (WARN|ERROR) ' "$tmp/service.log" >"$tmp/service-warnings.log" || true
stop_pid "$svc_pid" TERM
svc_pid=""

# ---------------------------------------------------------------------------------------------
# 3b. Cost growth: full refresh time, RSS, GET latency during a refresh at 1k, 10k, 100k
# ---------------------------------------------------------------------------------------------
# The same cluster grows (seed.py skips numbers that exist); for each size a fresh service
# starts, gets 3 x POST /cache/refresh (duration_ms from the answer), VmRSS / VmHWM are read, and
# then bench/probe.py streams GETs on a keep-alive connection through one more refresh.
# What bounds the refresh from PostgreSQL's side: the time its backend needs to produce the rows
# of the very statement (jsonb to text, decompression), from EXPLAIN ANALYZE, which runs the
# query without sending the rows; jit off, as the service's sessions have it.
load_sql=$(sql_of SQL_LOAD_ALL)
printf 'enterprises\tserved\traw_bytes\trefresh_ms\tentries\trss_kb\thwm_kb\tanon_kb\tfile_kb\tstream\tpg_ms\tstream_short\n' >"$tmp/growth.tsv"
for n in $GROWTH_SIZES; do
  log "cost growth: $n enterprises"
  if [ "$n" -gt "$COUNT" ]; then
    python3 "$root/scripts/seed.py" --count "$n" --first "$FIRST" --config-bytes "$CONFIG_BYTES" \
      --no-extras | PGCLIENTENCODING=UTF8 PGOPTIONS="-c client_min_messages=warning" psql "$db" -X -q -v ON_ERROR_STOP=1 >/dev/null
  fi
  IFS='|' read -r served raw < <(psql "$db" -X -A -t -c "SELECT count(*), coalesce(sum(length(integrations_config::text)), 0)
    FROM enterprises WHERE active AND integrations_config IS NOT NULL
      AND number ~ '^[0-9]+$' AND number::int BETWEEN $FIRST AND $((FIRST + n - 1))")
  total=$(psql "$db" -X -A -t -c "SELECT count(*) FROM enterprises")
  [ "$total" -eq "$served" ] || log "  warning: $total rows in enterprises, $served in the range"
  seq -f "/integrations/%.0f" "$FIRST" "$((FIRST + n - 1))" >"$tmp/paths-growth-$n.txt"
  gport=$(free_port)
  DATABASE_URL=$db "$bin" serve --listen "127.0.0.1:$gport" </dev/null 2>"$tmp/growth-$n.log" &
  svc_pid=$!
  wait_http "http://127.0.0.1:$gport/ready" "$svc_pid" 60
  ms_list="" entries=""
  for i in 1 2 3; do
    ans=$(curl -fsS -X POST --max-time 60 "http://127.0.0.1:$gport/cache/refresh") || ans=""
    ms=$(grep -o '"duration_ms":[0-9.]*' <<<"$ans" | cut -d: -f2) || true
    entries=$(grep -o '"entries":[0-9]*' <<<"$ans" | cut -d: -f2) || true
    ms_list+="${ms_list:+,}${ms:--}"
  done
  # the replaced tables are freed by the service's reaper thread just after each refresh answers:
  # read the settled size, not the moment two tables coexist (VmHWM keeps the peak)
  sleep 3
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$svc_pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$svc_pid/status")
  # VmRSS = RssAnon (the process's own memory) + RssFile (pages of mapped files: the shared
  # libraries, which every process linking them maps) + RssShmem
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$svc_pid/status")
  file=$(awk '/^RssFile:/ {print $2}' "/proc/$svc_pid/status")
  # what the resident pages are, at the smallest size (where RSS / raw JSON is largest); and who
  # works during a refresh at 10,000 (the size whose target is closest), after the timed ones
  if [ ! -s "$profile_dir/memory.tsv" ]; then
    profile_memory "$svc_pid"
    meta memory_size "$n"
  fi
  if [ "$profiling" = 1 ] && [ "$n" = "${BENCH_PROFILE_REFRESH:-10000}" ]; then
    profile_refresh "$n" "$gport" "$svc_pid" "$tmp/pg/data"
  fi
  pg_list=""
  if [ -n "$load_sql" ]; then
    for i in 1 2 3; do
      pg=$(psql "$db" -X -A -t -q -c "SET jit = off" \
        -c "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) $load_sql" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Execution Time"])' 2>/dev/null) || pg=""
      pg_list+="${pg_list:+,}${pg:--}"
    done
  fi
  # twice: the probe as any process, then asking for a 0.1 ms time slice, so that a GET that
  # waited for a core can be told apart: the client's wait (this probe shares the two cores with
  # the refresh's PostgreSQL backend and the service's refresh thread) or the service's
  for kind in default short; do
    slice=()
    [ "$kind" = default ] || slice=(--slice-us 100)
    python3 "$here/probe.py" refresh-stream --url "http://127.0.0.1:$gport" --paths "$tmp/paths-growth-$n.txt" \
      --service-pid "$svc_pid" --postgres-pid "$(head -n 1 "$tmp/pg/data/postmaster.pid")" \
      "${slice[@]}" >"$tmp/growth-stream-$kind-$n.json" 2>"$tmp/growth-stream-$kind-$n.err" ||
      log "  refresh-stream probe ($kind) failed: $(tail -n 1 "$tmp/growth-stream-$kind-$n.err")"
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$served" "$raw" "$ms_list" "${entries:--}" \
    "$rss" "$hwm" "$anon" "$file" "growth-stream-default-$n.json" "${pg_list:--}" \
    "growth-stream-short-$n.json" >>"$tmp/growth.tsv"
  log "  refresh ms: $ms_list (PostgreSQL alone: ${pg_list:--}), entries ${entries:-?}, VmRSS $rss kB (raw JSON $raw bytes)"
  stop_pid "$svc_pid" TERM
  svc_pid=""
done

# The cache's cluster has done its part: stopped, and what it wrote flushed (sync), it does no
# background work (autovacuum, checkpoints, write-back) on the cores and the disk that the
# dispatch step's durable commits use.
log "dispatch: stopping the cache's PostgreSQL and flushing its writes to the disk first"
"$root/scripts/pgcluster.sh" stop "$tmp/pg"
sync

# Durable commits: a second cluster with fsync=on (synchronous_commit keeps its default, on), so
# that every acknowledged event has been through a WAL flush to the disk. pg_stat_statements (group
# commits per round, claim and write-back queries) and track_wal_io_timing (WAL fsync time) are
# switched on for the report; preloading the former needs a restart, about a second.
log "dispatch: starting a second PostgreSQL (fsync=on) in $tmp/pgd"
dpg_port=$(PGCLUSTER_FSYNC=on "$root/scripts/pgcluster.sh" start "$tmp/pgd")
ddb="host=127.0.0.1 port=$dpg_port user=postgres dbname=postgres"
# dpsql ARGS...: psql on the dispatch cluster, unaligned, tuples only, 10 s statement timeout
dpsql() { PGOPTIONS='-c statement_timeout=10s' psql "$ddb connect_timeout=5" -X -A -t -q -v ON_ERROR_STOP=1 -P null=- "$@"; }
pgss=0
if [ -f /usr/lib/postgresql/15/lib/pg_stat_statements.so ]; then
  dpsql -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
    -c "ALTER SYSTEM SET track_wal_io_timing = on" >/dev/null
  "$root/scripts/pgcluster.sh" stop "$tmp/pgd"
  dpg_port=$(PGCLUSTER_FSYNC=on "$root/scripts/pgcluster.sh" start "$tmp/pgd")
  ddb="host=127.0.0.1 port=$dpg_port user=postgres dbname=postgres"
  dpsql -c "CREATE EXTENSION pg_stat_statements" >/dev/null
  pgss=1
else
  dpsql -c "ALTER SYSTEM SET track_wal_io_timing = on" -c "SELECT pg_reload_conf()" >/dev/null
fi
[ "$(dpsql -c 'SHOW fsync')" = on ] || die "the dispatch cluster does not run with fsync=on"
# The dispatch step writes about 2 GB of WAL: with the default max_wal_size (1 GB) PostgreSQL
# checkpointed every ~28 s, WAL-triggered ("checkpoints are occurring too frequently"), and each
# checkpoint's full-page writes raised the intake p99 from ~7 to ~40 ms (docs/PERFORMANCE-NOTES.md,
# section 6). A write-heavy outbox wants checkpoints on their timer; the README says so too.
dpsql -c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "SELECT pg_reload_conf()" >/dev/null
# Backends write the outbox's pages out of shared_buffers into the page cache, and the kernel
# writes them to the disk 30 s later, in bursts. Forcing such a burst (sync) in the middle of a
# 50-connection run stalled the commits for 100-270 ms (p99 100-220 ms); PostgreSQL's
# backend_flush_after has the kernel write them back as they come, which kept the dirty page
# cache at about 120 MB instead of growing by 170 MB every 6 s (docs/PERFORMANCE-NOTES.md,
# section 9). The README advises operators the same.
dpsql -c "ALTER SYSTEM SET backend_flush_after = '256kB'" -c "SELECT pg_reload_conf()" >/dev/null
# A PostgreSQL that has run for a while reuses ("recycles") its old WAL segment files. A new
# cluster has none: every 16 MB of WAL it creates and zero-fills a new file, with an fsync, and
# during the dispatch rounds that stalled the commits for 50-70 ms about once a second (wait
# events IO:WALInitWrite and IO:WALInitSync; p99 at 10 connections 55 ms instead of 8 ms,
# docs/PERFORMANCE-NOTES.md, section 7). So the cluster is brought to that steady state first:
# min_wal_size keeps 3 GB of segments for reuse, and 2 GB of WAL is written and checkpointed.
log "dispatch: writing 2 GB of WAL once, so that the dispatch step reuses WAL segment files"
dpsql -c "ALTER SYSTEM SET min_wal_size = '3GB'" -c "SELECT pg_reload_conf()" >/dev/null
PGOPTIONS='-c statement_timeout=300s' psql "$ddb" -X -q -v ON_ERROR_STOP=1 \
  -c "CREATE TABLE bench_wal_fill AS SELECT repeat('x', 900) AS x FROM generate_series(1, 2000000)" \
  -c "DROP TABLE bench_wal_fill" -c "CHECKPOINT" >/dev/null

python3 "$root/scripts/seed.py" --count "$COUNT" --first "$FIRST" --config-bytes "$CONFIG_BYTES" \
  --no-extras | PGCLIENTENCODING=UTF8 psql "$ddb" -X -q -v ON_ERROR_STOP=1 >/dev/null
DATABASE_URL=$ddb "$bin" migrate 2>"$tmp/dispatch-migrate.log" ||
  { cat "$tmp/dispatch-migrate.log" >&2; die "migrate (dispatch cluster) failed"; }

# The token: name2 of the first seeded enterprise with retailcrm, uon and ms all enabled (the
# spellings the service accepts: true, 1, "true" in any case), so that every event is three
# outbox rows and three deliveries.
enabled_sql() { echo "lower(btrim((integrations_config->'$1'->'enabled')::text, '\"')) IN ('true', '1')"; }
IFS='|' read -r dsp_number dsp_token < <(dpsql -c "SELECT number, name2 FROM enterprises
  WHERE active AND number ~ '^[0-9]{4}$' AND coalesce(name2, '') ~ '^[A-Za-z0-9_.-]+$'
    AND $(enabled_sql retailcrm) AND $(enabled_sql uon) AND $(enabled_sql ms)
  ORDER BY number LIMIT 1") || true
[ -n "${dsp_token:-}" ] || die "no seeded enterprise has retailcrm, uon and ms enabled (scripts/seed.py changed?)"

dsp_port=$(free_port)
log "dispatch: starting the service on 127.0.0.1:$dsp_port (targets: nginx stand-ins on $rc_port, $uon_port, $ms_port)"
DATABASE_URL=$ddb "$bin" serve --listen "127.0.0.1:$dsp_port" \
  --retailcrm-url "http://127.0.0.1:$rc_port" --uon-url "http://127.0.0.1:$uon_port" \
  --ms-url "http://127.0.0.1:$ms_port" --spool-dir "$tmp/spool" </dev/null 2>"$tmp/dispatch-service.log" &
dsp_pid=$!
wait_http "http://127.0.0.1:$dsp_port/ready" "$dsp_pid" 30

# One event by hand: accepted for all three targets, and delivered to each within 10 s.
probe=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' -d "{\"token\":\"$dsp_token\",
  \"uniqueId\":\"bench-probe.0\",\"event_type\":\"dial\",\"raw\":{\"Phone\":\"+375290000000\",
  \"CallType\":0,\"Extensions\":[\"150\"]}}" "http://127.0.0.1:$dsp_port/dispatch/call-event") ||
  die "the probe event was not accepted"
for t in retailcrm uon ms; do
  case $probe in *'"success":true'*"\"$t\""*) ;; *) die "probe event: no $t in $probe" ;; esac
done
deadline=$((SECONDS + 10))
until [ "$(stats_get dispatch_delivered "$dsp_port")" -ge 3 ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the probe event was not delivered to the three stand-ins within 10 s"
  kill -0 "$dsp_pid" 2>/dev/null || die "the dispatch service exited"
  sleep 0.1
done

meta dispatch_loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"
meta dispatch_pg "fsync=$(dpsql -c 'SHOW fsync'), synchronous_commit=$(dpsql -c 'SHOW synchronous_commit'), wal_sync_method=$(dpsql -c 'SHOW wal_sync_method'), max_wal_size=$(dpsql -c 'SHOW max_wal_size'), min_wal_size=$(dpsql -c 'SHOW min_wal_size') (WAL segments pre-written once), checkpoint_timeout=$(dpsql -c 'SHOW checkpoint_timeout'), backend_flush_after=$(dpsql -c 'SHOW backend_flush_after')"
# the block device under the dispatch cluster, for the disk writes of each round (/proc/diskstats)
dsp_dev=$(basename "$(df "$tmp/pgd" 2>/dev/null | awk 'NR == 2 {print $1}')")
meta dispatch_fs "$(df -T "$tmp/pgd" 2>/dev/null | awk 'NR == 2 {print $2 " on " $1}')"
meta dispatch_enterprise "$dsp_number"
meta dispatch_token "$dsp_token"
meta dispatch_duration "$DISPATCH_DURATION"
meta drain_deadline "$DRAIN_DEADLINE"
meta drain_between "$DRAIN_BETWEEN"
meta pgss "$pgss"

# pg_ticks DIR: CPU clock ticks of a cluster: the postmaster's own and those of its children that
# have exited (cutime + cstime), plus every live child's (backends, WAL writer, autovacuum...).
pg_ticks() {
  local pm fields sum child
  read -r pm <"$1/data/postmaster.pid" && read -r fields <"/proc/$pm/stat" || { echo 0; return 0; }
  fields=${fields##*) }
  read -r -a f <<<"$fields"
  sum=$((f[11] + f[12] + f[13] + f[14]))
  for child in $(pgrep -P "$pm"); do
    if read -r fields <"/proc/$child/stat" 2>/dev/null; then
      fields=${fields##*) }
      read -r -a f <<<"$fields"
      sum=$((sum + f[11] + f[12]))
    fi
  done
  echo "$sum"
}

# pgss_sql PREFIX EXPR: EXPR over the pg_stat_statements entries whose text starts with PREFIX.
pgss_sql() { echo "(SELECT coalesce($2, 0) FROM pg_stat_statements WHERE query LIKE '$1%')"; }

# pg_snap [ID0]: "max_id pending rows_after_ID0 insert_calls insert_ms claim_calls claim_ms
# claims_running maintenance_done maintenance_running checkpoints checkpoint_buffers outbox_kb"
# of the outbox, pg_stat_statements, pg_stat_activity and PostgreSQL's background work: autovacuum and
# autoanalyze runs finished on the outbox and integration_logs, autovacuum workers running now,
# checkpoints started and buffers they wrote, and the size of the outbox's heap file ("-": not
# known). A slow round can then be matched with the background work that ran during it.
pg_snap() {
  local since="NULL" ss="NULL, NULL, NULL, NULL"
  [ -n "${1:-}" ] && since="(SELECT count(*) FROM integration_cache_outbox WHERE id > $1)"
  if [ "$pgss" = 1 ]; then
    ss="$(pgss_sql 'INSERT INTO integration_cache_outbox' 'sum(calls)'),
        $(pgss_sql 'INSERT INTO integration_cache_outbox' 'round(sum(total_exec_time)::numeric, 1)'),
        $(pgss_sql 'WITH due AS' 'sum(calls)'),
        $(pgss_sql 'WITH due AS' 'round(sum(total_exec_time)::numeric, 1)')"
  fi
  dpsql -F ' ' -c "SELECT (SELECT coalesce(max(id), 0) FROM integration_cache_outbox),
    (SELECT count(*) FROM integration_cache_outbox WHERE state = 'pending'), $since, $ss,
    (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH due AS%'),
    (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables
      WHERE relname IN ('integration_cache_outbox', 'integration_logs')),
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'),
    (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
    (SELECT buffers_checkpoint FROM pg_stat_bgwriter),
    pg_relation_size('integration_cache_outbox') / 1024" ||
    echo "0 - - - - - - - - - - - -"
}

# dstats: "accepted delivered spooled retried abandoned duplicates" from the dispatch service's /stats.
dstats() {
  local js k v out=""
  js=$(curl -fsS --max-time 2 "http://127.0.0.1:$dsp_port/stats") || js=""
  for k in accepted delivered spooled retried abandoned duplicates; do
    v=$(grep -o "\"dispatch_$k\":[0-9]*" <<<"$js" | cut -d: -f2) || true
    out+="${v:-0} "
  done
  echo "$out"
}

printf 'conns\tthreads\tround\tstatus\trps\trequests\tp50_us\tp99_us\tmax_us\tnon200\tbad_body\tduplicates\tsocket_errors\tcpu_ticks\tcpu_split\tpg_ticks\twrk_cpu_s\tmachine_ticks\taccepted\tdelivered\tspooled\tretried\trows\tpending_after\tinsert_calls\tinsert_ms\tclaim_calls\tclaim_ms\tclaims_running\tmaintenance_done\tmaintenance_running\tcheckpoints\tcheckpoint_buffers\tdisk_written_kb\tdirty_kb\tsteal_ticks\toutbox_grew_kb\n' \
  >"$tmp/dispatch.tsv"

# measure_dispatch CONNS THREADS ROUND SECONDS: one wrk run of bench/dispatch.lua on the dispatch
# service; appends a row to dispatch.tsv unless ROUND is "warmup". Every run gets its own TAG, so
# its uniqueIds are new. Server CPU: the service (per thread, as above) and the whole PostgreSQL
# cluster. Outbox rows written: rows with an id above the largest before the run, counted 0.3 s
# after wrk stopped (events in flight at its end are still committed and acknowledged).
dispatch_seq=0
measure_dispatch() {
  local conns=$1 threads=$2 round=$3 secs=$4
  local out="$tmp/wrk/dispatch-c$conns-$round" lagc=$(((conns + threads - 1) / threads + 1))
  dispatch_seq=$((dispatch_seq + 1))
  local tag=$(($(date +%s) * 1000 + dispatch_seq))
  local cmd statfiles=(/proc/"$dsp_pid"/task/*/stat)
  read -r -a cmd <<<"wrk -t$threads -c$conns -d${secs}s --latency -s $here/dispatch.lua http://127.0.0.1:$dsp_port -- $dsp_token $tag $lagc"
  [ "$round" = 1 ] && echo "${cmd[*]}" | sed "s|$here|bench|; s|$dsp_port|DISPATCH_PORT|; s| $tag | TAG |" >>"$tmp/dispatch-commands.txt"
  local -a snap0 snap1 st0 st1 each0 each1
  read -r -a snap0 <<<"$(pg_snap)"
  read -r -a st0 <<<"$(dstats)"
  local ticks0 ticks1 pg0 pg1 busy0 busy1
  ticks0=$(cpu_ticks "$dsp_pid")
  mapfile -t each0 < <(cpu_each "${statfiles[@]}")
  pg0=$(pg_ticks "$tmp/pgd")
  local disk0 disk1 dirty1 steal0 steal1
  disk0=$(disk_written "$dsp_dev")
  steal0=$(machine_steal)
  busy0=$(machine_busy)
  timed_wrk "$out" "${cmd[@]}"
  busy1=$(machine_busy)
  disk1=$(disk_written "$dsp_dev")
  steal1=$(machine_steal)
  dirty1=$(dirty_kb)
  ticks1=$(cpu_ticks "$dsp_pid")
  mapfile -t each1 < <(cpu_each "${statfiles[@]}")
  pg1=$(pg_ticks "$tmp/pgd")
  [ "$round" = warmup ] && return 0
  sleep 0.3
  read -r -a snap1 <<<"$(pg_snap "${snap0[0]}")"
  read -r -a st1 <<<"$(dstats)"

  local line status sock_err wrk_cpu split
  local -A r=()
  wrk_outcome "$out"
  local fields=("$conns" "$threads" "$round" "$status" "${r[rps]:--}" "${r[requests]:--}"
    "${r[p50_us]:--}" "${r[p99_us]:--}" "${r[max_us]:--}" "${r[non200]:--}" "${r[bad_body]:--}"
    "${r[duplicates]:--}" "$sock_err" "$((ticks1 - ticks0))" "${split:--}" "$((pg1 - pg0))"
    "$wrk_cpu" "$((busy1 - busy0))" "$((st1[0] - st0[0]))" "$((st1[1] - st0[1]))"
    "$((st1[2] - st0[2]))" "$((st1[3] - st0[3]))" "${snap1[2]}" "${snap1[1]}"
    "$(delta "${snap0[3]}" "${snap1[3]}")" "$(delta "${snap0[4]}" "${snap1[4]}")"
    "$(delta "${snap0[5]}" "${snap1[5]}")" "$(delta "${snap0[6]}" "${snap1[6]}")" "${snap1[7]}"
    "$(delta "${snap0[8]}" "${snap1[8]}")" "${snap1[9]}" "$(delta "${snap0[10]}" "${snap1[10]}")"
    "$(delta "${snap0[11]}" "${snap1[11]}")" "$(delta "$disk0" "$disk1")" "$dirty1" "$(delta "$steal0" "$steal1")"
    "$(delta "${snap0[12]}" "${snap1[12]}")")
  (IFS=$'\t'; echo "${fields[*]}") >>"$tmp/dispatch.tsv"
  log "  dispatch c=$conns round $round: $status, ${r[rps]:-?} events/s, p99 ${r[p99_us]:-?} us, $((st1[0] - st0[0])) accepted, ${snap1[1]} pending after; background: $(delta "${snap0[8]}" "${snap1[8]}") autovacuum/analyze done, ${snap1[9]} running, $(delta "${snap0[10]}" "${snap1[10]}") checkpoints, $(delta "$disk0" "$disk1") kB written to $dsp_dev, $dirty1 kB dirty at the end, $(delta "$steal0" "$steal1") ticks stolen, outbox file +$(delta "${snap0[12]}" "${snap1[12]}") kB"
}

# delta A B: B - A, or "-" when either is not a number.
delta() {
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then awk -v a="$1" -v b="$2" 'BEGIN{print b - a}'; else echo -; fi
}

# wait_drain SECONDS NAME: polls the outbox every 0.5 s until no row is pending, SECONDS have
# passed, or nothing at all was delivered for 10 s (stalled: waiting longer only costs time); the
# trace (seconds since the start, pending rows, /stats dispatch_delivered) goes to drain-NAME.tsv
# for the report.
wait_drain() {
  local secs=$1 name=$2 t0 n el delivered last_delivered=-1 last_change=0
  t0=$(date +%s.%N)
  : >"$tmp/drain-$name.tsv"
  while :; do
    n=$(dpsql -c "SELECT count(*) FROM integration_cache_outbox WHERE state = 'pending'") || n=-
    el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b - a}')
    delivered=$(stats_get dispatch_delivered "$dsp_port")
    printf '%s\t%s\t%s\n' "$el" "$n" "$delivered" >>"$tmp/drain-$name.tsv"
    [ "$n" = 0 ] && break
    awk -v e="$el" -v s="$secs" 'BEGIN{exit !(e >= s)}' && break
    if [ "$delivered" != "$last_delivered" ]; then
      last_delivered=$delivered last_change=$el
    elif awk -v e="$el" -v c="$last_change" 'BEGIN{exit !(e - c >= 10)}'; then
      log "  nothing delivered for 10 s: the outbox is not draining"
      break
    fi
    sleep 0.5
  done
  log "  outbox after ${el}s: $n pending"
}

# the counters that cover the whole dispatch part: WAL (fsyncs and their time) and statements
dpsql -c "SELECT pg_stat_reset_shared('wal')" >/dev/null
[ "$pgss" = 1 ] && dpsql -c "SELECT pg_stat_statements_reset()" >/dev/null
commits0=$(dpsql -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
accepted0=$(stats_get dispatch_accepted "$dsp_port")
for load in "${LOADS[@]}"; do
  conns=${load%%:*} threads=${load##*:}
  if [ "$conns" != "${LOADS[0]%%:*}" ]; then
    log "dispatch: waiting up to ${DRAIN_BETWEEN}s for the outbox to drain before the next load"
    wait_drain "$DRAIN_BETWEEN" "before-c$conns"
  fi
  log "dispatch intake at $conns connection(s): warm-up ${WARMUP}s, then $ROUNDS rounds of ${DISPATCH_DURATION}s"
  measure_dispatch "$conns" "$threads" warmup "$WARMUP"
  for round in $(seq "$ROUNDS"); do
    measure_dispatch "$conns" "$threads" "$round" "$DISPATCH_DURATION"
  done
done
log "dispatch: waiting up to ${DRAIN_DEADLINE}s for the outbox to drain"
wait_drain "$DRAIN_DEADLINE" final

# What the database and the service say at the end.
curl -fsS --max-time 2 "http://127.0.0.1:$dsp_port/stats" >"$tmp/dispatch-stats.json" || echo '{}' >"$tmp/dispatch-stats.json"
meta dispatch_accepted_total "$(($(stats_get dispatch_accepted "$dsp_port") - accepted0))"
meta dispatch_commits "$(($(dpsql -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'") - commits0))"
dpsql -F $'\t' -c "SELECT wal_records, wal_bytes, wal_write, wal_sync, round(wal_sync_time::numeric, 1) FROM pg_stat_wal" \
  >"$tmp/dispatch-wal.tsv" || : >"$tmp/dispatch-wal.tsv"
dpsql -F $'\t' -c "SELECT state, target, count(*) FROM integration_cache_outbox GROUP BY 1, 2 ORDER BY 1, 2" \
  >"$tmp/dispatch-outbox.tsv" || : >"$tmp/dispatch-outbox.tsv"
dpsql -F $'\t' -c "SELECT count(*), coalesce(round(max(extract(epoch FROM now() - query_start))::numeric, 1), 0)
  FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH due AS%'" >"$tmp/dispatch-claims.tsv" ||
  : >"$tmp/dispatch-claims.tsv"
dpsql -F $'\t' -c "SELECT coalesce(to_char(last_autoanalyze, 'HH24:MI:SS'), 'never'), autoanalyze_count,
  n_live_tup FROM pg_stat_user_tables WHERE relname = 'integration_cache_outbox'" >"$tmp/dispatch-analyze.tsv" ||
  : >"$tmp/dispatch-analyze.tsv"
# the plan the claim gets now: the statement of src/dispatch/queries.h (through the C
# preprocessor, so it is the text the service sends), explained for target uon and 32 rows
claim_sql=$(sql_of 'SQL_OUTBOX_CLAIM(SQL_TRANSFORM_NONE)')
if [ -n "$claim_sql" ]; then
  dpsql -c "PREPARE claim_plan(text, int, text, float8) AS $claim_sql" \
    -c "EXPLAIN EXECUTE claim_plan('uon', 32, 'bench', 30)" >"$tmp/dispatch-claim-plan.txt" 2>&1 || true
fi
if [ "$pgss" = 1 ]; then
  dpsql -F $'\t' -c "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 2),
      round(max_exec_time::numeric, 1), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 60)
    FROM pg_stat_statements WHERE query LIKE ANY (ARRAY['INSERT INTO integration%', 'WITH due AS%',
      'UPDATE integration_cache_outbox%', 'SELECT target, count(*)%', 'DELETE FROM integration%'])
    ORDER BY total_exec_time DESC" >"$tmp/dispatch-pgss.tsv" || : >"$tmp/dispatch-pgss.tsv"
fi
grep -E ' (WARN|ERROR) ' "$tmp/dispatch-service.log" >"$tmp/dispatch-warnings.log" || true
stop_pid "$dsp_pid" TERM
dsp_pid=""

# ---------------------------------------------------------------------------------------------
# 5. Report
# ---------------------------------------------------------------------------------------------
cp "$tmp/nginx/error.log" "$tmp/nginx-error.log" 2>/dev/null || : >"$tmp/nginx-error.log"
mkdir -p "$(dirname "$OUT")"
python3 "$here/report.py" --dir "$tmp" --out "$OUT"
log "wrote ${OUT#"$root"/}"
