"""Profile excerpts for docs/PERFORMANCE.md (issue 4: where a target is not met, the report shows
what bounds it). Reads what bench/profile.sh left in TMPDIR/profile: hits.tsv (server, requests,
CPU ticks of the profiled wrk run), hits-ours.tsv and hits-nginx.tsv (perf samples per thread
name, library and function), refresh.tsv, refresh-cpu.tsv and refresh-meta.tsv (three profiled
full refreshes), memory.tsv (resident kB per mapping) and unavailable (why perf could not run).
Standard library only; report.py calls profile_section().
"""

import os
import statistics

from report_common import read_tsv, table

KERNEL = "[kernel.kallsyms]"
TOP = 10  # functions listed per party


def read_samples(path):
  """perf sums as (samples, thread name, library, function), the most samples first."""
  out = []
  for row in read_tsv(path, header=False):
    if len(row) >= 4 and row[0].isdigit():
      out.append((int(row[0]), row[1], row[2], row[3]))
  return sorted(out, key=lambda r: -r[0])


def part_of(dso, own):
  """The library class of a sample, as the tables group them."""
  if dso == KERNEL:
    return "kernel"
  if dso == own:
    return "own code (%s)" % own
  if dso.startswith("libc.so"):
    return "libc"
  if dso.startswith("libmicrohttpd"):
    return "libmicrohttpd"
  return "other libraries"


def fn_label(dso, sym):
  """'function (library)', without perf's [.] / [k] marks."""
  sym = sym.split("] ", 1)[-1] if sym.startswith("[") else sym
  return "`%s` (%s)" % (sym, os.path.basename(dso))


def pct(part, whole):
  return "%.1f %%" % (100.0 * part / whole) if whole else "-"


def top_functions(samples, keep):
  """The TOP functions of the samples that keep(row) accepts, with their share of those."""
  rows = [r for r in samples if keep(r)]
  whole = sum(r[0] for r in rows)
  return [(fn_label(r[2], r[3]), pct(r[0], whole)) for r in rows[:TOP]], whole


def side_by_side(left, right, names):
  """Two top-function lists as one table: rank, left function, share, right function, share."""
  rows = []
  for i in range(max(len(left), len(right))):
    a = left[i] if i < len(left) else ("", "")
    b = right[i] if i < len(right) else ("", "")
    rows.append((i + 1, a[0], a[1], b[0], b[1]))
  return table(["#", names[0], "share", names[1], "share"], rows)


def hits_part(d, meta, clk_tck):
  runs = {row[0]: row for row in read_tsv(os.path.join(d, "hits.tsv"), header=False)
          if len(row) >= 3}
  own = {"ours": "integration_cache", "nginx": "nginx"}
  found = {}
  for server in ("ours", "nginx"):
    samples = read_samples(os.path.join(d, "hits-%s.tsv" % server))
    run = runs.get(server)
    if not samples or not run or int(run[1] or 0) == 0:
      return []
    us_per_req = int(run[2]) / clk_tck * 1e6 / int(run[1])
    found[server] = (samples, us_per_req)
  parts = ["kernel", "own code", "libc", "libmicrohttpd", "other libraries"]
  split = []
  for part in parts:
    row = [part if part != "own code" else "own code (integration_cache / nginx)"]
    for server in ("ours", "nginx"):
      samples, us = found[server]
      whole = sum(r[0] for r in samples)
      mine = sum(r[0] for r in samples if part_of(r[2], own[server]).startswith(part))
      row += [pct(mine, whole), "%.2f" % (us * mine / whole) if whole else "-"]
    split.append(row)
  split.append(["**all**", "100 %", "**%.2f**" % found["ours"][1], "100 %",
                "**%.2f**" % found["nginx"][1]])
  user = {}
  for server in ("ours", "nginx"):
    user[server], _ = top_functions(found[server][0], lambda r: r[2] != KERNEL)
  md = ["### Cache hits: where each server's CPU went", ""]
  md.append("One more run of %s on each server, sampled by `perf record -F 999` (all threads, "
            "no call graphs); CPU per request from `/proc` over the same run. Both servers make "
            "the same reads and writes per request, so the kernel's part is mostly the same "
            "TCP work; libmicrohttpd polls epoll more often than nginx (docs/PERFORMANCE-NOTES.md, "
            "section 13) and its threads are preempted more, which adds kernel time. The rest "
            "of the difference is in user space." % meta.get("profile_load",
                                                             "the pipelined /config load"))
  md.append("")
  md.append(table(["where", "service: samples", "service: CPU µs / request",
                   "nginx: samples", "nginx: CPU µs / request"], split))
  md.append("")
  md.append("The functions outside the kernel with the most samples, as a share of each server's "
            "user-space samples. libc's `memset` is libmicrohttpd clearing the connection's "
            "memory pool before each request (`MHD_pool_reset`), its `strcspn`/`memchr`/"
            "`strcmp` are libmicrohttpd's header parsing, the mutexes are its per-response "
            "locks; the service's own code is the rest (docs/PERFORMANCE-NOTES.md, sections 1 "
            "and 10).")
  md.append("")
  md.append(side_by_side(user["ours"], user["nginx"], ("service", "nginx")))
  md.append("")
  return md


