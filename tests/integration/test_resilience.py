"""Resilience and operations: PostgreSQL going away and coming back on the same port, the
listener's connection being killed, signals, bad settings, --help, and credentials kept out of
--help and the log (SPEC §5.2, §5.3, §8; docs/CONTRACT-dev.md).

Tests here stop and restart the class's cluster; setUp makes sure it runs again. Every service is
given a conninfo with a password, which must never show up in its output.
"""

import os
import re
import shutil
import signal
import socket
import tempfile
import time
import unittest

from harness import IntegrationTestCase, insert_sql, run_binary, wait_until

SECRET = "s3cr3t-test-only"
CONFIGS = {
  "0101": {"retailcrm": {"enabled": True}, "ms": {"enabled": False, "api_token": "test-t"}},
  "0102": {"uon": {"enabled": True}},
}
ROWS = "".join(insert_sql(n, c) for n, c in CONFIGS.items())
# backoff capped at 2 s so that "back within ~20 s" does not depend on the default 30 s cap
FAST_RECONNECT = ("--reconnect-min", "0.2", "--reconnect-max", "2")

# every setting of docs/CONTRACT-dev.md
SETTINGS_ENV = ["IC_LISTEN", "IC_THREADS", "IC_TTL", "IC_NEGATIVE_TTL", "IC_REFRESH_INTERVAL",
                "IC_REFRESH_JITTER", "IC_CLEANUP_INTERVAL", "IC_HEARTBEAT_INTERVAL",
                "IC_HEARTBEAT_TIMEOUT", "IC_RECONNECT_MIN", "IC_RECONNECT_MAX", "IC_DB_TIMEOUT",
                "IC_MAX_HEAD", "IC_MAX_BODY", "IC_IDLE_TIMEOUT", "IC_HEAD_TIMEOUT", "IC_LOG_FILE",
                "IC_LOG_LEVEL"]


def resume(pid):
  """SIGCONT for a backend frozen by a test (it may be gone already)."""
  try:
    os.kill(pid, signal.SIGCONT)
  except ProcessLookupError:
    pass


