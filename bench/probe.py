#!/usr/bin/env python3
"""Latency probes for bench/run.sh that wrk cannot do (standard library only). JSON on stdout.

  probe.py miss --url http://127.0.0.1:PORT --paths FILE [--samples 1000]
    Miss latency: per sample POST /cache/invalidate/{n} (not timed), then a timed GET of the
    sample's path on the same keep-alive connection, so the service loads that one enterprise
    from PostgreSQL. Paths rotate over FILE (one /integrations/{n} a line).

  probe.py refresh-stream --url http://127.0.0.1:PORT --paths FILE [--lead 0.3] [--slice-us N]
                         [--service-pid PID] [--postgres-pid POSTMASTER_PID]
    GETs on one keep-alive connection in a tight loop while, on a second connection, one
    POST /cache/refresh runs (sent --lead s after the stream starts, from a child process); the
    latency of every GET that overlapped the refresh, its duration_ms and the wall time of the
    POST, and (`cpu_during_s`) the CPU seconds that the probe, the service and the cluster used
    from the POST's sending to its answer: what the cores were busy with meanwhile. With --slice-us, the probe first asks the kernel for a time slice of N µs
    (sched_setattr's sched_runtime for a normal task, Linux 6.12 and later): a task with a short
    slice runs as soon as it wakes instead of waiting up to a scheduler tick for a core that
    PostgreSQL's refresh backend and the service's refresh thread hold. `slice_ns` in the output
    is the slice the kernel reports for the probe (/proc/self/sched), null where it reports none.

A GET's latency is request sent to body read (http.client), so it includes the client's own
Python overhead of some tens of µs.
"""

import argparse
import ctypes
import http.client
import json
import math
import multiprocessing
import os
import platform
import struct
import sys
import time
import urllib.parse


def percentile(sorted_values, p):
  if not sorted_values:
    return None
  rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
  return sorted_values[rank - 1]


def summary(ms):
  s = sorted(ms)
  return {"count": len(s), "p50_ms": percentile(s, 50), "p99_ms": percentile(s, 99),
          "max_ms": s[-1] if s else None, "mean_ms": sum(s) / len(s) if s else None,
          "over_5ms": sum(1 for x in s if x > 5.0)}


def connect(url):
  u = urllib.parse.urlsplit(url)
  return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def call(conn, method, path):
  conn.request(method, path)
  resp = conn.getresponse()
  return resp.status, resp.read()


def stats(url):
  c = connect(url)
  try:
    status, body = call(c, "GET", "/stats")
    return json.loads(body) if status == 200 else {}
  finally:
    c.close()


def miss(args, paths):
  conn = connect(args.url)
  before = stats(args.url)
  ms, non200 = [], 0
  for i in range(args.samples):
    path = paths[i % len(paths)]
    number = path.rstrip("/").split("/")[2]
    status, _ = call(conn, "POST", "/cache/invalidate/" + number)
    if status != 200:
      non200 += 1
    t0 = time.perf_counter()
    status, _ = call(conn, "GET", path)
    ms.append((time.perf_counter() - t0) * 1000.0)
    if status != 200:
      non200 += 1
  after = stats(args.url)
  out = summary(ms)
  out.update({"samples": args.samples, "non200": non200,
              "misses": (after.get("misses", 0) - before.get("misses", 0)),
              "hits": (after.get("hits", 0) - before.get("hits", 0)),
              "database_loads": (after.get("database_loads", 0) - before.get("database_loads", 0))})
  return out


SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def set_slice(us):
  """Asks for a time slice of `us` µs for this process (policy SCHED_OTHER, nice 0); returns the
  slice the kernel then reports in ns, or None. A kernel without custom slices keeps its default,
  which the returned value shows."""
  nr = SCHED_SETATTR.get(platform.machine())
  if nr is not None:
    # struct sched_attr (VER1, 56 bytes): size, policy, flags, nice, priority, runtime, deadline,
    # period, util_min, util_max
    attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, us * 1000, 0, 0,
                                                   0, 0))
    if ctypes.CDLL(None, use_errno=True).syscall(nr, 0, attr, 0) != 0:
      sys.stderr.write("probe.py: sched_setattr: %s\n" % ctypes.get_errno())
  try:
    with open("/proc/self/sched", encoding="ascii") as f:
      for line in f:
        if line.startswith("se.slice"):
          return int(line.split(":")[1])
  except (OSError, ValueError):
    pass
  return None


def cpu_ticks(pid, children=False):
  """utime + stime of a process in clock ticks (all its threads), with its exited children's
  when asked (a PostgreSQL postmaster: backends that ended); None if it cannot be read."""
  try:
    with open("/proc/%d/stat" % pid, encoding="ascii") as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except (OSError, IndexError):
    return None
  return sum(int(x) for x in fields[11:15 if children else 13])


