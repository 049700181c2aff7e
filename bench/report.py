#!/usr/bin/env python3
"""Summary of one bench/run.sh run: a table on stdout and docs/PERFORMANCE.md.

Reads what run.sh left in its temporary directory: meta.tsv (machine and settings), results.tsv
(one row per measured wrk run), commands.txt (the wrk command lines), lag-idle.json and
lag-load.json (bench/lag_probe.py), lag-load.wrk (the background load's BENCH line), stats.json
(the service's /stats at the end), service-warnings.log and nginx-error.log; for the dispatch
intake (step 4): dispatch.tsv (one row per measured wrk run of bench/dispatch.lua),
dispatch-commands.txt, drain-*.tsv (the outbox's pending rows over time), dispatch-stats.json,
dispatch-warnings.log, dispatch-wal.tsv, dispatch-outbox.tsv, dispatch-claims.tsv,
dispatch-analyze.tsv, dispatch-claim-plan.txt and dispatch-pgss.tsv.

Each summary cell is the median over the rounds of that server and load. A server/load with any
round that saw a non-200 answer or a socket error is reported as an error, never as a number;
for the dispatch intake, so is a round with a 200 whose body lacks "success":true.
Standard library only.
  report.py --dir TMPDIR --out docs/PERFORMANCE.md
"""

import argparse
import collections
import csv
import datetime
import json
import os
import re
import statistics

from report_common import read_tsv, table
from report_profile import profile_section

SERVERS = [("ours", "integration_cache"), ("nginx", "nginx")]


def read_meta(d):
  meta = {}
  with open(os.path.join(d, "meta.tsv"), encoding="utf-8") as f:
    for line in f:
      key, _, value = line.rstrip("\n").partition("\t")
      meta[key] = value
  return meta


def read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_text(path):
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().strip()
  except OSError:
    return ""


def num(v):
  try:
    return float(v)
  except (TypeError, ValueError):
    return None


def cpu_per_1k(row, clk_tck):
  """Server CPU seconds per 1000 requests of one run."""
  ticks, reqs = num(row["cpu_ticks"]), num(row["requests"])
  if ticks is None or not reqs:
    return None
  return ticks / clk_tck / reqs * 1000.0


