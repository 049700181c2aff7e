"""/stats arithmetic and /health alerts after known sequences of reads (SPEC §4 "GET /stats",
"GET /health"; docs/CONTRACT-dev.md for the extra members and the exact alert strings).

Every test resets the table and starts a fresh service, so the counters start from zero.
"""

import unittest

from harness import ISO_RE, IntegrationTestCase, insert_sql, is_number, wait_until

CONFIGS = {
  "0101": {"retailcrm": {"enabled": True}, "ms": {"enabled": True, "api_token": "test-t"}},
  "0102": {"ms": {"enabled": False}},
  "0103": {},
  "0104": {"uon": {"enabled": "true"}},
}
ROWS = "".join(insert_sql(n, c) for n, c in CONFIGS.items()) + "".join([
  insert_sql("0190", None),  # not served: NULL config
  insert_sql("0191", {"ms": {"enabled": True}}, active=False),  # not served: inactive
])
SERVED = len(CONFIGS)

SPEC_MEMBERS = {"hits", "misses", "refreshes", "cache_size", "config_hits", "config_misses",
                "config_cache_size", "last_full_refresh", "total_requests", "hit_rate_percent",
                "config_hit_rate_percent", "cache_entries", "config_cache_entries"}
CONTRACT_MEMBERS = {"notifications_received", "notifications_ignored", "database_errors",
                    "refresh_failures", "last_refresh_ms", "validation_problems",
                    "listener_reconnects", "uptime_seconds"}


def rate(hits, total):
  return round(100.0 * hits / max(1, total), 1)


