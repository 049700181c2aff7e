"""Freshness: changes made in PostgreSQL reach the cache by LISTEN/NOTIFY within 1 s (services run
with --ttl 90 and a long negative TTL, so nothing but a notification can explain a change seen that
fast), malformed notifications and unusable rows are survived, TTLs and negative entries behave,
concurrent misses all succeed, and `migrate` is idempotent.

One cluster for the class; every test resets the table and starts its own service.
"""

import os
import re
import threading
import time
import unittest

from harness import IntegrationTestCase, RawSql, insert_sql, run_binary, wait_until

NOTIFY_S = 1.0  # the functional promise (SPEC §1: "within milliseconds"); stretched for sanitizers

BASE = {
  "0101": {"retailcrm": {"enabled": True, "api_key": "test-key-a"},
           "ms": {"enabled": False, "api_token": "test-token-a"}},
  "0102": {"ms": {"enabled": True, "api_token": "test-token-2"}},
  "0103": {"uon": {"enabled": True, "api_key": "test-key-3"}},
}
BASE_ROWS = "".join(insert_sql(n, c) for n, c in BASE.items())


class FreshnessTest(IntegrationTestCase):

  def setUp(self):
    super().setUp()
    self.reset_enterprises(BASE_ROWS)

  def start(self, *args):
    """A service where only a notification can make a change visible quickly."""
    return self.start_service("--ttl", "90", "--negative-ttl", "20", *args)

  def flags(self, svc, number):
    r = svc.get("/integrations/" + number)
    return r.body["integrations"] if r.status == 200 else r.status

  def status_of(self, svc, path):
    return svc.get(path).status

  def assertCached(self, svc, number):
    """The entry is served from memory: two reads, one load (same created_at)."""
    first, second = svc.get("/integrations/" + number), svc.get("/integrations/" + number)
    self.assertEqual((first.status, second.status), (200, 200), second.body)
    self.assertEqual(first.body["created_at"], second.body["created_at"], "not cached")

  def assertNegativeCached(self, svc, number):
    """A read of an enterprise that is not served, then one answered by the negative entry."""
    self.assertEqual(svc.get("/integrations/" + number).status, 404)
    before = svc.stats()
    self.assertEqual(svc.get("/integrations/" + number).status, 404)
    after = svc.stats()
    self.assertEqual((after["hits"], after["misses"]), (before["hits"] + 1, before["misses"]),
                     "the second read of %s must be answered by the negative entry" % number)

  # ---- changes in the database ----

  def test_update_served_within_1s(self):
    svc = self.start()
    self.assertCached(svc, "0101")
    self.assertEqual(self.flags(svc, "0101"), {"retailcrm": True, "ms": False})
    self.assertEqual(svc.get("/config/0101/ms").body["config"]["api_token"], "test-token-a")
    self.cluster.psql("UPDATE enterprises SET integrations_config = jsonb_set(integrations_config,"
                      " '{ms}', '{\"enabled\": true, \"api_token\": \"test-token-b\"}')"
                      " WHERE number = '0101'")
    wait_until(lambda: self.flags(svc, "0101") == {"retailcrm": True, "ms": True}, NOTIFY_S,
               message="UPDATE visible in /integrations")
    wait_until(lambda: svc.get("/config/0101/ms").body["config"]["api_token"] == "test-token-b",
               NOTIFY_S, message="UPDATE visible in /config")
    wait_until(lambda: "notification: enterprise 0101" in svc.log_text(), 2,
               message="log names the notification")
    self.assertGreaterEqual(svc.stats()["notifications_received"], 1)

  def test_insert_served_within_1s(self):
    svc = self.start()
    self.assertNegativeCached(svc, "0150")
    self.assertEqual(svc.get("/config/0150").status, 404)
    self.cluster.psql(insert_sql("0150", {"ms": {"enabled": "TRUE"}}))
    wait_until(lambda: self.flags(svc, "0150") == {"ms": True}, NOTIFY_S,
               message="INSERT visible in /integrations")
    wait_until(lambda: self.status_of(svc, "/config/0150") == 200, NOTIFY_S,
               message="INSERT visible in /config")
    self.assertEqual(svc.get("/config/0150").body["integrations"], {"ms": {"enabled": "TRUE"}})

  def test_delete_dropped_within_1s(self):
    svc = self.start()
    self.assertCached(svc, "0102")
    self.assertEqual(svc.get("/config/0102").status, 200)
    self.cluster.psql("DELETE FROM enterprises WHERE number = '0102'")
    wait_until(lambda: self.status_of(svc, "/integrations/0102") == 404, NOTIFY_S,
               message="DELETE visible in /integrations")
    wait_until(lambda: self.status_of(svc, "/config/0102") == 404, NOTIFY_S,
               message="DELETE visible in /config")
    self.assertNotIn("0102", svc.get("/cache/entries").body)

  def test_deactivate_and_null_config_dropped_within_1s(self):
    svc = self.start()
    self.assertCached(svc, "0103")
    self.assertCached(svc, "0102")
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0103';\n"
                      "UPDATE enterprises SET integrations_config = NULL WHERE number = '0102';")
    wait_until(lambda: self.status_of(svc, "/integrations/0103") == 404, NOTIFY_S,
               message="active=false visible")
    wait_until(lambda: self.status_of(svc, "/integrations/0102") == 404, NOTIFY_S,
               message="NULL config visible")
    self.assertEqual(svc.get("/config/0103/uon").status, 404)
    self.assertEqual(svc.get("/integrations/0101").status, 200)

  def test_number_change_within_1s(self):
    svc = self.start()
    self.assertCached(svc, "0101")
    self.assertNegativeCached(svc, "0199")
    self.cluster.psql("UPDATE enterprises SET number = '0199' WHERE number = '0101'")
    wait_until(lambda: self.status_of(svc, "/integrations/0101") == 404, NOTIFY_S,
               message="old number dropped")
    wait_until(lambda: self.flags(svc, "0199") == {"retailcrm": True, "ms": False}, NOTIFY_S,
               message="new number served")

  def test_hand_sent_notification(self):
    svc = self.start()
    self.assertCached(svc, "0102")
    self.assertEqual(self.flags(svc, "0102"), {"ms": True})
    # change the row with triggers off for this session only: no notification is sent
    self.cluster.psql("SET session_replication_role = replica;\n"
                      "UPDATE enterprises SET integrations_config = "
                      "'{\"ms\": {\"enabled\": false}}' WHERE number = '0102';")
    time.sleep(0.5)
    self.assertEqual(self.flags(svc, "0102"), {"ms": True}, "nothing should have told the service")
    self.cluster.psql("SELECT pg_notify('integration_config_changed',"
                      " '{\"enterprise_number\": \"0102\"}')")
    wait_until(lambda: self.flags(svc, "0102") == {"ms": False}, NOTIFY_S,
               message="hand-sent notification applied")

  def test_malformed_notification_ignored(self):
    svc = self.start()
    self.assertCached(svc, "0103")
    before = svc.stats()
    self.cluster.psql("SELECT pg_notify('integration_config_changed', 'not json at all');\n"
                      "SELECT pg_notify('integration_config_changed', '{\"enterprise_number\": ');")
    wait_until(lambda: svc.stats()["notifications_ignored"] >= before["notifications_ignored"] + 2,
               2, message="notifications_ignored grows by 2")
    self.assertTrue(svc.running())
    self.assertEqual(svc.get("/health").status, 200)
    self.assertEqual(svc.get("/integrations/0101").status, 200)
    # the listener still works afterwards
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0103'")
    wait_until(lambda: self.status_of(svc, "/integrations/0103") == 404, NOTIFY_S,
               message="a valid notification after malformed ones")

  # ---- rows the service cannot use ----

  def test_bad_rows_skipped_at_refresh(self):
    self.cluster.psql(insert_sql("0301", RawSql("'[1, 2]'::jsonb")) +
                      insert_sql("0302", RawSql("'\"x\"'::jsonb")))
    svc = self.start()
    for number in ("0301", "0302"):
      wait_until(lambda n=number: re.search(r"skipping enterprise %s\b" % n, svc.log_text()), 2,
                 message="log names bad row %s" % number)
    self.assertEqual(set(svc.get("/cache/entries").body), set(BASE))
    for number, config in BASE.items():
      self.assertEqual(svc.get("/config/" + number).body["integrations"], config)
    r = svc.post("/cache/refresh")
    self.assertEqual(r.status, 200, r.body)
    self.assertEqual(r.body["entries"], len(BASE))
    self.assertEqual(svc.get("/integrations/0301").status, 404)
    self.assertEqual(svc.get("/integrations/0302").status, 404)
    self.assertTrue(svc.running())

  # ---- TTLs ----

  def test_ttl_expiry(self):
    svc = self.start_service("--ttl", "1")
    # /config: a load, a hit, then after the TTL a miss that reads the database again
    svc.post("/cache/invalidate/0101")
    self.assertEqual(svc.get("/config/0101").body["source"], "database")
    self.assertEqual(svc.get("/config/0101").body["source"], "cache")
    misses = svc.stats()["config_misses"]
    time.sleep(1.5)
    self.assertEqual(svc.get("/config/0101").body["source"], "database")
    self.assertEqual(svc.stats()["config_misses"], misses + 1)
    # /integrations likewise
    svc.post("/cache/invalidate/0102")
    first = svc.get("/integrations/0102").body
    self.assertEqual(svc.get("/integrations/0102").body["created_at"], first["created_at"])
    self.assertAlmostEqual(first["expires_at"] - first["created_at"], 1, delta=0.01)
    misses = svc.stats()["misses"]
    time.sleep(1.5)
    again = svc.get("/integrations/0102").body
    self.assertEqual(svc.stats()["misses"], misses + 1)
    self.assertGreater(again["created_at"], first["created_at"])
    self.assertIn("database miss: enterprise 0102", svc.log_text())

  def test_expired_entries_swept(self):
    # SPEC §5.4: the periodic sweep removes expired entries without any read touching them
    svc = self.start_service("--ttl", "1", "--cleanup-interval", "0.2")
    s = svc.stats()
    self.assertEqual(s["cache_size"], len(BASE))
    wait_until(lambda: svc.stats()["cache_entries"] == 0, 3, interval=0.1,
               message="expired status entries swept")
    wait_until(lambda: svc.stats()["config_cache_entries"] == 0, 3, interval=0.1,
               message="expired config entries swept")
    self.assertEqual(svc.stats()["cache_size"], len(BASE), "cache_size is the last refresh's")

  def test_periodic_full_refresh(self):
    # SPEC §5.2: a change no notification announced is picked up by the next periodic refresh
    svc = self.start_service("--ttl", "90", "--refresh-interval", "1", "--refresh-jitter", "0")
    self.assertCached(svc, "0101")
    self.cluster.psql("SET session_replication_role = replica;\n"
                      "UPDATE enterprises SET active = false WHERE number = '0101';\n" +
                      insert_sql("0170", {"ms": {"enabled": True}}))
    refreshes = svc.stats()["refreshes"]
    wait_until(lambda: svc.stats()["refreshes"] >= refreshes + 2, 4, interval=0.1,
               message="two periodic refreshes")
    self.assertEqual(svc.get("/integrations/0101").status, 404)
    self.assertEqual(set(svc.get("/cache/entries").body), {"0102", "0103", "0170"})
    self.assertIn("Cache refreshed: 3 entries in ", svc.log_text())

  def test_full_refresh_runs_on_its_own_lower_priority_thread(self):
    # the rows of a full refresh become entries on `ic-refresh` (nice 10), not on the I/O thread
    # that answers misses and notifications; the main thread is the I/O thread
    filler = "x" * 1500
    self.cluster.psql(
      "INSERT INTO enterprises (number, active, integrations_config) "
      "SELECT (5000 + g)::text, true, jsonb_build_object('retailcrm', jsonb_build_object("
      "'enabled', true, 'note', '%s' || g)) FROM generate_series(1, 4000) g" % filler)
    svc = self.start()
    threads = {}
    for tid in os.listdir("/proc/%d/task" % svc.proc.pid):
      with open("/proc/%d/task/%s/comm" % (svc.proc.pid, tid)) as f:
        threads.setdefault(f.read().strip(), []).append(tid)
    self.assertIn("ic-refresh", threads, "threads: %s" % sorted(threads))
    worker = threads["ic-refresh"][0]

    def stat(tid):
      with open("/proc/%d/task/%s/stat" % (svc.proc.pid, tid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
      return int(fields[11]) + int(fields[12]), int(fields[16])  # utime + stime, nice

    self.assertEqual(stat(worker)[1], 10)
    self.assertEqual(stat(str(svc.proc.pid))[1], 0)
    before = stat(worker)[0], stat(str(svc.proc.pid))[0]
    for _ in range(8):
      r = svc.post("/cache/refresh", timeout=30)
      self.assertEqual((r.status, r.body.get("entries")), (200, 4003), r.body)
    after = stat(worker)[0], stat(str(svc.proc.pid))[0]
    worker_ticks, io_ticks = after[0] - before[0], after[1] - before[1]
    self.assertGreater(worker_ticks, io_ticks,
                       "CPU ticks over 8 refreshes: refresh thread %d, I/O thread %d" %
                       (worker_ticks, io_ticks))
    self.assertEqual(len(svc.get("/config/5042").body["integrations"]["retailcrm"]["note"]), 1502)

  def test_negative_entry_dropped_by_notification(self):
    svc = self.start()
    self.assertNegativeCached(svc, "0160")
    self.cluster.psql(insert_sql("0160", {"uon": {"enabled": 1}}))
    wait_until(lambda: self.flags(svc, "0160") == {"uon": True}, NOTIFY_S,
               message="negative entry dropped by the notification")

  def test_negative_entry_expires(self):
    svc = self.start_service("--ttl", "90", "--negative-ttl", "2")
    self.assertEqual(svc.get("/integrations/0161").status, 404)
    self.cluster.psql("SET session_replication_role = replica;\n" +
                      insert_sql("0161", {"uon": {"enabled": True}}))
    self.assertEqual(svc.get("/integrations/0161").status, 404, "negative entry still valid")
    wait_until(lambda: self.status_of(svc, "/integrations/0161") == 200, 4,
               message="negative entry expired")

  # ---- concurrency ----

  def test_concurrent_misses(self):
    svc = self.start()
    svc.post("/cache/invalidate/0101")
    svc.post("/cache/invalidate/0102")
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker(path):
      try:
        barrier.wait(timeout=10)
        r = svc.get(path)
        outcome = (path, r.status, r.body)
      except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
        outcome = (path, "error", repr(exc))
      with lock:
        results.append(outcome)

    paths = ["/integrations/0101"] * 10 + ["/config/0102"] * 10
    threads = [threading.Thread(target=worker, args=(p,)) for p in paths]
    for t in threads:
      t.start()
    for t in threads:
      t.join(60)
    self.assertEqual(len(results), 20)
    for path, status, body in results:
      self.assertEqual(status, 200, "%s: %r" % (path, body))
      if path.startswith("/integrations"):
        self.assertEqual(body["integrations"], {"retailcrm": True, "ms": False})
      else:
        self.assertEqual(body["integrations"], BASE["0102"])
    self.assertTrue(svc.running())

  # ---- migrations ----

  def test_migrate_is_idempotent(self):
    columns_sql = ("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY column_name)"
                   " FROM information_schema.columns WHERE table_name = 'enterprises'")
    triggers_sql = ("SELECT count(*) FROM pg_trigger"
                    " WHERE tgrelid = 'enterprises'::regclass AND NOT tgisinternal")
    columns, triggers = self.cluster.psql(columns_sql), self.cluster.psql(triggers_sql)
    self.assertGreaterEqual(int(triggers), 1, "migrate (in setUpClass) created no trigger")
    for _ in range(2):
      proc = run_binary(["migrate"], db=self.cluster.conninfo())
      self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
    self.assertEqual(self.cluster.psql(columns_sql), columns)
    self.assertEqual(self.cluster.psql(triggers_sql), triggers)
    self.assertEqual(self.cluster.config_of("0101"), BASE["0101"])
    self.assertIn("host:text", columns)  # the platform's extra columns are still there
    svc = self.start()
    self.assertCached(svc, "0103")
    self.cluster.psql("UPDATE enterprises SET active = false WHERE number = '0103'")
    wait_until(lambda: self.status_of(svc, "/integrations/0103") == 404, NOTIFY_S,
               message="trigger still notifies after repeated migrations")

  def test_migrate_upgrades_an_outbox_of_an_earlier_version(self):
    """An outbox created by an earlier release (B-tree on created_at, an index on every call, a
    per-call pending index instead of the pending key, no fillfactor) gets the current indexes and
    keeps its rows."""
    self.cluster.psql(
        "DROP INDEX IF EXISTS integration_cache_outbox_dial_delivered;"
        " DROP INDEX integration_cache_outbox_created;"
        " DROP INDEX integration_cache_outbox_pending_key;"
        " CREATE INDEX integration_cache_outbox_pending_call ON integration_cache_outbox"
        " (unique_id, target, id) WHERE state = 'pending';"
        " CREATE INDEX integration_cache_outbox_created ON integration_cache_outbox (created_at);"
        " CREATE INDEX integration_cache_outbox_call ON integration_cache_outbox (unique_id, target);"
        " ALTER TABLE integration_cache_outbox RESET (fillfactor);"
        " INSERT INTO integration_cache_outbox (event_id, enterprise_number, unique_id, event_type,"
        " target, payload) VALUES ('upgrade-test', '0101', 'u.1', 'dial', 'ms', '{}')")
    rows = self.cluster.psql("SELECT count(*) FROM integration_cache_outbox")
    proc = run_binary(["migrate"], db=self.cluster.conninfo())
    self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
    indexes = dict(
        line.split("|", 1) for line in self.cluster.psql(
            "SELECT indexname, regexp_replace(indexdef, '\\s+', ' ', 'g') FROM pg_indexes"
            " WHERE tablename = 'integration_cache_outbox'").splitlines())
    self.assertIn("USING brin (created_at)", indexes["integration_cache_outbox_created"])
    self.assertIn("(created_at) WHERE (state <> 'pending'::text)",
                  indexes["integration_cache_outbox_finished"])
    self.assertNotIn("integration_cache_outbox_call", indexes)
    self.assertNotIn("integration_cache_outbox_pending_call", indexes)
    self.assertIn("CASE WHEN (state = 'pending'::text) THEN ((unique_id || ' '::text) || target)"
                  " ELSE NULL::text END), id) WHERE ( CASE WHEN",
                  indexes["integration_cache_outbox_pending_key"])
    self.assertIn("WHERE ((target = 'retailcrm'::text) AND (event_type = 'dial'::text)"
                  " AND (state = 'delivered'::text))",
                  indexes["integration_cache_outbox_dial_delivered"])
    self.assertEqual(
        self.cluster.psql("SELECT reloptions::text FROM pg_class"
                          " WHERE relname = 'integration_cache_outbox'"), "{fillfactor=70}")
    self.assertEqual(self.cluster.psql("SELECT count(*) FROM integration_cache_outbox"), rows)
    self.cluster.psql("DELETE FROM integration_cache_outbox WHERE event_id = 'upgrade-test'")



if __name__ == "__main__":
  unittest.main()
