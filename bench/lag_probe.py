#!/usr/bin/env python3
"""Update-to-served delay of the Integration Cache Service (bench/run.sh, step 3).

One sample: flip `integrations_config -> <integration> -> enabled` of one enterprise in
PostgreSQL and COMMIT; t0 is when the commit returned. Then GET /integrations/<n> over one
keep-alive connection, pausing --poll-pause (0.1 ms) between polls, until the body shows the new
value; t1 is when it did. The delay t1 - t0 covers the trigger's NOTIFY, the service's LISTEN connection, its reload
query and the publication of the new entry. Samples run back to back; each one flips the value
the previous one set, so every sample is a real change that fires the trigger.

Prints one JSON object on stdout: samples, p50/p99/max/mean in ms, polls per sample, timeouts,
non-200 answers, and `trace`: every sample in order as [Unix time before the UPDATE, Unix time of
t0, delay ms or null, polls, longest poll ms] (to line up an outlier with the service log). A sample that does not see its value within --deadline seconds counts as a
timeout (and is left out of the percentiles, which are then reported as incomplete by run.sh).

Needs psycopg2 (Debian: python3-psycopg2) and the standard library.
  lag_probe.py --db CONNSTRING --url http://127.0.0.1:PORT [--enterprise N] [--integration T]
               [--samples 100] [--deadline 5]
"""

import argparse
import http.client
import json
import math
import sys
import time
import urllib.parse

import psycopg2

FLIP_SQL = """
UPDATE enterprises
   SET integrations_config = jsonb_set(integrations_config, %s, %s::jsonb)
 WHERE number = %s"""

# An enterprise that is served and has the integration (so its flag shows in /integrations).
PICK_SQL = """
SELECT number FROM enterprises
 WHERE active AND integrations_config IS NOT NULL
   AND jsonb_typeof(integrations_config -> %s) = 'object'
 ORDER BY number LIMIT 1"""


def percentile(sorted_values, p):
  """Nearest-rank percentile of an ascending list (p in 0..100)."""
  if not sorted_values:
    return None
  rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
  return sorted_values[rank - 1]


class Poller:
  """GET /integrations/<n> on one keep-alive connection; reconnects if the server closes it."""

  def __init__(self, url, number):
    u = urllib.parse.urlsplit(url)
    self.host, self.port = u.hostname, u.port
    self.path = "/integrations/" + urllib.parse.quote(number)
    self.conn = None
    self.non200 = 0

  def enabled(self, integration):
    """The served `enabled` flag of the integration, or None (non-200 or absent)."""
    for attempt in (1, 2):
      if self.conn is None:
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
      try:
        self.conn.request("GET", self.path)
        resp = self.conn.getresponse()
        body = resp.read()
      except (http.client.HTTPException, OSError):
        self.conn.close()
        self.conn = None
        if attempt == 2:
          raise
        continue
      if resp.status != 200:
        self.non200 += 1
        return None
      return json.loads(body)["integrations"].get(integration)
    return None


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--db", required=True, help="libpq connection string")
  ap.add_argument("--url", required=True, help="base URL of the service, http://HOST:PORT")
  ap.add_argument("--enterprise", help="enterprise number (default: first that has --integration)")
  ap.add_argument("--integration", default="retailcrm", help="whose enabled flag to flip")
  ap.add_argument("--samples", type=int, default=100)
  ap.add_argument("--deadline", type=float, default=5.0, help="seconds one sample may take")
  ap.add_argument("--poll-pause", type=float, default=0.0001,
                  help="seconds between two polls of one sample (default 0.1 ms)")
  args = ap.parse_args()

  db = psycopg2.connect(args.db)
  db.autocommit = False
  cur = db.cursor()
  number = args.enterprise
  if number is None:
    cur.execute(PICK_SQL, (args.integration,))
    row = cur.fetchone()
    db.commit()
    if row is None:
      sys.exit("lag_probe: no served enterprise has a %r integration" % args.integration)
    number = row[0]

  poller = Poller(args.url, number)
  current = poller.enabled(args.integration)  # also opens the keep-alive connection
  if current is None:
    sys.exit("lag_probe: GET %s does not show %r" % (poller.path, args.integration))

  delays, polls, timeouts = [], [], 0
  # per sample, in order: [Unix time before the UPDATE, Unix time of t0, delay ms (None: timed
  # out), polls, longest poll ms] -- to line a slow sample up with the service log
  trace = []
  path = "{%s,enabled}" % args.integration
  for _ in range(args.samples):
    want = not current
    wall_pre = time.time()
    cur.execute(FLIP_SQL, (path, "true" if want else "false", number))
    if cur.rowcount != 1:
      sys.exit("lag_probe: UPDATE of enterprise %s touched %d rows" % (number, cur.rowcount))
    db.commit()
    t0 = time.perf_counter()
    wall0 = time.time()
    n, longest, t1 = 0, 0.0, t0
    while True:
      n += 1
      before = t1
      seen = poller.enabled(args.integration)
      t1 = time.perf_counter()
      longest = max(longest, t1 - before)
      if seen == want:
        delays.append((t1 - t0) * 1000.0)
        polls.append(n)
        break
      if t1 - t0 > args.deadline:
        timeouts += 1
        break
      # A pause between polls: polling back to back, the probe and the HTTP thread answering it
      # woke each other tens of thousands of times a second on one core, and the scheduler left
      # the PostgreSQL backends queued on that core waiting -- for up to 3 s (perf sched) -- so
      # the probe was measuring its own starving of the database. The pause costs the
      # measurement at most its own length.
      time.sleep(args.poll_pause)
    trace.append([round(wall_pre, 6), round(wall0, 6),
                  round((t1 - t0) * 1000.0, 3) if seen == want else None, n,
                  round(longest * 1000.0, 3)])
    current = want  # the database holds `want` now, timed out or not

  delays.sort()
  out = {
    "enterprise": number,
    "integration": args.integration,
    "samples": args.samples,
    "completed": len(delays),
    "timeouts": timeouts,
    "non200": poller.non200,
    "p50_ms": percentile(delays, 50),
    "p99_ms": percentile(delays, 99),
    "max_ms": delays[-1] if delays else None,
    "mean_ms": sum(delays) / len(delays) if delays else None,
    "polls_p50": percentile(sorted(polls), 50),
    "polls_max": max(polls) if polls else None,
    "trace": trace,
  }
  json.dump(out, sys.stdout)
  sys.stdout.write("\n")
  db.close()


if __name__ == "__main__":
  main()
