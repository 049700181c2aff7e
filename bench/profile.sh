# Profiles for the report (issue 4: where a target is not met, the report shows what bounds it,
# with a profile excerpt). Sourced by bench/run.sh, whose $tmp, $clk_tck and cpu_each it uses.
# perf samples the chosen processes at 999 Hz without call graphs (a cost of about 1 % to them),
# and the samples are summed per thread name, library and function; bench/report_profile.py turns
# the sums into the report's tables. Everything here is optional: without a working perf the
# report says why and the bench goes on.

profile_dir="$tmp/profile"
mkdir -p "$profile_dir"

# profile_check: whether perf can sample another process here (installed, and permitted by
# kernel.perf_event_paranoid for this user); the reason it cannot goes to profile/unavailable.
profile_check() {
  if ! command -v perf >/dev/null 2>&1; then
    echo "perf is not installed (Debian package linux-perf)" >"$profile_dir/unavailable"
    return 1
  fi
  sleep 1 &
  local probe=$!
  if ! perf record -q -F 99 -o "$profile_dir/check.data" -p "$probe" -- sleep 0.2 \
    >/dev/null 2>"$profile_dir/check.err"; then
    echo "perf record failed: $(head -c 200 "$profile_dir/check.err" | tr '\n' ' ')" >"$profile_dir/unavailable"
    wait "$probe" 2>/dev/null
    return 1
  fi
  wait "$probe" 2>/dev/null
  rm -f "$profile_dir/check.data"
  return 0
}

# profile_record NAME PIDS CMD...: samples the processes PIDS (comma-separated, all their threads)
# while CMD runs; CMD's output goes to NAME.out. Writes NAME.tsv: samples, thread name, library,
# function, one line per (thread name, library, function), the most samples first.
profile_record() {
  local name=$1 pids=$2
  shift 2
  perf record -q -F 999 -o "$profile_dir/$name.data" -p "$pids" -- "$@" \
    >"$profile_dir/$name.out" 2>"$profile_dir/$name.err" || return 1
  perf report -i "$profile_dir/$name.data" --stdio --no-children -g none --sort comm,dso,sym -n \
    -t $'\t' 2>/dev/null | awk -F '\t' '!/^#/ && NF >= 5 {
      for (i = 2; i <= 5; i++) gsub(/^ +| +$/, "", $i)
      print $2 "\t" $3 "\t" $4 "\t" $5
    }' >"$profile_dir/$name.tsv"
  rm -f "$profile_dir/$name.data"
}

# thread_cpu PID...: "name<TAB>ticks" for every thread of the processes (utime + stime so far).
thread_cpu() {
  local pid stat
  for pid in "$@"; do
    for stat in /proc/"$pid"/task/*/stat; do
      [ -r "$stat" ] || continue
      printf '%s\t%s\n' "$(cat "${stat%/stat}/comm" 2>/dev/null || echo '?')" "$(cpu_each "$stat")"
    done
  done
}

# pg_cpu PID...: "pg:PID<TAB>ticks" for each process (PostgreSQL's are single-threaded).
pg_cpu() {
  local pid
  for pid in "$@"; do
    printf 'pg:%s\t%s\n' "$pid" "$(cpu_each "/proc/$pid/stat")"
  done
}

# profile_hits SERVER PORT PIDS WRK_CMD...: one profiled wrk run against a cache-hit server.
# Appends "server<TAB>requests<TAB>cpu_ticks" to profile/hits.tsv; the samples go to
# profile/hits-SERVER.tsv.
profile_hits() {
  local server=$1 port=$2 pids=$3
  shift 3
  local -a list
  IFS=, read -r -a list <<<"$pids"
  local t0 t1 requests
  t0=$(thread_cpu "${list[@]}" | awk -F '\t' '{s += $2} END {print s + 0}')
  profile_record "hits-$server" "$pids" "$@" || { log "  profile of $server failed: $(head -c 200 "$profile_dir/hits-$server.err")"; return 0; }
  t1=$(thread_cpu "${list[@]}" | awk -F '\t' '{s += $2} END {print s + 0}')
  requests=$(grep -o 'requests=[0-9]*' "$profile_dir/hits-$server.out" | cut -d= -f2)
  printf '%s\t%s\t%s\n' "$server" "${requests:-0}" "$((t1 - t0))" >>"$profile_dir/hits.tsv"
}

# profile_refresh N PORT SVC_PID PGDATA: three profiled POST /cache/refresh on a service of N
# enterprises, sampling the service and every PostgreSQL process of the cluster. Writes
# profile/refresh.tsv (samples), profile/refresh-cpu.tsv ("who<TAB>ticks" over the three, who
# being a service thread's name, "postgres-backend" or "postgres-other") and
# profile/refresh-meta.tsv (N, the answers' duration_ms).
profile_refresh() {
  local n=$1 port=$2 pid=$3 pgdata=$4 postmaster
  postmaster=$(head -n1 "$pgdata/postmaster.pid" 2>/dev/null) || return 0
  local -a pg
  mapfile -t pg < <(echo "$postmaster"; pgrep -P "$postmaster")
  local pids
  pids=$(IFS=,; echo "$pid,${pg[*]}")
  thread_cpu "$pid" >"$profile_dir/refresh-cpu0.tsv"
  pg_cpu "${pg[@]}" >>"$profile_dir/refresh-cpu0.tsv"
  profile_record refresh "$pids" bash -c "for i in 1 2 3; do curl -fsS -X POST --max-time 60 \
    http://127.0.0.1:$port/cache/refresh; echo; done" ||
    { log "  profile of the refresh failed: $(head -c 200 "$profile_dir/refresh.err")"; return 0; }
  thread_cpu "$pid" >"$profile_dir/refresh-cpu1.tsv"
  pg_cpu "${pg[@]}" >>"$profile_dir/refresh-cpu1.tsv"
  # per thread name (threads of one name summed): ticks after minus before; of the PostgreSQL
  # processes, the one that worked most is the refresh's backend, the rest are summed
  awk -F '\t' 'NR == FNR {a[$1] -= $2; next} {a[$1] += $2}
    END {for (k in a) if (k ~ /^pg:/) {if (a[k] > top) {top = a[k]}; pg += a[k]} else print k "\t" a[k]
         print "postgres-backend\t" top + 0; print "postgres-other\t" pg - top}' \
    "$profile_dir/refresh-cpu0.tsv" "$profile_dir/refresh-cpu1.tsv" >"$profile_dir/refresh-cpu.tsv"
  printf '%s\t%s\n' "$n" "$(grep -o '"duration_ms":[0-9.]*' "$profile_dir/refresh.out" | cut -d: -f2 | paste -sd,)" \
    >"$profile_dir/refresh-meta.tsv"
}

# profile_memory PID: the resident kB of each mapping of the process, summed per file (anonymous
# mappings as [anon], the heap as [heap], thread stacks as [stack]), to profile/memory.tsv.
profile_memory() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = (NF >= 6) ? $6 : "[anon]"; if (name ~ /^\[stack/) name = "[stack]"}
       /^Rss:/ {rss[name] += $2}
       END {for (k in rss) if (rss[k] > 0) print k "\t" rss[k]}' "/proc/$1/smaps" |
    sort -t $'\t' -k2,2nr >"$profile_dir/memory.tsv"
}