class ResilienceTest(IntegrationTestCase):

  def setUp(self):
    super().setUp()
    self.cluster.ensure_running()
    self.reset_enterprises(ROWS)

  def db(self):
    return self.cluster.conninfo(password=SECRET)

  def start(self, *args, **kw):
    return self.start_service(*FAST_RECONNECT, *args, db=self.db(), **kw)

  def assertNoSecret(self, svc):
    self.assertNotIn(SECRET, svc.log_text(), "the database password appears in the log")

  def health(self, svc):
    return svc.get("/health").body

  def wait_health(self, svc, predicate, timeout, message):
    """Polls /health until predicate(body) holds; returns that body."""
    def check():
      body = self.health(svc)
      return body if predicate(body) else None
    return wait_until(check, timeout, interval=0.2, message=message)

  def test_database_down_then_back(self):
    svc = self.start()
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    self.assertEqual(svc.get("/config/0101").status, 200)

    self.cluster.stop()
    # cached answers keep coming
    r = svc.get("/integrations/0101")
    self.assertEqual(r.status, 200, r.body)
    self.assertEqual(r.body["integrations"], {"retailcrm": True, "ms": False})
    self.assertEqual(svc.get("/config/0101/ms").status, 200)
    # a refresh fails, and the old cache stays
    r = svc.post("/cache/refresh", timeout=30)
    self.assertEqual(r.status, 503, r.body)
    self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
    self.assertTrue(r.body["detail"].startswith("refresh failed:"), r.body)
    self.assertEqual(svc.get("/integrations/0102").status, 200)
    # health shows it
    h = self.wait_health(svc, lambda b: b["database_connected"] is False and
                         "database disconnected" in b["alerts"], 15, "/health reports the database")
    self.assertEqual(h["status"], "degraded")
    # with nothing cached there is nothing to answer with
    r = svc.get("/integrations/0555", timeout=30)
    self.assertEqual((r.status, r.body), (503, {"detail": "database unavailable"}))
    r = svc.put("/config/0101/ms", {"enabled": True}, timeout=30)
    self.assertEqual((r.status, r.body), (503, {"detail": "database unavailable"}))
    self.assertGreaterEqual(svc.stats()["refresh_failures"], 1)

    self.cluster.start()  # same port
    self.cluster.psql("UPDATE enterprises SET integrations_config = "
                      "'{\"retailcrm\": {\"enabled\": false}}' WHERE number = '0101'")
    wait_until(lambda: svc.get("/integrations/0101").body["integrations"] ==
               {"retailcrm": False}, 20, interval=0.2,
               message="an UPDATE after the database came back is served")
    h = self.wait_health(svc, lambda b: b["database_connected"] is True, 20,
                         "/health sees the database again")
    self.assertNotIn("database disconnected", h["alerts"])
    wait_until(lambda: "listener reconnected" in svc.log_text(), 20, interval=0.2,
               message="log says the listener reconnected")
    self.assertGreaterEqual(svc.stats()["listener_reconnects"], 1)
    # and notifications work again
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0102'")
    wait_until(lambda: svc.get("/integrations/0102").status == 404, 1,
               message="notifications after the reconnect")
    self.assertEqual(svc.post("/cache/refresh").status, 200)
    svc.stop()
    self.assertNoSecret(svc)

  def test_log_lines_are_timestamped_through_an_outage(self):
    # docs/CONTRACT-dev.md: one line per event, `2026-11-28T15:40:01.123456 INFO  message`;
    # nothing may reach the log around that format (libpq's own notices included)
    svc = self.start()
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    self.cluster.stop()
    self.wait_health(svc, lambda b: b["database_connected"] is False, 15,
                     "/health reports the database")
    self.cluster.start()
    wait_until(lambda: "listener reconnected" in svc.log_text(), 20, interval=0.2,
               message="listener reconnected")
    svc.stop()
    line_re = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6} [A-Z]+ ")
    bad = [line for line in svc.log_text().splitlines()
           if line and not line.startswith("# ") and not line_re.match(line)]
    self.assertEqual(bad, [], "log lines without timestamp and level")
    self.assertNoSecret(svc)

  def test_stale_entries_served_while_database_down(self):
    svc = self.start("--ttl", "1")
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    self.cluster.stop()
    time.sleep(1.5)  # past the TTL
    for path in ("/integrations/0101", "/config/0101", "/config/0101/ms"):
      with self.subTest(path=path):
        r = svc.get(path, timeout=30)
        self.assertEqual(r.status, 200, r.body)
    self.cluster.start()
    svc.stop()
    self.assertNoSecret(svc)

  def test_ready_only_after_first_load(self):
    self.cluster.stop()
    svc = self.start(wait_ready=False)
    self.assertEqual(svc.wait_listening(), 503)
    self.assertIsNone(svc.stats()["last_full_refresh"])
    h = self.wait_health(svc, lambda b: "database disconnected" in b["alerts"], 5,
                         "/health reports the database")
    self.assertEqual(h["status"], "degraded")
    self.assertIs(h["database_connected"], False)
    self.assertIn("cache empty", h["alerts"])
    self.assertEqual(svc.get("/ready").status, 503)
    self.cluster.start()
    svc.wait_ready(20)
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    self.assertIsNotNone(svc.stats()["last_full_refresh"])
    svc.stop()
    self.assertNoSecret(svc)

  def test_listener_connection_killed(self):
    svc = self.start()
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    killed = self.cluster.psql(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    self.assertGreaterEqual(int(killed), 1, "the service holds no database connection")
    wait_until(lambda: "listener reconnected" in svc.log_text(), 20, interval=0.2,
               message="listener reconnected after its backend was terminated")
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0102'")
    wait_until(lambda: svc.get("/integrations/0102").status == 404, 2,
               message="notifications after the listener came back")
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    svc.stop()

  def test_refresh_while_bulk_reconnects_uses_the_query_connection(self):
    # the refresh worker's `bulk` connection is lost and waits a long backoff; a refresh asked for
    # meanwhile runs on the `query` connection instead of failing
    svc = self.start_service("--reconnect-min", "60", "--reconnect-max", "120", db=self.db())
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    killed = self.cluster.psql(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE backend_type = 'client backend' AND query LIKE '%FROM enterprises) e '")
    self.assertEqual(killed, "1", "the bulk connection's backend (its last statement the refresh)")
    wait_until(lambda: "database connection 'bulk' lost" in svc.log_text(), 10, interval=0.1,
               message="the service noticed that bulk was lost")
    self.cluster.psql("SET session_replication_role = replica;\n"
                      "UPDATE enterprises SET active = false WHERE number = '0101';")
    r = svc.post("/cache/refresh", timeout=30)
    self.assertEqual(r.status, 200, r.body)
    self.assertEqual(svc.get("/integrations/0101").status, 404)
    self.assertEqual(svc.stats()["refresh_failures"], 0)
    svc.stop()
    self.assertNoSecret(svc)

  def test_listener_that_stops_delivering(self):
    # SPEC §5.3: connected yet silent (its backend frozen with SIGSTOP); only the heartbeat can
    # notice, and the service must then reconnect and resync
    svc = self.start("--heartbeat-interval", "0.5", "--heartbeat-timeout", "2")
    self.assertEqual(svc.get("/integrations/0102").status, 200)
    pids = wait_until(lambda: self.cluster.psql(
      "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
      " AND query ILIKE 'LISTEN%'").split(), 5, message="the listener's backend")
    self.assertEqual(len(pids), 1, pids)
    pid = int(pids[0])
    os.kill(pid, signal.SIGSTOP)
    self.addCleanup(resume, pid)
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0102'")
    wait_until(lambda: svc.get("/integrations/0102").status == 404, 15, interval=0.2,
               message="the change is served after the silent listener was replaced")
    self.assertIn("listener reconnected", svc.log_text())
    svc.stop()

  # ---- signals ----

  def test_sigterm_with_open_connection_exits_0(self):
    svc = self.start()
    conn = svc.connection()
    self.addCleanup(conn.close)
    conn.request("GET", "/integrations/0101")  # leaves an idle keep-alive connection open
    resp = conn.getresponse()
    resp.read()
    self.assertEqual(resp.status, 200)
    svc.stop()  # asserts status 0
    self.assertNoSecret(svc)

  def test_sigint_exits_0(self):
    svc = self.start()
    self.assertEqual(svc.signal(signal.SIGINT), 0, svc.log_text())

  # ---- settings ----

  def test_bad_settings_rejected(self):
    cases = [
      (["--ttl", "-1"], {}, r"--ttl|IC_TTL"),
      (["--ttl", "abc"], {}, r"--ttl|IC_TTL"),
      ([], {"IC_THREADS": "abc"}, r"IC_THREADS|--threads"),
      ([], {"IC_TTL": "-5"}, r"IC_TTL|--ttl"),
      (["--max-body", "lots"], {}, r"--max-body|IC_MAX_BODY"),
      (["--listen", "not-an-address"], {}, r"--listen|IC_LISTEN"),
      (["--no-such-setting", "1"], {}, r"no-such-setting"),
    ]
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % port.getsockname()[1]
    port.close()
    for args, env, pattern in cases:
      with self.subTest(args=args, env=env):
        listen = [] if "--listen" in args else ["--listen", address]
        proc = run_binary(["serve"] + listen + args, db=self.db(), env=env, timeout=10)
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 2, output)
        self.assertRegex(output, pattern)
        self.assertNotIn(SECRET, output)

  def test_settings_from_environment_and_flag_precedence(self):
    svc = self.start(env={"IC_TTL": "7"})
    body = svc.get("/integrations/0101").body
    self.assertAlmostEqual(body["expires_at"] - body["created_at"], 7, delta=0.01)
    svc.stop()
    svc = self.start("--ttl", "9", env={"IC_TTL": "7"})
    body = svc.get("/integrations/0101").body
    self.assertAlmostEqual(body["expires_at"] - body["created_at"], 9, delta=0.01,
                           msg="a flag wins over its variable")
    svc.stop()

  def test_database_from_pg_variables(self):
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.cluster.port), "PGUSER": "postgres",
           "PGDATABASE": "postgres", "PGPASSWORD": SECRET}
    svc = self.start_service(*FAST_RECONNECT, db="", env=env)
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    svc.stop()
    self.assertNoSecret(svc)

  def test_db_flag_wins_over_database_url(self):
    wrong = self.cluster.conninfo(port=1, password=SECRET)  # nothing listens on port 1
    svc = self.start_service(*FAST_RECONNECT, "--db", self.db(), db=wrong)
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    svc.stop()
    self.assertNoSecret(svc)

  def test_log_file(self):
    logdir = tempfile.mkdtemp(prefix="ic-test-logs-")
    self.addCleanup(shutil.rmtree, logdir, True)
    path = os.path.join(logdir, "integration_cache.log")
    svc = self.start("--log-file", path)
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    wait_until(lambda: os.path.exists(path) and "Cache refreshed" in open(path).read(), 2,
               message="log file written")
    svc.stop()
    with open(path) as f:
      text = f.read()
    self.assertIn("Cache refreshed: 2 entries in ", text)
    self.assertNotIn(SECRET, text)

  def test_help(self):
    proc = run_binary(["--help"], db=self.db())
    output = proc.stdout + proc.stderr
    self.assertEqual(proc.returncode, 0, output)
    for name in SETTINGS_ENV:
      self.assertRegex(output, r"\b%s\b" % re.escape(name))
    for flag in ("--listen", "--ttl", "--db", "--max-body", "--log-level"):
      self.assertIn(flag, output)
    self.assertIn("migrate", output)
    self.assertNotIn(SECRET, output)
    self.assertNotIn(self.db(), output)


if __name__ == "__main__":
  unittest.main()