SERVICE_THREADS = {
  "postgres-backend": "PostgreSQL: the refresh's backend (its process that worked most)",
  "postgres-other": "PostgreSQL: its other processes",
  "ic-refresh": "service: refresh thread (reads the rows, builds the entries)",
  "integration_cac": "service: I/O thread (swaps the new table in)",
  "ic-reaper": "service: reaper thread (frees the replaced table)",
  "MHD-single": "service: HTTP threads",
}


def refresh_part(d, clk_tck):
  meta = read_tsv(os.path.join(d, "refresh-meta.tsv"), header=False)
  cpu = read_tsv(os.path.join(d, "refresh-cpu.tsv"), header=False)
  samples = read_samples(os.path.join(d, "refresh.tsv"))
  if not meta or not cpu or not samples:
    return []
  n = meta[0][0]
  walls = [float(x) for x in (meta[0][1] if len(meta[0]) > 1 else "").split(",") if x]
  if not walls:
    return []
  count = len(walls)
  rows = []
  for who, ticks in sorted(cpu, key=lambda r: -int(r[1])):
    ms = int(ticks) / clk_tck * 1000 / count
    if ms < 0.5:
      continue
    label = SERVICE_THREADS.get(who, "service: " + who)
    rows.append((label, "%.0f" % ms))
  pg, _ = top_functions(samples, lambda r: r[1] == "postgres")
  io, _ = top_functions(samples, lambda r: r[1] == "ic-refresh")
  md = ["### Full refresh of %s enterprises: who works while it runs" % "{:,}".format(int(n)), ""]
  md.append("Three more `POST /cache/refresh` on the cost-growth service of that size, sampled "
            "by perf together with every process of the cluster; CPU from `/proc`, per refresh "
            "(median wall time of the three: %.1f ms). The service's refresh thread reads the "
            "rows in single-row mode and builds each entry as its row arrives, so its work overlaps "
            "PostgreSQL's; the refresh cannot end before PostgreSQL's backend has turned every "
            "config from jsonb into text and sent it." % statistics.median(walls))
  md.append("")
  md.append(table(["who", "CPU ms per refresh"], rows))
  md.append("")
  md.append(side_by_side(pg, io, ("PostgreSQL", "service refresh thread")))
  md.append("")
  return md


def memory_part(d, meta):
  rows = read_tsv(os.path.join(d, "memory.tsv"), header=False)
  if not rows:
    return []
  total = sum(int(r[1]) for r in rows)
  files = [(os.path.basename(r[0]), int(r[1])) for r in rows if r[0].startswith("/")]
  own = [(r[0], int(r[1])) for r in rows if not r[0].startswith("/")]
  lib_kb = sum(kb for _, kb in files)
  size = meta.get("memory_size", "")
  md = ["### Memory at %s enterprises: what the resident pages are" % (
    "{:,}".format(int(size)) if size.isdigit() else "the smallest size"), ""]
  md.append("`/proc/PID/smaps` of the cost-growth service, resident kB summed per mapping: "
            "%.1f MB in all, of which %.1f MB are pages of mapped files (the program and its "
            "shared libraries, the same pages in every process that maps them) and %.1f MB "
            "the process's own memory." % (total / 1024, lib_kb / 1024,
                                           (total - lib_kb) / 1024))
  md.append("")
  shown = own + files[:10]
  md.append(table(["mapping", "resident kB"], [(name, kb) for name, kb in shown]))
  md.append("")
  return md


def profile_section(d, meta, clk_tck):
  """The report's profile section (markdown), or '' when the run left nothing to show."""
  d = os.path.join(d, "profile")
  md = ["## Profiles behind the targets not met", ""]
  why = read_tsv(os.path.join(d, "unavailable"), header=False)
  if why:
    md.append("No CPU profiles in this run: %s." % " ".join(why[0]))
    md.append("")
  body = hits_part(d, meta, clk_tck) + refresh_part(d, clk_tck) + memory_part(d, meta)
  if not body and not why:
    return ""
  return "\n".join(md + body)
