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
    groups[(r["server"], r["conns"])].append(r)
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


def table(header, rows):
  """A Markdown table; it reads well as plain text too."""
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
  out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
  out += [line(r) for r in rows]
  return "\n".join(out)


def throughput_table(cells, loads):
  header = ["load", "server", "requests/s", "ours / nginx", "p50", "p99", "CPU s / 1k req",
            "CPU ours / nginx"]
  rows = []
  for conns in loads:
    ours, ref = cells.get(("ours", conns)), cells.get(("nginx", conns))
    both = ours and ref and "error" not in ours and "error" not in ref
    for server, label in SERVERS:
      c = cells.get((server, conns))
      load = ("%s conn%s (wrk -t%s -c%s)" % (conns, "" if conns == "1" else "s",
                                             c.get("threads", "?") if c else "?", conns)
              if server == "ours" else "")
      if c is None:
        rows.append([load, label, "not run", "", "", "", "", ""])
      elif "error" in c:
        rows.append([load, label, "ERROR: " + c["error"], "", "", "", "", ""])
      else:
        ratio = cpu_ratio = ""
        if server == "ours" and both:
          ratio = "%.2f" % (ours["rps"] / ref["rps"])
          cpu_ratio = "%.2f" % (ours["cpu"] / ref["cpu"]) if ours["cpu"] and ref["cpu"] else "-"
        rps = "{:,.0f}".format(c["rps"])
        if c["rounds"] > 1:
          rps += " ({:,.0f}–{:,.0f})".format(c["rps_min"], c["rps_max"])
        rows.append([load, label, rps, ratio, fmt_us(c["p50"]),
                     fmt_us(c["p99"]), "%.4f" % c["cpu"] if c["cpu"] is not None else "-",
                     cpu_ratio])
  return table(header, rows)


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
  header = ["server", "conns", "round", "status", "requests/s", "requests", "p50", "p99", "max",
            "server CPU s", "split (per process/thread)", "CPU s / 1k req", "wrk CPU s",
            "other CPU s", "cache hits", "cache misses"]
  out = []
  for r in rows:
    cpu = cpu_per_1k(r, clk_tck)
    ticks = num(r["cpu_ticks"])
    busy, wrk = num(r["machine_ticks"]), num(r["wrk_cpu_s"])
    other = "-"
    if busy is not None and ticks is not None and wrk is not None:
      other = "%.2f" % max(0.0, busy / clk_tck - ticks / clk_tck - wrk)
    out.append([r["server"], r["conns"], r["round"], r["status"], r["rps"], r["requests"],
                fmt_us(num(r["p50_us"])), fmt_us(num(r["p99_us"])), fmt_us(num(r["max_us"])),
                "%.2f" % (ticks / clk_tck) if ticks is not None else "-", r["cpu_split"],
                "%.4f" % cpu if cpu is not None else "-", r["wrk_cpu_s"],
                other, r["hits"], r["misses"]])
  return table(header, out)


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


def read_tsv(path, header=True):
  try:
    with open(path, encoding="utf-8") as f:
      if header:
        return list(csv.DictReader(f, delimiter="\t"))
      return [line.rstrip("\n").split("\t") for line in f if line.strip()]
  except OSError:
    return []


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
      rows += " (3 × %s events%s)" % (fmt_int(c["accepted"]),
                                      "" if c["rows"] == 3 * c["accepted"] else ": MISMATCH")
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
            "pending after", "claims running", "spooled"]
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
                r["pending_after"], r["claims_running"], r["spooled"]])
  return table(header, out)


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
  md.append("### Delivery: does the outbox drain?")
  md.append("")
  for name in sorted(n[len("drain-"):-len(".tsv")] for n in os.listdir(d)
                     if n.startswith("drain-") and n.endswith(".tsv")):
    text, _ = drain_summary(d, name)
    if text is None:
      continue
    label = ("after the last round (deadline %s s)" % meta.get("drain_deadline")
             if name == "final" else "before the %s-connection load (deadline 10 s)"
             % name.replace("before-c", ""))
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
  loads = sorted({r["conns"] for r in rows}, key=int)
  cells = summarise(rows, clk_tck)
  load_wrk = read_text(os.path.join(d, "lag-load.wrk"))

  thr = throughput_table(cells, loads)
  lag = lag_table(d, load_wrk)
  dispatch_rows = read_tsv(os.path.join(d, "dispatch.tsv"))
  DRAIN_DEADLINES["final"] = meta.get("drain_deadline")
  for conns in {r["conns"] for r in dispatch_rows}:
    DRAIN_DEADLINES["before-c" + conns] = "10"
  dcells = summarise_dispatch(dispatch_rows, clk_tck)
  print()
  print("Integration Cache Service vs nginx -- %s, %s cores (%s), median of %s rounds of %s s"
        % (meta.get("date"), meta.get("nproc"), meta.get("cpu"), meta.get("rounds"),
           meta.get("duration")))
  print()
  print(thr)
  print()
  print(lag)
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
  md.append(thr)
  md.append("")
  md.append("## Update-to-served delay")
  md.append("")
  md.append("One sample: `UPDATE enterprises SET integrations_config = jsonb_set(..., "
            "'{retailcrm,enabled}', <flipped>)` and COMMIT (psycopg2); t0 = when the commit "
            "returned; then `GET /integrations/{n}` on one keep-alive connection in a tight loop "
            "until the body shows the new value; t1 = then. It covers the trigger's NOTIFY, the "
            "service's LISTEN connection, its reload query and the publication of the entry. A "
            "poll costs one round trip, so the delay is known to within one poll.")
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
  if dcells:
    md.append(dispatch_section(d, meta, dispatch_rows, dcells, clk_tck))
    md.append("")
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
  md.append("```")
  md.append("")
  dcommands = read_text(os.path.join(d, "dispatch-commands.txt"))
  if dcommands:
    md.append("Dispatch intake (TAG: a number new for every run; the last argument is how many "
              "calls a hangup trails its dial by, per wrk thread):")
    md.append("")
    md.append("```")
    md.append("PGCLUSTER_FSYNC=on scripts/pgcluster.sh start TMP/pgd    # then "
              "shared_preload_libraries=pg_stat_statements, track_wal_io_timing=on, restart")
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
