#!/usr/bin/env bash
# Manages a local instance of the Integration Cache Service:
#   ./integration_cache.sh start|stop|restart|status|logs|health|stats
# Settings come from the environment (IC_*, DATABASE_URL or PG*; see `build/integration_cache
# --help`), optionally from ./integration_cache.env (KEY=VALUE lines, sourced if present; keep a
# password there or in ~/.pgpass, never on the command line). The process is tracked by its pid
# file and stopped by that pid only; its output goes to logs/integration_cache.log.
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
[ -f integration_cache.env ] && { set -a; . ./integration_cache.env; set +a; }

bin=${IC_BINARY:-$root/build/integration_cache}
pid_file=${IC_PID_FILE:-$root/run/integration_cache.pid}
log_file=$root/logs/integration_cache.log
listen=${IC_LISTEN:-127.0.0.1:8020}
base="http://$listen"

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # the pid must still be our binary, not a recycled pid of something else
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q integration_cache || return 1
  echo "$pid"
}

get() { curl -fsS --max-time 5 "$base$1"; }
pretty() { python3 -m json.tool 2>/dev/null || cat; }

start() {
  if pid=$(running_pid); then echo "already running (pid $pid)"; return 0; fi
  [ -x "$bin" ] || make -s build
  mkdir -p "$(dirname "$pid_file")" logs
  nohup "$bin" serve >>"$log_file" 2>&1 </dev/null &
  echo $! >"$pid_file"
  local pid=$!
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "failed to start; last log lines:" >&2
      tail -n 20 "$log_file" >&2
      rm -f "$pid_file"
      return 1
    fi
    if curl -fs --max-time 1 "$base/ready" >/dev/null 2>&1; then
      echo "started (pid $pid), ready on $base"
      return 0
    fi
    sleep 0.1
  done
  echo "started (pid $pid) but not ready after 30 s: see $log_file" >&2
  return 1
}

stop() {
  local pid
  if ! pid=$(running_pid); then echo "not running"; rm -f "$pid_file"; return 0; fi
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pid_file"; echo "stopped"; return 0; }
    sleep 0.1
  done
  echo "did not stop within 15 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  status)
    if pid=$(running_pid); then
      echo "running (pid $pid) on $base"
      get /health | pretty || true
    else
      echo "not running"
      exit 3
    fi
    ;;
  logs) tail -n "${LINES_SHOWN:-100}" -F "$log_file" ;;
  health) get /health | pretty ;;
  stats) get /stats | pretty ;;
  *) echo "usage: $0 start|stop|restart|status|logs|health|stats" >&2; exit 2 ;;
esac