def median_or_none(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def summarise(rows, clk_tck):
  """{(server, conns): cell} with medians over the rounds, or an error description."""
  groups = collections.defaultdict(list)
  for r in rows:
    groups[(r.get("endpoint", "integrations"), r["server"], r["conns"])].append(r)
  cells = {}
  for key, runs in groups.items():
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
      why = []
      for r in bad:
        if r["status"] == "errors":
          why.append("round %s: %s non-200, %s socket errors"
                     % (r["round"], r["non200"], r["socket_errors"]))
        else:
          why.append("round %s: %s" % (r["round"], r["status"]))
      cells[key] = {"error": "; ".join(why)}
      continue
    cells[key] = {
      "rps": statistics.median(num(r["rps"]) for r in runs),
      "rps_min": min(num(r["rps"]) for r in runs),
      "rps_max": max(num(r["rps"]) for r in runs),
      "p50": statistics.median(num(r["p50_us"]) for r in runs),
      "p99": statistics.median(num(r["p99_us"]) for r in runs),
      "cpu": median_or_none([cpu_per_1k(r, clk_tck) for r in runs]),
      "threads": runs[0]["threads"],
      "rounds": len(runs),
    }
  return cells


def fmt_us(us):
  if us is None:
    return "-"
  return "%d µs" % us if us < 1000 else "%.2f ms" % (us / 1000.0)


def fmt_ms(ms):
  return "-" if ms is None else "%.2f ms" % ms


def load_key(conns):
  """Sort key of a load label: "50" (connections) or "50x10" (pipelined, depth 10)."""
  c, _, depth = conns.partition("x")
  return (int(depth or 1), int(c))


def load_label(conns, threads):
  c, _, depth = conns.partition("x")
  text = "%s conn%s (wrk -t%s -c%s)" % (c, "" if c == "1" else "s", threads, c)
  if depth:
    text += ", %s pipelined" % depth
  return text


# Issue 4's cache-hit targets against nginx: >= 1.0x its requests/s, >= 1.0x its requests per
# server-CPU-second (CPU per request ratio <= 1.0), p99 <= 1.2x its p99.
TARGET_RPS, TARGET_CPU, TARGET_P99 = 1.0, 1.0, 1.2


def target_checks(ours, ref):
  """[(name, ratio, met)] for one endpoint/load, or None when either side is missing/erroneous."""
  if not ours or not ref or "error" in ours or "error" in ref:
    return None
  checks = [("requests/s", ours["rps"] / ref["rps"], ours["rps"] / ref["rps"] >= TARGET_RPS)]
  if ours["cpu"] and ref["cpu"]:
    # requests per CPU-second ratio = nginx CPU per request / ours
    eff = ref["cpu"] / ours["cpu"]
    checks.append(("requests per CPU-s", eff, eff >= TARGET_CPU))
  if ours["p99"] and ref["p99"]:
    r = ours["p99"] / ref["p99"]
    checks.append(("p99", r, r <= TARGET_P99))
  return checks


def throughput_table(cells, loads, endpoint="integrations"):
  header = ["load", "server", "requests/s", "ours / nginx", "p50", "p99", "p99 ours / nginx",
            "CPU s / 1k req", "CPU ours / nginx", "targets (rps ≥1.0×, req/CPU-s ≥1.0×, p99 ≤1.2×)"]
  rows = []
  for conns in loads:
    ours = cells.get((endpoint, "ours", conns))
    ref = cells.get((endpoint, "nginx", conns))
    if ours is None and ref is None:
      continue
    checks = target_checks(ours, ref)
    for server, label in SERVERS:
      c = cells.get((endpoint, server, conns))
      load = load_label(conns, c.get("threads", "?") if c else "?") if server == "ours" else ""
      if c is None:
        rows.append([load, label, "not run", "", "", "", "", "", "", ""])
      elif "error" in c:
        rows.append([load, label, "ERROR: " + c["error"], "", "", "", "", "", "", ""])
      else:
        ratio = cpu_ratio = p99_ratio = verdict = ""
        if server == "ours" and checks:
          ratio = "%.2f" % (ours["rps"] / ref["rps"])
          cpu_ratio = "%.2f" % (ours["cpu"] / ref["cpu"]) if ours["cpu"] and ref["cpu"] else "-"
          p99_ratio = "%.2f" % (ours["p99"] / ref["p99"]) if ours["p99"] and ref["p99"] else "-"
          verdict = ", ".join("%s" % ("met" if met else "**NOT met**") for _, _, met in checks)
        rps = "{:,.0f}".format(c["rps"])
        if c["rounds"] > 1:
          rps += " ({:,.0f}–{:,.0f})".format(c["rps_min"], c["rps_max"])
        rows.append([load, label, rps, ratio, fmt_us(c["p50"]), fmt_us(c["p99"]), p99_ratio,
                     "%.4f" % c["cpu"] if c["cpu"] is not None else "-", cpu_ratio, verdict])
  return table(header, rows)


def target_shortfalls(cells, loads):
  """Markdown lines: every cache-hit target not met, by how much."""
  out = []
  for endpoint in ("integrations", "config"):
    for conns in loads:
      checks = target_checks(cells.get((endpoint, "ours", conns)),
                             cells.get((endpoint, "nginx", conns)))
      if checks is None:
        if (endpoint, "ours", conns) in cells:
          out.append("- /%s, %s: not measurable (errors in a round)" % (endpoint, conns))
        continue
      for name, r, met in checks:
        if met:
          continue
        if name == "p99":
          out.append("- /%s, %s: p99 is %.2f× nginx's (target ≤ 1.2×; %.0f%% over)"
                     % (endpoint, load_label(conns, "?").split(" (")[0] + (
                       ", pipelined" if "x" in conns else ""), r, (r / TARGET_P99 - 1) * 100))
        else:
          out.append("- /%s, %s: %s is %.2f× nginx's (target ≥ 1.0×; %.0f%% short)"
                     % (endpoint, load_label(conns, "?").split(" (")[0] + (
                       ", pipelined" if "x" in conns else ""), name, r, (1 - r) * 100))
  return out


def lag_row(name, lag, err):
  if lag is None:
    return [name, err or "not measured", "", "", "", ""]
  done = "%d/%d" % (lag["completed"], lag["samples"])
  if lag["timeouts"] or lag["non200"]:
    done += " (%d timed out, %d non-200)" % (lag["timeouts"], lag["non200"])
  return [name, done, fmt_ms(lag["p50_ms"]), fmt_ms(lag["p99_ms"]), fmt_ms(lag["max_ms"]),
          str(lag["polls_p50"])]


def lag_table(d, load_wrk):
  header = ["update-to-served delay", "samples", "p50", "p99", "max", "polls/sample (p50)"]
  rows = []
  for name, label in (("idle", "idle"), ("load", "under load (*)")):
    lag = read_json(os.path.join(d, "lag-%s.json" % name))
    rows.append(lag_row(label, lag, read_text(os.path.join(d, "lag-%s.err" % name))))
  note = "(*) meanwhile wrk -t1 -c50 on the service: "
  if load_wrk:
    m = dict(kv.split("=", 1) for kv in load_wrk.split()[1:] if "=" in kv)
    bad = int(m.get("non200", 0)) + sum(int(m.get(k, 0)) for k in
                                        ("errors_connect", "errors_read", "errors_write",
                                         "errors_timeout"))
    note += "{:,.0f} req/s, {}".format(float(m.get("rps", 0)),
                                       "%d errors" % bad if bad else "all 200")
  else:
    note += "no result"
  return table(header, rows) + "\n\n" + note


def service_log(d):
  """[(unix time, line)] of the service log; its timestamps are local time, like the probe's."""
  out = []
  for line in read_text(os.path.join(d, "service.log")).splitlines():
    try:
      t = datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    except ValueError:
      continue
    out.append((t, line))
  return out


def lag_outliers(d):
  """Slow samples lined up with the service log: when did the service log the notification (the
  LISTEN connection delivered it) and what else did it log meanwhile? That separates a late
  NOTIFY (database or scheduling) from a slow reload inside the service."""
  log = service_log(d)
  lines = []
  for name, label in (("idle", "idle"), ("load", "under load")):
    lag = read_json(os.path.join(d, "lag-%s.json" % name))
    if not lag or not lag.get("trace"):
      continue
    p50 = lag["p50_ms"] or 0.0
    limit = max(5.0, 10.0 * p50)
    slow = [x for x in lag["trace"] if x[2] is None or x[2] > limit]
    if not slow:
      continue
    lines.append("- %s: %d of %d samples over %.1f ms (10 × p50, at least 5 ms):"
                 % (label, len(slow), len(lag["trace"]), limit))
    note = "notification: enterprise %s" % lag["enterprise"]
    for pre, w, ms, polls, longest in sorted(slow, key=lambda x: -(x[2] or 1e9))[:5]:
      end = w + (ms if ms is not None else 5000.0) / 1000.0
      notified = [t for t, l in log if note in l and pre <= t <= end]
      other = sorted({re.sub(r"^\S+\s+", "", l) for t, l in log
                      if w - 1.0 <= t <= end + 0.1 and "notification: enterprise" not in l})
      lines.append("  - at %s: %s in %d poll%s (longest %s); the service logged the "
                   "notification %s%s"
                   % (datetime.datetime.fromtimestamp(w).strftime("%H:%M:%S.%f")[:-3],
                      fmt_ms(ms) if ms is not None else "timed out", polls,
                      "" if polls == 1 else "s", fmt_ms(longest),
                      "%.1f ms after the commit returned" % ((notified[0] - w) * 1000.0)
                      if notified else "(not found in the log)",
                      "; meanwhile: " + "; ".join("`%s`" % o for o in other[:3]) if other else ""))
  return "\n".join(lines)


def detail_table(rows, clk_tck):
  header = ["endpoint", "server", "conns", "round", "status", "requests/s", "requests", "p50", "p99", "max",
            "server CPU s", "split (per process/thread)", "CPU s / 1k req", "wrk CPU s",
            "other CPU s", "cache hits", "cache misses", "sleeps / 1k req",
            "preempted / 1k req"]
  out = []
  for r in rows:
    cpu = cpu_per_1k(r, clk_tck)
    ticks = num(r["cpu_ticks"])
    busy, wrk = num(r["machine_ticks"]), num(r["wrk_cpu_s"])
    other = "-"
    if busy is not None and ticks is not None and wrk is not None:
      other = "%.2f" % max(0.0, busy / clk_tck - ticks / clk_tck - wrk)
    out.append([r.get("endpoint", "integrations"), r["server"], r["conns"], r["round"], r["status"], r["rps"], r["requests"],
                fmt_us(num(r["p50_us"])), fmt_us(num(r["p99_us"])), fmt_us(num(r["max_us"])),
                "%.2f" % (ticks / clk_tck) if ticks is not None else "-", r["cpu_split"],
                "%.4f" % cpu if cpu is not None else "-", r["wrk_cpu_s"],
                other, r["hits"], r["misses"], fmt_per_1k(r.get("sleeps"), r["requests"]),
                fmt_per_1k(r.get("preempted"), r["requests"])])
  return table(header, out)


def fmt_per_1k(count, requests):
  c, n = num(count), num(requests)
  return "%.1f" % (c / n * 1000.0) if c is not None and n else "-"


def ctx_summary(rows):
  """Median voluntary / involuntary context switches per 1k requests of each server at 50 and
  200 connections (cache-hit runs, both endpoints): how often the server's threads ran out of
  work and slept, against how often they were preempted while still having work."""
  out = {}
  for server in ("ours", "nginx"):
    vol, inv = [], []
    for r in rows:
      n = num(r["requests"])
      if r["server"] != server or r["conns"] not in ("50", "200") or not n:
        continue
      if num(r.get("sleeps")) is None or num(r.get("preempted")) is None:
        continue
      vol.append(num(r["sleeps"]) / n * 1000.0)
      inv.append(num(r["preempted"]) / n * 1000.0)
    if vol:
      out[server] = (statistics.median(vol), statistics.median(inv))
  return out


def service_health(d):
  """What the service said about itself during the run: /stats counters and its warnings."""
  stats = read_json(os.path.join(d, "stats.json")) or {}
  keys = ["uptime_seconds", "hits", "misses", "refreshes", "listener_reconnects",
          "notifications_received", "database_loads", "database_errors", "refresh_failures",
          "last_refresh_ms"]
  lines = ["`/stats` at the end: " + ", ".join("%s %s" % (k, stats[k]) for k in keys if k in stats)]
  warnings = collections.Counter()
  for line in read_text(os.path.join(d, "service-warnings.log")).splitlines():
    # drop the timestamp and the numbers that differ from one line to the next
    msg = re.sub(r"^\S+\s+", "", line)
    msg = re.sub(r"\d+(\.\d+)?", "N", msg)
    warnings[msg] += 1
  if warnings:
    lines.append("")
    lines.append("Warnings and errors in the service log (numbers replaced by N):")
    lines.append("")
    for msg, n in warnings.most_common():
      lines.append("- %d × `%s`" % (n, msg))
  else:
    lines.append("")
    lines.append("No warnings or errors in the service log.")
  nginx_err = read_text(os.path.join(d, "nginx-error.log"))
  if nginx_err:
    lines.append("")
    lines.append("nginx error log: %d line(s), first: `%s`" % (len(nginx_err.splitlines()),
                                                           nginx_err.splitlines()[0]))
  return "\n".join(lines)


# --- dispatch intake (run.sh step 4) ------------------------------------------------------------

AIM_RPS = 5000.0  # issue 3: >= 5,000 accepted events/s ...
AIM_P99_US = 10000.0  # ... and p99 under 10 ms


def total(runs, key):
  """Sum of a column over runs, None when any value is unknown."""
  values = [num(r[key]) for r in runs]
  return None if any(v is None for v in values) else sum(values)


def summarise_dispatch(rows, clk_tck):
  groups = collections.defaultdict(list)
  for r in rows:
    groups[r["conns"]].append(r)
  cells = {}
  for conns, runs in groups.items():
    c = {"threads": runs[0]["threads"], "rounds": len(runs)}
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
      why = []
      for r in bad:
        if r["status"] == "errors":
          why.append("round %s: %s non-200, %s bodies without \"success\":true (%s duplicates), "
                     "%s socket errors" % (r["round"], r["non200"], r["bad_body"],
                                           r["duplicates"], r["socket_errors"]))
        else:
          why.append("round %s: %s" % (r["round"], r["status"]))
      c["error"] = "; ".join(why)
    else:
      c.update({
        "rps": statistics.median(num(r["rps"]) for r in runs),
        "rps_min": min(num(r["rps"]) for r in runs),
        "rps_max": max(num(r["rps"]) for r in runs),
        "p50": statistics.median(num(r["p50_us"]) for r in runs),
        "p99": statistics.median(num(r["p99_us"]) for r in runs),
        "p99_max": max(num(r["p99_us"]) for r in runs),
      })
    events = [num(r["accepted"]) or 0 for r in runs]
    c["cpu"] = median_or_none([num(r["cpu_ticks"]) / clk_tck / e * 1000.0
                               for r, e in zip(runs, events) if e and num(r["cpu_ticks"]) is not None])
    c["pg_cpu"] = median_or_none([num(r["pg_ticks"]) / clk_tck / e * 1000.0
                                  for r, e in zip(runs, events) if e and num(r["pg_ticks"]) is not None])
    c["accepted"] = sum(events)
    for key in ("rows", "delivered", "spooled", "insert_calls", "claim_calls", "claim_ms"):
      c[key] = total(runs, key)
    c["pending_after"] = runs[-1]["pending_after"]
    c["claims_running"] = max((int(num(r["claims_running"]) or 0) for r in runs), default=0)
    cells[conns] = c
  return cells


def fmt_int(v):
  return "-" if v is None else "{:,.0f}".format(v)


def dispatch_table(cells):
  header = ["load", "events/s", "p50", "p99", "service CPU s / 1k events",
            "PostgreSQL CPU s / 1k events", "events per commit", "outbox rows written",
            "delivered during the rounds", "pending after the last round", "spooled"]
  out = []
  for conns in sorted(cells, key=int):
    c = cells[conns]
    load = "%s conn%s (wrk -t%s -c%s)" % (conns, "" if conns == "1" else "s", c["threads"], conns)
    if "error" in c:
      first = ["ERROR: " + c["error"], "", ""]
    else:
      rps = "{:,.0f}".format(c["rps"])
      if c["rounds"] > 1:
        rps += " ({:,.0f}–{:,.0f})".format(c["rps_min"], c["rps_max"])
      first = [rps, fmt_us(c["p50"]), fmt_us(c["p99"])]
    rows = fmt_int(c["rows"])
    if c["rows"] is not None:
      # rows and /stats are read a moment apart: events in flight at a round's edges (at most
      # one per connection and round) may be counted on one side only; more is a real mismatch
      off = abs(c["rows"] - 3 * c["accepted"])
      rows += " (3 × %s events%s)" % (
        fmt_int(c["accepted"]), "" if off == 0 else
        ", ± %d rows in flight at the rounds' edges" % off
        if off <= 3 * int(conns) * c["rounds"] else ": MISMATCH")
    per_commit = ("%.1f" % (c["accepted"] / c["insert_calls"])
                  if c["insert_calls"] else "-")
    out.append([load] + first + [
      "%.4f" % c["cpu"] if c["cpu"] is not None else "-",
      "%.4f" % c["pg_cpu"] if c["pg_cpu"] is not None else "-",
      per_commit, rows, fmt_int(c["delivered"]), fmt_int(num(c["pending_after"])),
      fmt_int(c["spooled"])])
  return table(header, out)


def aim_lines(cells):
  """Issue 3's aim, checked against the medians: events/s at the highest load (one connection is
  bounded by one durable commit per event), p99 at every load."""
  if not cells:
    return []
  top = max(cells, key=int)
  c = cells[top]
  lines = []
  if "error" in c:
    lines.append("- ≥ 5,000 accepted events/s: not measurable, the %s-connection runs had errors"
                 % top)
  else:
    lines.append("- ≥ 5,000 accepted events/s (at %s connections): **%s** (median {:,.0f})"
                 .format(c["rps"]) % (top, "met" if c["rps"] >= AIM_RPS else "not met"))
  both = [conns for conns in sorted(cells, key=int) if "error" not in cells[conns]
          and cells[conns]["rps"] >= AIM_RPS and cells[conns]["p99"] < AIM_P99_US]
  lines.append("- ≥ 5,000 accepted events/s with p99 under 10 ms in the same runs: **%s**%s" % (
    "met" if both else "not met",
    " at %s" % ", ".join("%s connections ({:,.0f}/s, p99 %s)".format(cells[c]["rps"])
                         % (c, fmt_us(cells[c]["p99"])) for c in both) if both else
    " at any load measured"))
  for conns in sorted(cells, key=int):
    c = cells[conns]
    if "error" in c:
      lines.append("- p99 under 10 ms at %s connection(s): not measurable (errors)" % conns)
    else:
      lines.append("- p99 under 10 ms at %s connection%s: **%s** (median %s, worst round %s)"
                   % (conns, "" if conns == "1" else "s",
                      "met" if c["p99"] < AIM_P99_US else "not met", fmt_us(c["p99"]),
                      fmt_us(c["p99_max"])))
  return lines


DRAIN_DEADLINES = {}  # drain trace name -> its deadline in seconds (filled in by main())


def drain_summary(d, name):
  """(text, drained) for drain-NAME.tsv, or (None, None)."""
  trace = read_tsv(os.path.join(d, "drain-%s.tsv" % name), header=False)
  if not trace:
    return None, None
  t0, n0, dl0 = trace[0]
  t1, n1, dl1 = trace[-1]
  secs = num(t1) or 0.0
  delivered = (num(dl1) or 0) - (num(dl0) or 0)
  if n1 == "0":
    if n0 == "0":
      return "no row was pending", True
    return ("%s pending rows drained in %.1f s (%s deliveries, %s/s)"
            % (fmt_int(num(n0)), secs, fmt_int(delivered),
               fmt_int(delivered / secs) if secs > 0 else "-")), True
  deadline = num(DRAIN_DEADLINES.get(name))
  gave_up = deadline is not None and secs < deadline - 0.5
  return ("**not drained**: %s rows pending at the start, %s still pending after %.1f s; "
          "%s deliveries meanwhile (%s/s)%s"
          % (fmt_int(num(n0)), fmt_int(num(n1)), secs, fmt_int(delivered),
             fmt_int(delivered / secs) if secs > 0 else "-",
             "; run.sh stopped waiting because nothing was delivered for 10 s" if gave_up
             else "")), False


def grouped_warnings(path):
  warnings = collections.Counter()
  for line in read_text(path).splitlines():
    msg = re.sub(r"^\S+\s+", "", line)
    msg = re.sub(r"\d+(\.\d+)?", "N", msg)
    warnings[msg] += 1
  return warnings


def dispatch_health(d, meta, cells):
  lines = []
  stats = read_json(os.path.join(d, "dispatch-stats.json")) or {}
  keys = ["dispatch_accepted", "dispatch_duplicates", "dispatch_spooled", "dispatch_delivered",
          "dispatch_retried", "dispatch_abandoned", "database_errors", "uptime_seconds"]
  lines.append("`/stats` of the dispatch service at the end: "
               + ", ".join("%s %s" % (k, stats[k]) for k in keys if k in stats))
  targets = stats.get("dispatch_targets") or {}
  if targets:
    lines[-1] += ("; per target (pending as last counted by the service, in flight, breaker): "
                  + ", ".join("%s %s/%s/%s" % (t, v.get("pending"), v.get("in_flight"),
                                                v.get("breaker")) for t, v in targets.items()))
  spooled = stats.get("dispatch_spooled")
  lines.append("")
  lines.append("- events that ended in the spool (`dispatch_spooled`, should be 0): **%s**"
               % ("-" if spooled is None else spooled))
  outbox = read_tsv(os.path.join(d, "dispatch-outbox.tsv"), header=False)
  if outbox:
    lines.append("- outbox rows by state and target at the end: "
                 + ", ".join("%s %s %s" % (s, t, fmt_int(num(n))) for s, t, n in outbox))
  claims = read_tsv(os.path.join(d, "dispatch-claims.tsv"), header=False)
  if claims and claims[0][0] != "0":
    lines.append("- claim statements (`WITH due AS ...`) still running in PostgreSQL at the end: "
                 "**%s**, the oldest for %s s; the service has one delivery connection, so all "
                 "but one at most were left behind by connections it dropped" % tuple(claims[0]))
  analyze = read_tsv(os.path.join(d, "dispatch-analyze.tsv"), header=False)
  if analyze:
    lines.append("- `integration_cache_outbox`: last autoanalyze %s (%s so far), %s live rows at "
                 "the end" % (analyze[0][0], analyze[0][1], fmt_int(num(analyze[0][2]))))
  wal = read_tsv(os.path.join(d, "dispatch-wal.tsv"), header=False)
  accepted = num(meta.get("dispatch_accepted_total"))
  if wal and len(wal[0]) == 5:
    records, nbytes, writes, syncs, sync_ms = (num(x) for x in wal[0])
    mean = "%.2f ms" % (sync_ms / syncs) if syncs else "-"
    lines.append("- WAL over the dispatch part (pg_stat_wal, approximate: backends report it "
                 "lazily): %s fsyncs, mean %s each, %.1f MB written; %s transactions committed "
                 "for %s accepted events"
                 % (fmt_int(syncs), mean, (nbytes or 0) / 1e6,
                    fmt_int(num(meta.get("dispatch_commits"))), fmt_int(accepted)))
  pgss = read_tsv(os.path.join(d, "dispatch-pgss.tsv"), header=False)
  if pgss:
    lines.append("")
    lines.append("Outbox statements over the dispatch part (pg_stat_statements; finished "
                 "statements only, so a claim still running or abandoned is not in it):")
    lines.append("")
    lines.append(table(["calls", "total ms", "mean ms", "max ms", "rows", "statement"],
                       [[r[0], r[1], r[2], r[3], r[4], "`%s...`" % r[5]] for r in pgss
                        if len(r) == 6]))
  plan = read_text(os.path.join(d, "dispatch-claim-plan.txt"))
  if plan:
    lines.append("")
    lines.append("The plan PostgreSQL chooses at the end for the claim query "
                 "(`SQL_OUTBOX_CLAIM` in src/dispatch/queries.h, target uon, limit 32):")
    lines.append("")
    lines.append("```")
    lines.append(plan)
    lines.append("```")
  warnings = grouped_warnings(os.path.join(d, "dispatch-warnings.log"))
  lines.append("")
  if warnings:
    lines.append("Warnings and errors in the dispatch service's log (numbers replaced by N):")
    lines.append("")
    for msg, n in warnings.most_common():
      lines.append("- %d × `%s`" % (n, msg))
  else:
    lines.append("No warnings or errors in the dispatch service's log.")
  return "\n".join(lines)


def stall_diagnosis(d):
  """When the outbox did not drain: what the log, pg_stat_activity and the claim plan show. Only
  facts found in the files are stated; nothing when the drain succeeded."""
  _, drained = drain_summary(d, "final")
  if drained is not False:
    return ""
  log = read_text(os.path.join(d, "dispatch-warnings.log")).splitlines()
  timeouts = sum(1 for l in log if re.search(r"outbox claim for \S+ failed: query timed out", l))
  drops = sum(1 for l in log if "connection 'delivery' lost" in l)
  parts = []
  if timeouts:
    parts.append("the delivery connection timed out %d times on a claim (IC_DB_TIMEOUT, 5 s by "
                 "default; %d × `outbox claim for ... failed: query timed out`, the claims queued "
                 "on it failing together); each time the service dropped the connection, opened "
                 "a new one and started the claims afresh" % (drops, timeouts))
  claims = read_tsv(os.path.join(d, "dispatch-claims.tsv"), header=False)
  if claims and claims[0][0] not in ("0", "1"):
    parts.append("PostgreSQL went on executing the abandoned statements (%s claims running at the "
                 "end, the oldest for %s s): their CPU is in *PostgreSQL CPU s* of the later "
                 "rounds" % tuple(claims[0]))
  plan = read_text(os.path.join(d, "dispatch-claim-plan.txt"))
  # the anti-join (a hangup waits for its dial) matches on unique_id by filtering, not by an index
  # lookup in integration_cache_outbox_call: every pending row against every pending row
  by_filter = re.search(r"Filter: \([^\n]*unique_id = o\.unique_id", plan)
  by_index = re.search(r"Index Cond: \([^\n]*unique_id = o\.unique_id", plan)
  if "Nested Loop Anti Join" in plan and by_filter and not by_index:
    analyze = read_tsv(os.path.join(d, "dispatch-analyze.tsv"), header=False)
    est = re.search(r"Index Scan using \S+ on integration_cache_outbox o .*?rows=(\d+)", plan)
    pending = [n for st, t, n in read_tsv(os.path.join(d, "dispatch-outbox.tsv"), header=False)
               if st == "pending" and t == "uon"]
    parts.append("the plan below accounts for the time: the anti-join that keeps a hangup behind "
                 "its dial is a nested loop that, for each pending row of the target, goes "
                 "through the target's pending rows and filters on `unique_id` (it does not look "
                 "the call up in `integration_cache_outbox_call`), so one claim costs the square "
                 "of the backlog; the planner chose it expecting %s pending uon row%s where there "
                 "were %s (last autoanalyze of the table: %s)"
                 % (est.group(1) if est else "?", "" if est and est.group(1) == "1" else "s",
                    fmt_int(num(pending[0])) if pending else "?",
                    analyze[0][0] if analyze else "unknown"))
  if not parts:
    return ""
  return "Why nothing was delivered: " + "; ".join(parts) + "."


def dispatch_detail(rows, clk_tck):
  header = ["conns", "round", "status", "events/s", "events", "p50", "p99", "max",
            "service CPU s", "split (per thread)", "PostgreSQL CPU s", "wrk CPU s", "other CPU s",
            "accepted", "outbox rows", "commits", "claims (mean ms)", "delivered",
            "pending after", "claims running", "spooled", "PostgreSQL background work"]
  out = []
  for r in rows:
    ticks, pg, busy, wrk = (num(r["cpu_ticks"]), num(r["pg_ticks"]), num(r["machine_ticks"]),
                            num(r["wrk_cpu_s"]))
    other = "-"
    if None not in (ticks, pg, busy, wrk):
      other = "%.2f" % max(0.0, (busy - ticks - pg) / clk_tck - wrk)
    calls, ms = num(r["claim_calls"]), num(r["claim_ms"])
    claims = "%s (%.2f)" % (r["claim_calls"], ms / calls) if calls else r["claim_calls"]
    out.append([r["conns"], r["round"], r["status"], r["rps"], r["requests"],
                fmt_us(num(r["p50_us"])), fmt_us(num(r["p99_us"])), fmt_us(num(r["max_us"])),
                "%.2f" % (ticks / clk_tck) if ticks is not None else "-", r["cpu_split"],
                "%.2f" % (pg / clk_tck) if pg is not None else "-", r["wrk_cpu_s"], other,
                r["accepted"], r["rows"], r["insert_calls"], claims, r["delivered"],
                r["pending_after"], r["claims_running"], r["spooled"], background_work(r, clk_tck)])
  return table(header, out)


def background_work(r, clk_tck):
  """What PostgreSQL did besides the load during a round (columns missing in older results)."""
  parts = []
  done, running = num(r.get("maintenance_done")), num(r.get("maintenance_running"))
  ckpt, bufs = num(r.get("checkpoints")), num(r.get("checkpoint_buffers"))
  if done:
    parts.append("%d autovacuum/analyze finished" % done)
  if running:
    parts.append("%d autovacuum worker%s running at the end" % (running, "" if running == 1 else "s"))
  if ckpt:
    parts.append("%d checkpoint%s started" % (ckpt, "" if ckpt == 1 else "s"))
  if bufs:
    parts.append("{:,.0f} buffers written by checkpoints".format(bufs))
  disk, dirty = num(r.get("disk_written_kb")), num(r.get("dirty_kb"))
  if disk is not None:
    parts.append("disk: %.0f MB written" % (disk / 1024.0))
  if dirty is not None:
    parts.append("%.0f MB dirty in the page cache at the end" % (dirty / 1024.0))
  steal = num(r.get("steal_ticks"))
  if steal is not None:
    parts.append("%.0f ms of CPU taken by the hypervisor (steal)" % (steal * 1000.0 / clk_tck))
  grew = num(r.get("outbox_grew_kb"))
  if grew is not None:
    parts.append("outbox file grew by %.0f MB" % (grew / 1024.0))
  if not parts and None in (done, running, ckpt, bufs):
    return "-"
  return "; ".join(parts) or "none"


def dispatch_section(d, meta, rows, cells, clk_tck):
  md = []
  md.append("## Dispatch intake: `POST /dispatch/call-event`")
  md.append("")
  md.append(
    "Durable commits: a **second PostgreSQL cluster with fsync=on** (%s; data on %s) serves a "
    "**second instance of the service**, started for this step with default settings except "
    "`--retailcrm-url`, `--uon-url` and `--ms-url`, which point at three more ports of the nginx "
    "above answering every `POST /internal/...` at once with 200 `{}` (and `--spool-dir` in the "
    "temporary directory). The cache measurement above keeps its own cluster with fsync off. "
    "Every event goes to enterprise %s (token: its name2 `%s`), which has retailcrm, uon and ms "
    "enabled, so each accepted event is three outbox rows and three deliveries; deliveries run "
    "during the measurement. bench/dispatch.lua sends, per wrk thread, a dial and later the "
    "hangup of each call (same `uniqueId`, new for every call and run: nothing is a duplicate) "
    "with a realistic `raw` (Phone, CallerIDNum, ConnectedLineNum, Extensions, CallType 0, Trunk, "
    "StartTime, EndTime, CallStatus); a non-200 answer or a body without `\"success\":true` "
    "is an error. Each cell is the median of %s rounds of %s s after a %s s warm-up (load "
    "average when this step began: %s). CPU per 1k events is user+system CPU per 1000 accepted "
    "events: the service process, and the whole PostgreSQL cluster (postmaster, every backend, "
    "and backends that exited). *Events per commit* is accepted events per outbox INSERT "
    "(pg_stat_statements): how well the group commit batches."
    % (meta.get("dispatch_pg"), meta.get("dispatch_fs"), meta.get("dispatch_enterprise"),
       meta.get("dispatch_token"), meta.get("rounds"), meta.get("dispatch_duration"),
       meta.get("warmup"), meta.get("dispatch_loadavg")))
  md.append("")
  md.append(dispatch_table(cells))
  md.append("")
  md.append("Aim (issue 3: ≥ 5,000 accepted events/s and p99 under 10 ms):")
  md.append("")
  md.extend(aim_lines(cells))
  md.append("")
  top = max(cells, key=int)
  if "error" not in cells[top] and cells[top]["rps"]:
    md.append("wrk is a closed loop: each connection sends its next event when the last one is "
              "answered, so by Little's law the mean latency at N connections is N / throughput. "
              "At %s connections and the median {:,.0f} events/s that is %.1f ms before any "
              "variance; a p99 under 10 ms there needs more throughput from the same two cores "
              "(see docs/PERFORMANCE-NOTES.md, section 4).".format(cells[top]["rps"])
              % (top, int(top) / cells[top]["rps"] * 1000.0))
    md.append("")
  md.append("### Delivery: does the outbox drain?")
  md.append("")
  for name in sorted(n[len("drain-"):-len(".tsv")] for n in os.listdir(d)
                     if n.startswith("drain-") and n.endswith(".tsv")):
    text, _ = drain_summary(d, name)
    if text is None:
      continue
    label = ("after the last round (deadline %s s)" % meta.get("drain_deadline")
             if name == "final" else "before the %s-connection load (deadline %s s)"
             % (name.replace("before-c", ""), meta.get("drain_between", "10")))
    md.append("- %s: %s" % (label, text))
  md.append("")
  diagnosis = stall_diagnosis(d)
  if diagnosis:
    md.append(diagnosis)
    md.append("")
  md.append(dispatch_health(d, meta, cells))
  md.append("")
  md.append("### Every dispatch run")
  md.append("")
  md.append("`accepted` is the service's /stats delta (it includes events in flight when wrk "
            "stopped, which wrk does not count); `outbox rows` are rows with an id above the "
            "largest before the run, counted 0.3 s after wrk stopped; `commits` are outbox "
            "INSERT statements (pg_stat_statements); `claims` the delivery claim statements that "
            "finished during the run and their mean time; `claims running` the claim statements "
            "PostgreSQL was executing after the run; `other CPU s` is the busy time of all cores "
            "minus service, PostgreSQL and wrk (the nginx stand-ins, softirqs, anything else on "
            "the machine).")
  md.append("")
  md.append(dispatch_detail(rows, clk_tck))
  return "\n".join(md)


# --- miss latency, cost growth, charts (issue 4) -----------------------------------------------

MISS_P99_MS = 1.0
LAG_P50_MS, LAG_P99_MS = 2.0, 5.0
REFRESH_MS = {10000: 150.0, 100000: 1500.0}
REFRESH_GET_MS = 5.0
RSS_RATIO = 2.5


def met(ok):
  return "met" if ok else "**NOT met**"


def miss_section(d, meta):
  m = read_json(os.path.join(d, "miss.json"))
  md = ["## Miss latency: `GET /integrations/{n}` loaded from PostgreSQL", ""]
  if not m:
    md.append("Not measured: %s" % (read_text(os.path.join(d, "miss.err")) or "no result"))
    return "\n".join(md), None
  md.append("bench/probe.py: per sample `POST /cache/invalidate/{n}` (not timed), then a timed "
            "`GET /integrations/{n}` on the same keep-alive connection (Python http.client: the "
            "client's own overhead, some tens of µs, is included), rotating over the 1,000 "
            "enterprises; the service's /stats over the probe show whether each GET was a miss "
            "that went to the database.")
  md.append("")
  md.append(table(["samples", "p50", "p99", "max", "mean", "misses (/stats)",
                   "database loads (/stats)", "non-200"],
                  [[m["count"], fmt_ms(m["p50_ms"]), fmt_ms(m["p99_ms"]), fmt_ms(m["max_ms"]),
                    fmt_ms(m["mean_ms"]), m.get("misses", "-"), m.get("database_loads", "-"),
                    m.get("non200", "-")]]))
  md.append("")
  ok = m["p99_ms"] is not None and m["p99_ms"] < MISS_P99_MS and not m.get("non200")
  line = "Target p99 < 1 ms: %s (p99 %s" % (met(ok), fmt_ms(m["p99_ms"]))
  if not ok and m["p99_ms"]:
    line += ", %.1f× the target" % (m["p99_ms"] / MISS_P99_MS)
  md.append(line + ").")
  return "\n".join(md), ok


def lag_targets(d):
  lines = []
  for name, label in (("idle", "idle"), ("load", "under load")):
    lag = read_json(os.path.join(d, "lag-%s.json" % name))
    if not lag or lag.get("p50_ms") is None:
      lines.append("- %s: not measured" % label)
      continue
    complete = not lag["timeouts"] and not lag["non200"]
    p50_ok = lag["p50_ms"] < LAG_P50_MS and complete
    p99_ok = lag["p99_ms"] < LAG_P99_MS and complete
    lines.append("- %s (%d samples): p50 < 2 ms %s (%s); p99 < 5 ms %s (%s%s)"
                 % (label, lag["samples"], met(p50_ok), fmt_ms(lag["p50_ms"]), met(p99_ok),
                    fmt_ms(lag["p99_ms"]),
                    "" if p99_ok else ", %.1f× the target" % (lag["p99_ms"] / LAG_P99_MS)))
  return lines


def median_of(csv):
  """The median of a comma-separated list of numbers ('-' for a missing one), or None."""
  xs = [num(x) for x in (csv or "").split(",")]
  xs = [x for x in xs if x is not None]
  return statistics.median(xs) if xs else None


def granted_slice_ms(stream):
  """The time slice a refresh-stream probe asked for (--slice-us) in ms, if the kernel gave it."""
  us = stream.get("slice_us")
  return us / 1000.0 if us and stream.get("slice_ns") == us * 1000 else None


def stream_cell(during):
  """GETs of one refresh-stream run that overlapped the refresh: p99 / max (count, over 5 ms)."""
  return "%s / %s (%s GETs, %s > 5 ms)" % (fmt_ms(during.get("p99_ms")),
                                           fmt_ms(during.get("max_ms")), during.get("count", 0),
                                           during.get("over_5ms", "-"))


def read_growth(d):
  out = []
  for r in read_tsv(os.path.join(d, "growth.tsv")):
    ms = [num(x) for x in r["refresh_ms"].split(",")]
    ms = [x for x in ms if x is not None]
    stream = read_json(os.path.join(d, r["stream"])) or {}
    short = read_json(os.path.join(d, r["stream_short"])) if r.get("stream_short") else None
    raw = num(r["raw_bytes"]) or 0
    rss = (num(r["rss_kb"]) or 0) * 1024.0
    out.append({
      "n": int(r["enterprises"]), "served": r["served"], "raw": raw, "rss": rss,
      "hwm": (num(r["hwm_kb"]) or 0) * 1024.0, "entries": r["entries"],
      "anon": (num(r.get("anon_kb")) or 0) * 1024.0, "file": (num(r.get("file_kb")) or 0) * 1024.0,
      "refresh_ms": statistics.median(ms) if ms else None, "refresh_all": ms,
      "pg_ms": median_of(r.get("pg_ms")),
      "stream": stream, "short": short or {},
    })
  return out


def cores_busy(stream, cores):
  """What kept the cores busy while the probe's refresh ran (its cpu_during_s), as a clause: a GET
  that waited for a core shows how much work they had."""
  cpu = stream.get("cpu_during_s") or {}
  wall = (stream.get("refresh_wall_ms") or 0) / 1000.0
  if not wall or not all(k in cpu for k in ("probe", "postgres", "service")):
    return ""
  total = cpu["probe"] + cpu["postgres"] + cpu["service"]
  return ("; in the refresh's %.2f s the probe used %.2f s of CPU, PostgreSQL %.2f s and the "
          "service %.2f s: %.1f cores' worth of work on %s cores"
          % (wall, cpu["probe"], cpu["postgres"], cpu["service"], total / wall, cores))


def growth_section(d, meta):
  g = read_growth(d)
  md = ["## Cost growth: full refresh, memory, GETs during a refresh", ""]
  if not g:
    md.append("Not measured.")
    return "\n".join(md), [], g
  md.append("The cache's PostgreSQL grows to each size (scripts/seed.py --count N --first 1000 "
            "--config-bytes %s --no-extras; rows that exist are kept); for each size a **fresh "
            "service** starts with default settings, gets `POST /cache/refresh` 3 times (the "
            "median of the answers' `duration_ms` is shown, all three in brackets), then VmRSS "
            "(and the peak, VmHWM) is read from /proc/PID/status. *Raw JSON* is "
            "`sum(length(integrations_config::text))` over the served enterprises. Then "
            "bench/probe.py sends `GET /integrations/{n}` in a loop on one keep-alive connection "
            "(rotating over all N) while one more refresh runs on a second connection; *GETs "
            "during refresh* are those that overlapped it (Python client; a GET costs ~0.1 ms). "
            "The probe runs twice: as any process, and then asking the kernel for a short time "
            "slice (`--slice-us`; Linux 6.12 and later), so that it runs as soon as it wakes "
            "instead of waiting for the next scheduler tick behind PostgreSQL's refresh backend "
            "and the service's refresh thread (at nice 10), which hold both cores: what the "
            "second run still shows over 5 ms is time the service's side took (its HTTP "
            "thread's own wait for a core included), not the client's wait "
            "(docs/PERFORMANCE-NOTES.md, sections 14 and 15). Where a GET took longer, the "
            "verdict also gives the CPU that the probe, PostgreSQL and the service used during "
            "the refresh (from /proc, read by the probe as the refresh was sent and answered). "
            "*PostgreSQL alone* is the median of 3 `EXPLAIN (ANALYZE, TIMING OFF)` runs of the "
            "refresh's own statement (from src/db/queries.h, jit off as in the service's "
            "sessions): the time one backend needs to produce the rows (jsonb to text, "
            "decompression) without sending them, a floor under the refresh time."
            % meta.get("config_bytes"))
  md.append("")
  rows, verdicts = [], []
  for x in g:
    st = x["stream"]
    during = st.get("during") or {}
    sh = x["short"]
    sh_during = sh.get("during") or {}
    sh_ms = granted_slice_ms(sh)
    rf = st.get("refresh") or {}
    ratio = x["rss"] / x["raw"] if x["raw"] else None
    anon_ratio = x["anon"] / x["raw"] if x["raw"] and x["anon"] else None
    rows.append([
      "{:,}".format(x["n"]),
      "%s (%s)" % (fmt_ms(x["refresh_ms"]), ", ".join("%.0f" % v for v in x["refresh_all"])),
      fmt_ms(x["pg_ms"]),
      "%.1f MB" % (x["rss"] / 1e6), "%.1f MB" % (x["anon"] / 1e6), "%.1f MB" % (x["file"] / 1e6),
      "%.1f MB" % (x["hwm"] / 1e6), "%.1f MB" % (x["raw"] / 1e6),
      "%.2f" % ratio if ratio else "-", "%.2f" % anon_ratio if anon_ratio else "-",
      stream_cell(during),
      "%s (slice %g ms)" % (stream_cell(sh_during), sh_ms) if sh_ms else
      "not measured (the kernel gave the probe no slice of %g ms)" % (sh.get("slice_us", 0) / 1000.0)
      if sh else "-",
      "%s ms" % rf.get("duration_ms", "-") if "duration_ms" in rf else rf.get("error", "-"),
      st.get("non200", "-"),
    ])
    if x["n"] in REFRESH_MS and x["refresh_ms"] is not None:
      t = REFRESH_MS[x["n"]]
      ok = x["refresh_ms"] < t
      verdicts.append("- full refresh of {:,} < {:.0f} ms: {} (median {}{}){}".format(
        x["n"], t, met(ok), fmt_ms(x["refresh_ms"]),
        "" if ok else ", %.2f× the target" % (x["refresh_ms"] / t),
        "" if x["pg_ms"] is None else "; PostgreSQL alone needs %s of it to produce the rows"
        % fmt_ms(x["pg_ms"])))
    if during.get("max_ms") is not None:
      ok = during["max_ms"] <= REFRESH_GET_MS and not st.get("non200")
      verdicts.append("- {:,}: no GET slower than 5 ms during the refresh: {} (max {}, p99 {}, "
                      "{} of {} GETs over 5 ms{}){}".format(
                        x["n"], met(ok), fmt_ms(during["max_ms"]), fmt_ms(during["p99_ms"]),
                        during.get("over_5ms", "-"), during["count"],
                        "" if ok or not sh_ms or sh_during.get("max_ms") is None else
                        "; with the probe on a {:g} ms slice, {} of {}, max {}".format(
                          sh_ms, sh_during.get("over_5ms", "-"), sh_during["count"],
                          fmt_ms(sh_during["max_ms"])),
                        "" if ok else cores_busy(st, meta.get("nproc", "?"))))
    if ratio:
      ok = ratio <= RSS_RATIO
      verdicts.append("- {:,}: RSS ≤ 2.5× raw JSON: {} ({:.2f}×{})".format(
        x["n"], met(ok), ratio,
        "" if ok or not anon_ratio else "; of the %.1f MB, %.1f MB are pages of the shared "
        "libraries (RssFile); the process's own memory, RssAnon, is %.2f× the raw JSON"
        % (x["rss"] / 1e6, x["file"] / 1e6, anon_ratio)))
  md.append(table(["enterprises", "refresh median (3 runs, ms)", "PostgreSQL alone", "VmRSS", "RssAnon", "RssFile",
                   "VmHWM (peak)", "raw JSON", "RSS / raw", "RssAnon / raw",
                   "GETs during refresh: p99 / max", "same, probe on a short slice",
                   "refresh (stream run)", "non-200"], rows))
  md.append("")
  md.append("Targets: full refresh of 10,000 / 100,000 enterprises < 150 ms / < 1.5 s, no request "
            "slower than 5 ms meanwhile, RSS ≤ 2.5× the raw JSON size:")
  md.append("")
  md.extend(verdicts)
  return "\n".join(md), verdicts, g


def gnuplot(script, d):
  """Runs gnuplot on SCRIPT; returns None on success or the reason it failed."""
  import shutil
  import subprocess
  if not shutil.which("gnuplot"):
    return "gnuplot not installed"
  try:
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, timeout=60,
                       cwd=d)
  except (OSError, subprocess.SubprocessError) as e:
    return str(e)
  return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["failed"])[-1]