def children_of(ppid):
  """Live child processes of ppid, from /proc."""
  kids = []
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open("/proc/%s/stat" % name, encoding="ascii", errors="replace") as f:
          if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
            kids.append(int(name))
      except (OSError, IndexError, ValueError):
        pass
  return kids


def cpu_snapshot(pids):
  """Clock ticks of each watched process: {"probe", "service", "postgres"} (PostgreSQL: the
  postmaster, its exited children and every live child)."""
  snap = {"probe": cpu_ticks(os.getppid())}
  if pids.get("service"):
    snap["service"] = cpu_ticks(pids["service"])
  if pids.get("postgres"):
    pm = pids["postgres"]
    total = cpu_ticks(pm, children=True)
    for kid in children_of(pm):
      total = None if total is None else total + (cpu_ticks(kid) or 0)
    snap["postgres"] = total
  return snap


def refresh_once(url, lead, out, pids):
  """In a child process: waits `lead` s, sends POST /cache/refresh, and sends back through the
  pipe `out` the window (time.monotonic() before and after, comparable across processes), the
  answer, and the CPU seconds the probe, the service and PostgreSQL used within the window. A
  process rather than a thread, so that it never holds the GET loop's interpreter lock: a thread
  did, and its 5 ms switch interval showed up as GETs of 5-7 ms."""
  time.sleep(lead)
  result = {}
  c = connect(url)
  c.timeout = 120
  before = cpu_snapshot(pids)
  start = time.monotonic()
  try:
    status, body = call(c, "POST", "/cache/refresh")
    end = time.monotonic()
    result["status"] = status
    try:
      result["duration_ms"] = json.loads(body).get("duration_ms")
    except ValueError:
      result["body"] = body[:200].decode("utf-8", "replace")
  except (OSError, http.client.HTTPException) as e:
    end = time.monotonic()
    result["error"] = str(e)
  after = cpu_snapshot(pids)
  c.close()
  tck = os.sysconf("SC_CLK_TCK")
  cpu = {k: (after[k] - v) / tck for k, v in before.items()
         if v is not None and after.get(k) is not None}
  out.send((start, end, result, cpu))
  out.close()


def refresh_stream(args, paths):
  slice_ns = set_slice(args.slice_us) if args.slice_us else None
  conn = connect(args.url)
  ctx = multiprocessing.get_context("fork")
  reader, writer = ctx.Pipe(duplex=False)
  pids = {"service": args.service_pid, "postgres": args.postgres_pid}
  child = ctx.Process(target=refresh_once, args=(args.url, args.lead, writer, pids))
  child.start()
  writer.close()
  samples, non200, i, window = [], 0, 0, None
  while window is None or time.monotonic() - window[1] < args.lead:
    path = paths[i % len(paths)]
    i += 1
    t0 = time.monotonic()
    status, _ = call(conn, "GET", path)
    t1 = time.monotonic()
    samples.append((t0, t1))
    if status != 200:
      non200 += 1
    if window is None and reader.poll():
      window = reader.recv()
  child.join()
  start, end, result, cpu = window
  during = [(b - a) * 1000.0 for a, b in samples if b >= start and a <= end]
  outside = [(b - a) * 1000.0 for a, b in samples if b < start or a > end]
  out = {"refresh": result, "refresh_wall_ms": (end - start) * 1000.0, "non200": non200,
         "during": summary(during), "outside": summary(outside), "slice_us": args.slice_us,
         "slice_ns": slice_ns, "cpu_during_s": cpu}
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("mode", choices=["miss", "refresh-stream"])
  ap.add_argument("--url", required=True)
  ap.add_argument("--paths", required=True)
  ap.add_argument("--samples", type=int, default=1000)
  ap.add_argument("--lead", type=float, default=0.3)
  ap.add_argument("--slice-us", type=int, default=0)
  ap.add_argument("--service-pid", type=int, default=0,
                  help="refresh-stream: also report the service's CPU during the refresh")
  ap.add_argument("--postgres-pid", type=int, default=0,
                  help="refresh-stream: also report the cluster's CPU (its postmaster's pid)")
  args = ap.parse_args()
  with open(args.paths, encoding="utf-8") as f:
    paths = [l.strip() for l in f if l.strip()]
  out = miss(args, paths) if args.mode == "miss" else refresh_stream(args, paths)
  json.dump(out, sys.stdout)
  sys.stdout.write("\n")


if __name__ == "__main__":
  main()