class StatsTest(IntegrationTestCase):

  def setUp(self):
    super().setUp()
    self.reset_enterprises(ROWS)

  def test_members_and_types(self):
    svc = self.start_service()
    s = svc.stats()
    self.assertLessEqual(SPEC_MEMBERS | CONTRACT_MEMBERS, set(s))
    for key in SPEC_MEMBERS - {"last_full_refresh", "hit_rate_percent",
                               "config_hit_rate_percent"}:
      self.assertIsInstance(s[key], int, key)
      self.assertNotIsInstance(s[key], bool, key)
    for key in CONTRACT_MEMBERS:
      self.assertTrue(is_number(s[key]), key)
    self.assertTrue(is_number(s["hit_rate_percent"]))
    self.assertTrue(is_number(s["config_hit_rate_percent"]))
    self.assertRegex(s["last_full_refresh"], ISO_RE)
    self.assertGreaterEqual(s["refreshes"], 1)
    self.assertEqual((s["hits"], s["misses"], s["total_requests"]), (0, 0, 0))
    self.assertEqual((s["config_hits"], s["config_misses"]), (0, 0))
    self.assertEqual(s["hit_rate_percent"], 0)

  def test_counters_after_known_sequence(self):
    svc = self.start_service()
    for _ in range(3):  # 3 hits on an enterprise loaded at start-up
      self.assertEqual(svc.get("/integrations/0101").status, 200)
    self.assertEqual(svc.get("/integrations/9991").status, 404)  # miss
    self.assertEqual(svc.get("/integrations/9991").status, 404)  # hit (negative entry)
    self.assertEqual(svc.get("/integrations/9992").status, 404)  # miss
    s = svc.stats()
    self.assertEqual((s["hits"], s["misses"]), (4, 2))
    self.assertEqual(s["total_requests"], 6)
    self.assertEqual(s["hit_rate_percent"], rate(4, 6))  # 66.7
    self.assertEqual((s["config_hits"], s["config_misses"]), (0, 0), "/integrations only")

    self.assertEqual(svc.get("/config/0101").status, 200)  # hit
    self.assertEqual(svc.get("/config/0101/ms").status, 200)  # hit
    self.assertEqual(svc.get("/config/0102").status, 200)  # hit
    self.assertEqual(svc.get("/config/9993").status, 404)  # miss
    self.assertEqual(svc.get("/config/9993/ms").status, 404)  # hit (negative entry)
    s = svc.stats()
    self.assertEqual((s["config_hits"], s["config_misses"]), (4, 1))
    self.assertEqual(s["config_hit_rate_percent"], rate(4, 5))  # 80.0
    self.assertEqual((s["hits"], s["misses"], s["total_requests"]), (4, 2, 6),
                     "/config reads must not count as /integrations look-ups")

    # after an invalidation the next read is a miss, the one after a hit
    svc.post("/cache/invalidate/0104")
    svc.get("/integrations/0104")
    svc.get("/integrations/0104")
    s = svc.stats()
    self.assertEqual((s["hits"], s["misses"], s["total_requests"]), (5, 3, 8))
    self.assertEqual(s["hit_rate_percent"], rate(5, 8))  # 62.5

  def test_sizes_and_live_counts(self):
    svc = self.start_service()
    s = svc.stats()
    self.assertEqual((s["cache_size"], s["config_cache_size"]), (SERVED, SERVED))
    self.assertEqual((s["cache_entries"], s["config_cache_entries"]), (SERVED, SERVED))
    first_refresh, refreshes = s["last_full_refresh"], s["refreshes"]

    svc.post("/cache/invalidate/0101")
    s = svc.stats()
    self.assertEqual((s["cache_entries"], s["config_cache_entries"]), (SERVED - 1, SERVED - 1))
    self.assertEqual((s["cache_size"], s["config_cache_size"]), (SERVED, SERVED),
                     "sizes are those of the last refresh")

    self.cluster.psql(insert_sql("0105", {"ms": {"enabled": True}}))
    wait_until(lambda: svc.stats()["cache_entries"] == SERVED, 1,
               message="the notified INSERT adds a live entry")
    self.assertEqual(svc.stats()["cache_size"], SERVED)

    r = svc.post("/cache/refresh")
    self.assertEqual(r.status, 200, r.body)
    self.assertEqual(r.body["entries"], SERVED + 1)
    s = svc.stats()
    self.assertEqual((s["cache_size"], s["config_cache_size"]), (SERVED + 1, SERVED + 1))
    self.assertEqual((s["cache_entries"], s["config_cache_entries"]), (SERVED + 1, SERVED + 1))
    self.assertEqual(s["refreshes"], refreshes + 1)
    self.assertRegex(s["last_full_refresh"], ISO_RE)
    self.assertGreater(s["last_full_refresh"], first_refresh)
    self.assertTrue(is_number(s["last_refresh_ms"]))

  def test_health_matches_stats(self):
    svc = self.start_service()
    h = svc.get("/health").body
    self.assertEqual(h["status"], "healthy", h)
    self.assertEqual(h["alerts"], [])
    self.assertEqual(h["cache_size"], svc.stats()["cache_size"])
    self.assertIs(h["database_connected"], True)

  def test_health_cache_empty_alert(self):
    self.reset_enterprises(insert_sql("0190", None))  # nothing served
    svc = self.start_service()
    self.assertEqual(svc.get("/ready").status, 200, "an empty first load is still a load")
    h = svc.get("/health").body
    self.assertEqual(h["status"], "degraded", h)
    self.assertIn("cache empty", h["alerts"])
    self.assertEqual(h["cache_size"], 0)

  def test_health_hit_rate_alert_after_100_lookups(self):
    svc = self.start_service()
    for i in range(99):  # 99 misses: not enough look-ups to judge the hit rate yet
      self.assertEqual(svc.get("/integrations/X%03d" % i).status, 404)
    h = svc.get("/health").body
    self.assertNotIn("hit rate below 50%", h["alerts"])
    self.assertEqual(svc.get("/integrations/X099").status, 404)
    s = svc.stats()
    self.assertEqual((s["hits"], s["misses"]), (0, 100))
    h = svc.get("/health").body
    self.assertIn("hit rate below 50%", h["alerts"])
    self.assertEqual(h["status"], "degraded")


if __name__ == "__main__":
  unittest.main()