def charts(d, outdir, cells, growth):
  """PNG charts next to the report; returns [(title, file name or None, note)]."""
  made = []
  term = "set terminal pngcairo size 900,540 noenhanced font 'sans,10'\n"
  # 1. requests/s vs connections (not pipelined), ours and nginx, both endpoints
  loads = sorted({k[2] for k in cells if "x" not in k[2]}, key=lambda c: int(c))
  lines = []
  series = []
  for endpoint in ("integrations", "config"):
    for server, label in SERVERS:
      pts = [(c, cells.get((endpoint, server, c))) for c in loads]
      pts = [(c, x["rps"]) for c, x in pts if x and "error" not in x]
      if not pts:
        continue
      fn = os.path.join(d, "chart-thr-%s-%s.dat" % (endpoint, server))
      with open(fn, "w") as f:
        for c, v in pts:
          f.write("%s %f\n" % (c, v))
      series.append("'%s' using 1:2 with linespoints lw 2 title '%s /%s'" % (fn, label, endpoint))
  if series:
    out = os.path.join(outdir, "perf-throughput.png")
    err = gnuplot(term + "set output '%s'\nset title 'Cache-hit GET: requests/s vs connections "
                  "(median of rounds)'\nset xlabel 'connections'\nset ylabel 'requests/s'\n"
                  "set logscale x\nset yrange [0:*]\nset key bottom right\nset grid\n"
                  "plot %s\n" % (out, ", ".join(series)), d)
    made.append(("Throughput vs connections", None if err else "perf-throughput.png", err))
  # 2. lag CDF
  series = []
  for name, label in (("idle", "idle"), ("load", "under load")):
    lag = read_json(os.path.join(d, "lag-%s.json" % name))
    if not lag or not lag.get("trace"):
      continue
    delays = sorted(x[2] for x in lag["trace"] if x[2] is not None)
    if not delays:
      continue
    fn = os.path.join(d, "chart-lag-%s.dat" % name)
    with open(fn, "w") as f:
      for i, v in enumerate(delays):
        f.write("%f %f\n" % (max(v, 0.001), (i + 1) / float(len(delays))))
    series.append("'%s' using 1:2 with steps lw 2 title '%s (%d samples)'"
                  % (fn, label, len(delays)))
  if series:
    out = os.path.join(outdir, "perf-lag.png")
    err = gnuplot(term + "set output '%s'\nset title 'Update-to-served delay: CDF'\n"
                  "set xlabel 'delay (ms, log scale)'\nset ylabel 'fraction of samples'\n"
                  "set logscale x\nset yrange [0:1.02]\nset key bottom right\nset grid\n"
                  "set arrow from 5, graph 0 to 5, graph 1 nohead dt 2\n"
                  "plot %s\n" % (out, ", ".join(series)), d)
    made.append(("Update-to-served delay (CDF; dashed: the 5 ms p99 target)",
                 None if err else "perf-lag.png", err))
  # 3. refresh time vs size
  pts = [(x["n"], x["refresh_ms"]) for x in growth if x["refresh_ms"] is not None]
  if pts:
    fn = os.path.join(d, "chart-refresh.dat")
    with open(fn, "w") as f:
      for n, ms in pts:
        f.write("%d %f %f\n" % (n, ms, {10000: 150.0, 100000: 1500.0}.get(n, n * 0.015)))
    out = os.path.join(outdir, "perf-refresh.png")
    err = gnuplot(term + "set output '%s'\nset title 'Full refresh (POST /cache/refresh, median "
                  "of 3) vs enterprises'\nset xlabel 'enterprises'\nset ylabel 'ms'\n"
                  "set logscale xy\nset key top left\nset grid\n"
                  "plot '%s' using 1:2 with linespoints lw 2 title 'integration_cache', "
                  "'%s' using 1:3 with lines dt 2 title 'target (15 us per enterprise)'\n"
                  % (out, fn, fn), d)
    made.append(("Full refresh time vs enterprises", None if err else "perf-refresh.png", err))
  return made


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--dir", required=True)
  ap.add_argument("--out", required=True)
  args = ap.parse_args()
  d = args.dir

  meta = read_meta(d)
  clk_tck = float(meta.get("clk_tck", 100))
  with open(os.path.join(d, "results.tsv"), encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  loads = sorted({r["conns"] for r in rows}, key=load_key)
  cells = summarise(rows, clk_tck)
  load_wrk = read_text(os.path.join(d, "lag-load.wrk"))

  thr = throughput_table(cells, loads, "integrations")
  thr_config = throughput_table(cells, loads, "config")
  shortfalls = target_shortfalls(cells, loads)
  miss_md, _ = miss_section(d, meta)
  growth_md, _, growth = growth_section(d, meta)
  outdir = os.path.dirname(os.path.abspath(args.out))
  made = charts(d, outdir, cells, growth)
  lag = lag_table(d, load_wrk)
  dispatch_rows = read_tsv(os.path.join(d, "dispatch.tsv"))
  DRAIN_DEADLINES["final"] = meta.get("drain_deadline")
  for conns in {r["conns"] for r in dispatch_rows}:
    DRAIN_DEADLINES["before-c" + conns] = meta.get("drain_between", "10")
  dcells = summarise_dispatch(dispatch_rows, clk_tck)
  print()
  print("Integration Cache Service vs nginx -- %s, %s cores (%s), median of %s rounds of %s s"
        % (meta.get("date"), meta.get("nproc"), meta.get("cpu"), meta.get("rounds"),
           meta.get("duration")))
  print()
  print(thr)
  print()
  print(thr_config)
  print()
  for line in shortfalls:
    print(line.replace("**", ""))
  print()
  print(lag)
  for line in lag_targets(d):
    print(line.replace("**", ""))
  print()
  print(miss_md.replace("**", ""))
  print()
  print(growth_md.replace("**", ""))
  print()
  if dcells:
    print("Dispatch intake (POST /dispatch/call-event, PostgreSQL fsync=on, stand-ins answering "
          "at once), median of %s rounds of %s s; load average %s"
          % (meta.get("rounds"), meta.get("dispatch_duration"), meta.get("dispatch_loadavg")))
    print()
    print(dispatch_table(dcells))
    print()
    for line in aim_lines(dcells):
      print(line.replace("**", ""))
    text, _ = drain_summary(d, "final")
    stats = read_json(os.path.join(d, "dispatch-stats.json")) or {}
    print("- outbox after the last round: %s" % (text or "not checked").replace("**", ""))
    print("- /stats at the end: dispatch_delivered %s, dispatch_spooled %s, dispatch_retried %s, "
          "dispatch_abandoned %s" % (stats.get("dispatch_delivered", "-"),
                                     stats.get("dispatch_spooled", "-"),
                                     stats.get("dispatch_retried", "-"),
                                     stats.get("dispatch_abandoned", "-")))
    print()

  commands = read_text(os.path.join(d, "commands.txt"))
  md = []
  md.append("# Performance")
  md.append("")
  md.append("Written by `make bench` (`bench/run.sh %s`); do not edit by hand, run it again."
            % meta.get("binary"))
  md.append("")
  md.append("## Machine and software")
  md.append("")
  md.append("- date: %s (load average before the run: %s)" % (meta.get("date"),
                                                             meta.get("loadavg")))
  md.append("- cores (`nproc`): %s; CPU: %s; kernel %s" % (meta.get("nproc"), meta.get("cpu"),
                                                          meta.get("kernel")))
  md.append("- service: commit %s, `%s` (Release), %s HTTP threads (IC_THREADS %s), "
            "libmicrohttpd %s" % (meta.get("commit"), meta.get("binary"),
                                  meta.get("service_threads"), meta.get("ic_threads"),
                                  meta.get("libmicrohttpd")))
  md.append("- reference: %s, %s workers; load generator: %s; PostgreSQL %s (fsync off for "
            "the cache measurements; a second cluster with fsync on for the dispatch intake)"
            % (meta.get("nginx"), meta.get("nginx_workers"), meta.get("wrk"),
               meta.get("postgres")))
  md.append("- data: %s enterprises, integrations_config ≈ %s bytes each (scripts/seed.py)"
            % (meta.get("enterprises"), meta.get("config_bytes")))
  md.append("")
  md.append("**wrk runs on the same %s cores as the server it measures**, so absolute requests/s "
            "are bounded by the client as much as by the server (at 50 connections wrk keeps "
            "about one core busy). Compare the two servers through the ratios and the server CPU "
            "per request, which were measured in the same run, alternating the servers; the "
            "absolute numbers say little about a production machine." % meta.get("nproc"))
  md.append("")
  md.append("## Throughput: `GET /integrations/{n}`")
  md.append("")
  md.append("Each cell is the median of %s rounds of %s s (after a %s s warm-up per server and "
            "load). Requests rotate over the %s enterprises; nginx answers every "
            "`/integrations/` path with `return 200` and a copy of a real body of the service "
            "(%s bytes: `%s`), so it does the same HTTP work and no application work; it runs one "
            "worker per core with `reuseport`, so that its workers share the connections as the "
            "service's threads do. Requests/s shows the median and, in brackets, the range over "
            "the rounds. "
            "*CPU s / 1k req* is the server's own user+system CPU (`/proc/PID/stat`; nginx: "
            "master and workers) per 1000 requests; *ours / nginx* > 1 means more CPU than nginx."
            % (meta.get("rounds"), meta.get("duration"), meta.get("warmup"),
               meta.get("enterprises"), meta.get("body_bytes"), meta.get("body")))
  md.append("")
  md.append("Targets (issue 4), per endpoint and load: requests/s ≥ 1.0× nginx's, requests per "
            "server-CPU-second ≥ 1.0× nginx's (i.e. *CPU ours / nginx* ≤ 1.0), p99 ≤ 1.2× "
            "nginx's. The pipelined rows send 10 requests per write on each connection "
            "(bench/integrations.lua, DEPTH 10); wrk then measures latency per batch of 10, for "
            "both servers alike.")
  md.append("")
  md.append(thr)
  md.append("")
  md.append("## Throughput: `GET /config/{n}/{type}`")
  md.append("")
  md.append("The same loads on `GET /config/{n}/{type}` (type: retailcrm when the enterprise has "
            "it, else uon: the integration seed.py pads, so every answer is about %s bytes); nginx "
            "answers every `/config/` path with a copy of the service's answer for `%s` (%s "
            "bytes)." % (meta.get("config_bytes"), meta.get("config_path"),
                         meta.get("config_body_bytes")))
  md.append("")
  md.append(thr_config)
  md.append("")
  if shortfalls:
    md.append("Cache-hit targets not met, and by how much:")
    md.append("")
    md.extend(shortfalls)
  else:
    md.append("Every cache-hit target was met.")
  md.append("")
  md.append("What bounds these numbers: wrk shares the %s cores with the server, so at 50 and "
            "200 connections the machine, not either server, is saturated (see *wrk CPU s* and "
            "*other CPU s* under *Every run*); requests/s then mostly reflects how the CPU is "
            "split between client, server and kernel, and *CPU ours / nginx* is the more "
            "telling ratio. p99 at 50–200 connections on 2 cores is dominated by scheduling "
            "(a connection's thread waiting for a core), which makes it noisy from round to "
            "round. Where each server's CPU went is under *Profiles behind the targets not "
            "met* below." % meta.get("nproc"))
  ctx = ctx_summary(rows)
  if "ours" in ctx and "nginx" in ctx:
    md.append("")
    md.append("How the server threads gave up the CPU at 50 and 200 connections (medians over "
              "the runs, per 1000 requests; *Every run* has each): the service's threads slept "
              "%.1f and were preempted %.1f times, nginx's workers slept %.1f and were preempted "
              "%.1f times. A libmicrohttpd thread finds its next batch of ready connections "
              "waiting almost every time it polls, so it runs until the scheduler preempts it "
              "and then waits for a core while all its connections wait with it: those waits "
              "are the long tail of the service's latency (see docs/PERFORMANCE-NOTES.md for the "
              "scheduler trace and the experiments)." % (ctx["ours"][0], ctx["ours"][1],
                                                         ctx["nginx"][0], ctx["nginx"][1]))
  md.append("")
  for title, fn, err in made:
    if fn == "perf-throughput.png":
      md.append("![%s](%s)" % (title, fn))
      md.append("")
  md.append("## Update-to-served delay")
  md.append("")
  md.append("One sample: `UPDATE enterprises SET integrations_config = jsonb_set(..., "
            "'{retailcrm,enabled}', <flipped>)` and COMMIT (psycopg2); t0 = when the commit "
            "returned; then `GET /integrations/{n}` on one keep-alive connection, 0.1 ms apart, "
            "until the body shows the new value; t1 = then. It covers the trigger's NOTIFY, the "
            "service's LISTEN connection, its reload query and the publication of the entry. A "
            "poll costs one round trip plus the pause, so the delay is known to within one poll. "
            "(Polls back to back made the probe and the HTTP thread answering it wake each other "
            "on one core so often that the scheduler left PostgreSQL's backends waiting there "
            "for up to 3 s: the probe measured its own starving of the database; "
            "docs/PERFORMANCE-NOTES.md, section 5.)")
  md.append("")
  md.append(lag)
  md.append("")
  outliers = lag_outliers(d)
  if outliers:
    md.append("Slow samples, lined up with the service log (timestamps to the millisecond; "
              "the service logs `notification: enterprise N` when its LISTEN connection hands "
              "it the NOTIFY). A notification logged late while every poll stayed fast means the "
              "time went before the service had the NOTIFY (PostgreSQL, or the scheduler on a "
              "busy machine), not to its HTTP side; time after the notification is the reload "
              "query and the publication.")
    md.append("")
    md.append(outliers)
    md.append("")
  md.append("Targets (UPDATE commit → GET serves the new value: p50 < 2 ms, p99 < 5 ms, %s "
            "samples):" % meta.get("lag_samples"))
  md.append("")
  md.extend(lag_targets(d))
  md.append("")
  for title, fn, err in made:
    if fn == "perf-lag.png":
      md.append("![%s](%s)" % (title, fn))
      md.append("")
  md.append(miss_md)
  md.append("")
  md.append(growth_md)
  md.append("")
  for title, fn, err in made:
    if fn == "perf-refresh.png":
      md.append("![%s](%s)" % (title, fn))
      md.append("")
  failed = [(t, e) for t, fn, e in made if fn is None]
  if failed:
    md.append("Charts not drawn: " + "; ".join("%s (%s)" % (t, e) for t, e in failed))
    md.append("")
  if dcells:
    md.append(dispatch_section(d, meta, dispatch_rows, dcells, clk_tck))
    md.append("")
  profiles = profile_section(d, meta, clk_tck)
  if profiles:
    md.append(profiles)
  md.append("## Service health during the run")
  md.append("")
  md.append(service_health(d))
  md.append("")
  md.append("## Every run")
  md.append("")
  md.append("`split` is the CPU seconds of each nginx process / service thread that worked "
            "during the run; `cache hits`/`misses` are the service's /stats deltas over the run "
            "(the cache is refreshed right before each run, so every request should be a hit); "
            "`wrk CPU s` shows how much of the machine the client took; `other CPU s` is the busy "
            "time of all cores (/proc/stat) minus server and wrk: kernel work charged to neither "
            "(softirqs) plus anything else that ran on the machine meanwhile -- when it is large, "
            "requests/s of that round are depressed, while CPU s / 1k req stays comparable.")
  md.append("")
  md.append(detail_table(rows, clk_tck))
  md.append("")
  md.append("## Commands")
  md.append("")
  md.append("Set-up (all in a temporary directory, stopped by pid at the end):")
  md.append("")
  md.append("```")
  md.append("PGCLUSTER_FSYNC=off scripts/pgcluster.sh start TMP/pg")
  md.append("python3 scripts/seed.py --count 1000 --first 1000 --config-bytes %s --no-extras "
            "| psql ..." % meta.get("config_bytes"))
  md.append("DATABASE_URL=... %s migrate" % meta.get("binary"))
  md.append("DATABASE_URL=... %s serve --listen 127.0.0.1:OURS_PORT" % meta.get("binary"))
  md.append("nginx -p TMP/nginx/ -c TMP/nginx/nginx.conf -e TMP/nginx/error.log "
            "-g 'daemon off;'    # from bench/nginx.conf.in")
  md.append("```")
  md.append("")
  md.append("Measurements (`--latency` for the percentiles; the script's `done()` prints them "
            "with the count of non-200 answers):")
  md.append("")
  md.append("```")
  md.append(commands)
  probe = "bench/lag_probe.py --db ... --url http://127.0.0.1:OURS_PORT --samples %s" % (
    meta.get("lag_samples"))
  md.append(probe)
  md.append("%s &  %s  # the same probe under load" % (meta.get("lag_load_cmd"), probe))
  md.append("python3 bench/probe.py miss --url http://127.0.0.1:OURS_PORT --paths "
            "TMP/paths-integrations.txt --samples %s" % meta.get("miss_samples"))
  md.append("# cost growth, for N in 1000 10000 100000:")
  md.append("python3 scripts/seed.py --count N --first 1000 --config-bytes %s --no-extras | psql ..."
            % meta.get("config_bytes"))
  md.append("DATABASE_URL=... %s serve --listen 127.0.0.1:PORT    # a fresh service per size"
            % meta.get("binary"))
  md.append("curl -X POST http://127.0.0.1:PORT/cache/refresh    # 3 times; then VmRSS from "
            "/proc/PID/status")
  md.append("python3 bench/probe.py refresh-stream --url http://127.0.0.1:PORT --paths "
            "TMP/paths-growth-N.txt    # then again with --slice-us 100")
  md.append("```")
  md.append("")
  dcommands = read_text(os.path.join(d, "dispatch-commands.txt"))
  if dcommands:
    md.append("Dispatch intake (TAG: a number new for every run; the last argument is how many "
              "calls a hangup trails its dial by, per wrk thread):")
    md.append("")
    md.append("```")
    md.append("scripts/pgcluster.sh stop TMP/pg; sync    # the cache's cluster is done")
    md.append("PGCLUSTER_FSYNC=on scripts/pgcluster.sh start TMP/pgd    # then "
              "shared_preload_libraries=pg_stat_statements, track_wal_io_timing=on, restart")
    md.append("psql ... -c \"ALTER SYSTEM SET max_wal_size = '8GB'\" "
              "-c \"ALTER SYSTEM SET min_wal_size = '3GB'\" -c \"SELECT pg_reload_conf()\"")
    md.append("psql ... -c \"CREATE TABLE bench_wal_fill AS SELECT repeat('x', 900) AS x FROM "
              "generate_series(1, 2000000)\" -c \"DROP TABLE bench_wal_fill\" -c CHECKPOINT    "
              "# WAL segment files to reuse")
    md.append("python3 scripts/seed.py --count 1000 --first 1000 --config-bytes %s --no-extras "
              "| psql ...    # the same data" % meta.get("config_bytes"))
    md.append("DATABASE_URL=... %s migrate" % meta.get("binary"))
    md.append("DATABASE_URL=... %s serve --listen 127.0.0.1:DISPATCH_PORT --retailcrm-url "
              "http://127.0.0.1:RC_PORT --uon-url http://127.0.0.1:UON_PORT --ms-url "
              "http://127.0.0.1:MS_PORT --spool-dir TMP/spool" % meta.get("binary"))
    md.append(dcommands)
    md.append("```")
    md.append("")
  with open(args.out, "w", encoding="utf-8") as f:
    f.write("\n".join(md))


if __name__ == "__main__":
  main()
