"""Every HTTP route against the real binary and a real PostgreSQL: shapes, types, status codes,
error details, path validation, the HTTP conventions of SPEC §3 and the limits.

One service for the whole class (its data below is loaded once); tests that write use their own
enterprises, so the order of the tests does not matter.
"""

import datetime
import json
import os
import select
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (BINARY, ISO_RE, IntegrationTestCase, clean_env, deadline, insert_sql,
                     is_number, parse_responses, raw_exchange, recv_until_closed)


FULL = {
  "retailcrm": {"enabled": True, "domain": "https://test.retailcrm.example",
                "api_key": "test-retailcrm-key", "user_extensions": {"19": "150", "18": "151"}},
  "ms": {"enabled": True, "api_token": "test-ms-token",
         "webhook_uuid": "00000000-0000-4000-8000-000000000001",
         "employee_mapping": {"151": {"name": "Иванов И.",
                                      "employee_id": "00000000-0000-4000-8000-000000000002"}},
         "incoming_call_actions": {"create_client": True}},
  "uon": {"enabled": False, "api_key": "test-uon-key", "user_extensions": {"42": "152"}},
  "smart": {"primary": "ms", "mode": "routing+name", "lines": {}},
}
FULL_FLAGS = {"retailcrm": True, "ms": True, "uon": False, "smart": False}

# One integration per `enabled` spelling (SPEC §2.1), plus top-level values that are not objects.
FLAGS = {
  "a_true": {"enabled": True}, "b_one": {"enabled": 1}, "c_str": {"enabled": "true"},
  "d_upper": {"enabled": "TRUE"}, "e_mixed": {"enabled": "True"},
  "f_strfalse": {"enabled": "false"}, "g_zero": {"enabled": 0}, "h_yes": {"enabled": "yes"},
  "i_missing": {"domain": "x"}, "j_null": {"enabled": None}, "k_strone": {"enabled": "1"},
  "l_false": {"enabled": False}, "m_two": {"enabled": 2},
  "smart": {"primary": "uon", "mode": "name", "lines": {}},
  "version": 3, "note": "not an integration", "list": [1, 2],
}
FLAGS_EXPECTED = {
  "a_true": True, "b_one": True, "c_str": True, "d_upper": True, "e_mixed": True,
  "f_strfalse": False, "g_zero": False, "h_yes": False, "i_missing": False, "j_null": False,
  "k_strone": False, "l_false": False, "m_two": False, "smart": False,
}
# a config past the 64 KiB that a connection's reply buffer keeps between requests
BIG = {"retailcrm": {"enabled": True, "note": "x" * 100000}, "uon": {"enabled": False}}
ONLY_RETAILCRM = {"retailcrm": {"enabled": True, "domain": "https://r.retailcrm.example"}}
PUT_TARGET = {"retailcrm": {"enabled": True, "api_key": "test-key-0201"},
              "ms": {"enabled": False, "api_token": "test-old-token"}}

ROWS = "".join([
  insert_sql("0101", FULL),
  insert_sql("0102", FLAGS),
  insert_sql("0103", {}),
  insert_sql("0104", None),  # NULL config: not served
  insert_sql("0105", FULL, active=False),  # inactive: not served
  insert_sql("0367", ONLY_RETAILCRM),
  insert_sql("0201", PUT_TARGET),
  insert_sql("0202", None),
  insert_sql("0203", ONLY_RETAILCRM),
  insert_sql("0204", PUT_TARGET),
  insert_sql("0205", BIG),
])

TTL = 90
ENTRY_KEYS = {"integrations", "created_at", "expires_at", "age_seconds"}


def established_socket_inodes(port):
  """Inodes of the server-side sockets of established TCP connections to 127.0.0.1:port."""
  inodes = set()
  with open("/proc/net/tcp") as f:
    next(f)
    for line in f:
      fields = line.split()
      local, state, inode = fields[1], fields[3], fields[9]
      if state == "01" and local == "0100007F:%04X" % port:
        inodes.add(inode)
  return inodes


def epoll_socket_counts(pid, inodes):
  """For each epoll instance of process pid: how many of the sockets `inodes` it watches."""
  fd_inode = {}
  for fd in os.listdir("/proc/%d/fd" % pid):
    try:
      target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
    except OSError:
      continue
    if target.startswith("socket:["):
      fd_inode[fd] = target[len("socket:["):-1]
  counts = []
  for fd in os.listdir("/proc/%d/fd" % pid):
    try:
      if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != "anon_inode:[eventpoll]":
        continue
      with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
        watched = [line.split()[1] for line in f if line.startswith("tfd:")]
    except OSError:
      continue
    counts.append(sum(1 for w in watched if fd_inode.get(w) in inodes))
  return counts


class RoutesTest(IntegrationTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reset_enterprises(ROWS)
    cls.svc = cls.start_class_service("--ttl", str(TTL), "--max-body", "65536")

  def served_numbers(self):
    out = self.cluster.psql("SELECT number FROM enterprises "
                            "WHERE active AND integrations_config IS NOT NULL ORDER BY number")
    return set(out.split())

  def assertEntryShape(self, entry, flags):
    self.assertEqual(set(entry), ENTRY_KEYS)
    self.assertEqual(entry["integrations"], flags)
    for key in ("created_at", "expires_at"):
      self.assertIsInstance(entry[key], float, "%s must be epoch seconds with fractions" % key)
    self.assertTrue(is_number(entry["age_seconds"]))
    now = time.time()
    self.assertLess(abs(entry["created_at"] - now), 3600, "created_at is not epoch seconds")
    self.assertAlmostEqual(entry["expires_at"] - entry["created_at"], TTL, delta=0.01)
    self.assertGreaterEqual(entry["age_seconds"], 0)
    self.assertAlmostEqual(entry["age_seconds"], now - entry["created_at"], delta=5)

  # ---- GET /integrations/{e} ----

  def test_integrations_shape_and_types(self):
    r = self.svc.get("/integrations/0101")
    self.assertJsonResponse(r, 200)
    self.assertEntryShape(r.body, FULL_FLAGS)

  def test_integrations_age_grows(self):
    first = self.svc.get("/integrations/0101").body
    time.sleep(0.3)
    second = self.svc.get("/integrations/0101").body
    self.assertEqual(first["created_at"], second["created_at"], "a hit must not reload")
    self.assertGreater(second["age_seconds"], first["age_seconds"])

  def test_enabled_flag_rules(self):
    r = self.svc.get("/integrations/0102")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], FLAGS_EXPECTED)

  def test_integrations_empty_config(self):
    r = self.svc.get("/integrations/0103")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], {})

  def test_integrations_not_served(self):
    # NULL config, inactive, unknown, unknown but valid characters, unknown 32 characters
    for number in ("0104", "0105", "9999", "ab_C-9", "a" * 32):
      with self.subTest(number=number):
        self.assertDetail(self.svc.get("/integrations/" + number), 404, "Enterprise not found")

  # ---- GET /config/{e} ----

  def test_config_full_document_from_cache(self):
    self.svc.get("/config/0101")
    r = self.svc.get("/config/0101")
    self.assertJsonResponse(r, 200)
    self.assertEqual(set(r.body), {"enterprise_number", "integrations", "source", "cached_at"})
    self.assertEqual(r.body["enterprise_number"], "0101")
    self.assertEqual(r.body["integrations"], FULL)
    self.assertEqual(r.body["source"], "cache")
    self.assertRegex(r.body["cached_at"], ISO_RE)
    self.assertEqual(self.svc.get("/config/0101").body["cached_at"], r.body["cached_at"],
                     "cached_at is the time of the load, not of the request")

  def test_config_lists_only_object_members(self):
    r = self.svc.get("/config/0102")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"],
                     {k: v for k, v in FLAGS.items() if isinstance(v, dict)})

  def test_config_empty(self):
    r = self.svc.get("/config/0103")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], {})

  def test_config_not_served(self):
    for number in ("0104", "0105", "9999"):
      with self.subTest(number=number):
        self.assertDetail(self.svc.get("/config/" + number), 404,
                          "No integration configurations found for enterprise " + number)

  def test_config_source_database_after_invalidate(self):
    self.svc.get("/config/0367")
    r = self.svc.post("/cache/invalidate/0367")
    self.assertJsonResponse(r, 200, {"message": "Cache invalidated for enterprise 0367"})
    r = self.svc.get("/config/0367")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["source"], "database")
    self.assertEqual(r.body["integrations"], ONLY_RETAILCRM)
    cached_at = datetime.datetime.fromisoformat(r.body["cached_at"])
    self.assertRegex(r.body["cached_at"], ISO_RE)
    self.assertLess(abs((datetime.datetime.now() - cached_at).total_seconds()), 60,
                    "cached_at must be local time of the load")
    r = self.svc.get("/config/0367")
    self.assertEqual(r.body["source"], "cache")
    self.assertEqual(self.svc.get("/integrations/0367").status, 200)

  # ---- GET /config/{e}/{type} ----

  def test_config_type(self):
    self.svc.get("/config/0101/ms")
    r = self.svc.get("/config/0101/ms")
    self.assertJsonResponse(r, 200, {"enterprise_number": "0101", "integration_type": "ms",
                                     "config": FULL["ms"], "source": "cache"})

  def test_config_type_not_configured(self):
    cases = [("0367", "ms"), ("0101", "bitrix24"), ("0102", "version"), ("0104", "ms"),
             ("0105", "ms"), ("9999", "ms"), ("0101", "a" * 32)]
    for number, itype in cases:
      with self.subTest(number=number, itype=itype):
        self.assertDetail(self.svc.get("/config/%s/%s" % (number, itype)), 404,
                          "Integration '%s' not configured for enterprise %s" % (itype, number))

  # ---- PUT /config/{e}/{type} ----

  def test_put_replaces_one_key_and_cache_reflects_it(self):
    self.assertEqual(self.svc.get("/config/0201/ms").body["config"], PUT_TARGET["ms"])
    new = {"enabled": True, "api_token": "test-new-token",
           "employee_mapping": {"151": {"name": "Петров П.", "employee_id": "x-1"}}}
    r = self.svc.put("/config/0201/ms", new)
    self.assertJsonResponse(r, 200, {"status": "success", "message": "ms configuration updated",
                                     "enterprise_number": "0201"})
    # right after the response, without waiting for any notification
    r = self.svc.get("/config/0201/ms")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["config"], new)
    self.assertEqual(self.svc.get("/integrations/0201").body["integrations"],
                     {"retailcrm": True, "ms": True})
    expected = {"retailcrm": PUT_TARGET["retailcrm"], "ms": new}
    self.assertEqual(self.cluster.config_of("0201"), expected)
    self.assertEqual(self.svc.get("/config/0201").body["integrations"], expected)

  def test_put_adds_a_new_key(self):
    new = {"enabled": "true", "api_key": "test-uon-key"}
    r = self.svc.put("/config/0204/uon", new)
    self.assertJsonResponse(r, 200, {"status": "success", "message": "uon configuration updated",
                                     "enterprise_number": "0204"})
    self.assertEqual(self.cluster.config_of("0204"), dict(PUT_TARGET, uon=new))
    self.assertEqual(self.svc.get("/integrations/0204").body["integrations"],
                     {"retailcrm": True, "ms": False, "uon": True})

  def test_put_on_null_config(self):
    # 0202 is not served (NULL config): a read leaves a negative entry the PUT must replace
    self.assertEqual(self.svc.get("/integrations/0202").status, 404)
    new = {"enabled": 1, "api_token": "test-token-0202"}
    r = self.svc.put("/config/0202/ms", new)
    self.assertJsonResponse(r, 200, {"status": "success", "message": "ms configuration updated",
                                     "enterprise_number": "0202"})
    self.assertEqual(self.cluster.config_of("0202"), {"ms": new})
    r = self.svc.get("/integrations/0202")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], {"ms": True})
    self.assertEqual(self.svc.get("/config/0202/ms").body["config"], new)

  def test_put_body_must_be_object(self):
    before = self.cluster.config_of("0367")
    bodies = ["[1, 2]", '"x"', "{", "", "null", "42", '{"a": 1} trailing', "{'a': 1}"]
    for body in bodies:
      with self.subTest(body=body):
        r = self.svc.put("/config/0367/ms", body, headers={"Content-Type": "application/json"})
        self.assertDetail(r, 400, "body must be a JSON object")
    self.assertEqual(self.cluster.config_of("0367"), before)

  def test_put_unknown_enterprise(self):
    r = self.svc.put("/config/7777/ms", {"enabled": True})
    self.assertDetail(r, 404, "Enterprise not found")
    self.assertEqual(self.cluster.psql("SELECT count(*) FROM enterprises WHERE number = '7777'"),
                     "0")

  def test_put_invalid_path(self):
    self.assertDetail(self.svc.put("/config/0367/MS", {"enabled": True}), 400,
                      "invalid integration_type")
    self.assertDetail(self.svc.put("/config/bad!num/ms", {"enabled": True}), 400,
                      "invalid enterprise_number")

  # ---- cache administration ----

  def test_invalidate(self):
    before = self.svc.get("/integrations/0101").body["created_at"]
    time.sleep(0.05)
    r = self.svc.post("/cache/invalidate/0101")
    self.assertJsonResponse(r, 200, {"message": "Cache invalidated for enterprise 0101"})
    r = self.svc.post("/cache/invalidate/9876")  # nothing cached
    self.assertJsonResponse(r, 200, {"message": "Cache invalidated for enterprise 9876"})
    r = self.svc.get("/integrations/0101")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], FULL_FLAGS)
    self.assertGreater(r.body["created_at"], before, "the entry must have been reloaded")

  def test_refresh(self):
    r = self.svc.post("/cache/refresh")
    self.assertJsonResponse(r, 200)
    self.assertEqual(set(r.body), {"message", "entries", "duration_ms"})
    self.assertEqual(r.body["message"], "Cache refreshed successfully")
    self.assertIsInstance(r.body["entries"], int)
    self.assertNotIsInstance(r.body["entries"], bool)
    self.assertEqual(r.body["entries"], len(self.served_numbers()))
    self.assertTrue(is_number(r.body["duration_ms"]))
    self.assertGreaterEqual(r.body["duration_ms"], 0)

  def test_cache_entries(self):
    self.assertEqual(self.svc.post("/cache/refresh").status, 200)
    r = self.svc.get("/cache/entries")
    self.assertJsonResponse(r, 200)
    self.assertIsInstance(r.body, dict)
    self.assertEqual(set(r.body), self.served_numbers())
    self.assertEntryShape(r.body["0101"], FULL_FLAGS)
    self.assertEntryShape(r.body["0102"], FLAGS_EXPECTED)
    self.assertEntryShape(r.body["0103"], {})

  def test_stats_shape(self):
    r = self.svc.get("/stats")
    self.assertJsonResponse(r, 200)
    for key in ("hits", "misses", "refreshes", "cache_size", "config_hits", "config_misses",
                "config_cache_size", "total_requests", "cache_entries", "config_cache_entries"):
      self.assertIsInstance(r.body[key], int, key)
    for key in ("hit_rate_percent", "config_hit_rate_percent"):
      self.assertTrue(is_number(r.body[key]), key)
    self.assertRegex(r.body["last_full_refresh"], ISO_RE)

  def test_health(self):
    r = self.svc.get("/health")
    self.assertJsonResponse(r, 200)
    self.assertEqual(set(r.body),
                     {"status", "cache_size", "database_connected", "uptime_seconds", "alerts"})
    self.assertIn(r.body["status"], ("healthy", "degraded"))
    self.assertIsInstance(r.body["cache_size"], int)
    self.assertGreater(r.body["cache_size"], 0)
    self.assertIs(r.body["database_connected"], True)
    self.assertTrue(is_number(r.body["uptime_seconds"]))
    self.assertGreater(r.body["uptime_seconds"], 0)
    self.assertIsInstance(r.body["alerts"], list)
    for alert in r.body["alerts"]:
      self.assertIsInstance(alert, str)
    self.assertNotIn("database disconnected", r.body["alerts"])
    self.assertEqual(r.body["status"] == "healthy", r.body["alerts"] == [])

  def test_ready(self):
    self.assertEqual(self.svc.get("/ready").status, 200)

  # ---- routing, methods, paths ----

  def test_unknown_route(self):
    paths = ["/", "/nope", "/integrations", "/integrations/0101/extra", "/config/0101/ms/extra",
             "/cache", "/cache/invalidate", "/INTEGRATIONS/0101"]
    for path in paths:
      with self.subTest(path=path):
        self.assertDetail(self.svc.get(path), 404, "Not Found")
    self.assertDetail(self.svc.post("/nope"), 404, "Not Found")

  def test_wrong_method(self):
    cases = [("DELETE", "/stats"), ("GET", "/cache/refresh"), ("POST", "/health"),
             ("PUT", "/integrations/0101"), ("GET", "/cache/invalidate/0101"),
             ("DELETE", "/config/0101/ms"), ("POST", "/cache/entries"), ("POST", "/config/0101")]
    for method, path in cases:
      with self.subTest(method=method, path=path):
        self.assertDetail(self.svc.request(method, path), 405, "Method Not Allowed")

  def test_trailing_slash_is_not_found(self):
    for path in ("/integrations/0101/", "/config/0101/", "/config/0101/ms/", "/stats/",
                 "/health/"):
      with self.subTest(path=path):
        self.assertDetail(self.svc.get(path), 404, "Not Found")

  def test_invalid_enterprise_number(self):
    bad = ["bad!num", "bad.num", "01%2F01", "a" * 33, "%zz", "01%zz", "01%2", "%D0%B0", "01%20",
           "%00"]
    for number in bad:
      for method, path in (("GET", "/integrations/%s"), ("GET", "/config/%s"),
                           ("GET", "/config/%s/ms"), ("POST", "/cache/invalidate/%s")):
        with self.subTest(method=method, path=path % number):
          self.assertDetail(self.svc.request(method, path % number), 400,
                            "invalid enterprise_number")

  def test_invalid_integration_type(self):
    for itype in ("MS", "a-b", "a" * 33, "%zz", "m%20s", "m.s"):
      with self.subTest(itype=itype):
        self.assertDetail(self.svc.get("/config/0101/" + itype), 400, "invalid integration_type")

  def test_percent_escapes_are_decoded_first(self):
    r = self.svc.get("/integrations/%30101")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integrations"], FULL_FLAGS)
    r = self.svc.get("/config/0101/%6Ds")
    self.assertJsonResponse(r, 200)
    self.assertEqual(r.body["integration_type"], "ms")
    self.assertEqual(r.body["config"], FULL["ms"])

  # ---- HTTP conventions and limits ----

  def test_content_type_on_every_json_body(self):
    requests = [("GET", "/integrations/0101"), ("GET", "/integrations/9999"),
                ("GET", "/config/0101"), ("GET", "/config/9999"), ("GET", "/config/0101/ms"),
                ("GET", "/config/0101/nope"), ("GET", "/cache/entries"), ("GET", "/stats"),
                ("GET", "/health"), ("GET", "/nope"), ("DELETE", "/stats"),
                ("GET", "/integrations/bad!num"), ("GET", "/config/0101/MS"),
                ("POST", "/cache/invalidate/0103"), ("POST", "/cache/refresh"),
                ("PUT", "/config/0367/ms")]
    for method, path in requests:
      with self.subTest(method=method, path=path):
        r = self.svc.request(method, path, body="[]" if method == "PUT" else None)
        self.assertTrue(r.raw, "expected a JSON body")
        self.assertIsNotNone(r.body)
        self.assertNotIsInstance(r.body, str, "body is not JSON: %r" % r.raw[:200])
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"),
                        r.headers.get("Content-Type"))

  def test_keep_alive(self):
    conn = self.svc.connection()
    try:
      seen = []
      for path, status in (("/integrations/0101", 200), ("/nope", 404), ("/stats", 200)):
        conn.request("GET", path)
        resp = conn.getresponse()
        body = json.loads(resp.read())
        self.assertEqual(resp.status, status, body)
        self.assertNotEqual((resp.getheader("Connection") or "").lower(), "close")
        self.assertIsNotNone(conn.sock, "the server closed the connection after %s" % path)
        seen.append(conn.sock)
      self.assertTrue(all(s is seen[0] for s in seen), "requests did not share one connection")
    finally:
      conn.close()

  def test_pipelining(self):
    reqs = (b"GET /integrations/0101 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /integrations/0103 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    responses = parse_responses(raw_exchange(self.svc.port, reqs))
    self.assertEqual([status for status, _, _ in responses], [200, 200, 404])
    self.assertEqual(json.loads(responses[0][2])["integrations"], FULL_FLAGS)
    self.assertEqual(json.loads(responses[1][2])["integrations"], {})
    self.assertEqual(json.loads(responses[2][2]), {"detail": "Not Found"})

  def test_pipelined_answers_share_the_connection_buffer_intact(self):
    # answers are rendered into one buffer per connection, reused by its next request: a large
    # answer, small ones and a large one again, pipelined, must each arrive whole and unchanged
    paths = ["/config/0205", "/integrations/0101", "/config/0205/retailcrm", "/config/0101/ms",
             "/integrations/0205", "/config/0205"]
    alone = [self.svc.get(p) for p in paths]
    reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % p.encode() for p in paths)
    reqs += b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    responses = parse_responses(raw_exchange(self.svc.port, reqs))
    self.assertEqual([status for status, _, _ in responses], [200] * (len(paths) + 1))
    for path, single, (_, _, body) in zip(paths, alone, responses):
      got, want = json.loads(body), dict(single.body)
      for doc in (got, want):
        doc.pop("age_seconds", None)
      self.assertEqual(got, want, path)
    self.assertEqual(json.loads(responses[0][2])["integrations"]["retailcrm"], BIG["retailcrm"])

  def test_head_over_8k_rejected(self):
    req = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: " + b"a" * 9000 +
           b"\r\nConnection: close\r\n\r\n")
    responses = parse_responses(raw_exchange(self.svc.port, req))
    if responses:  # a closed connection without an answer is allowed too
      self.assertEqual(responses[0][0], 431)
    self.assertTrue(self.svc.running())
    self.assertEqual(self.svc.get("/health").status, 200)

  def test_head_under_limit_accepted(self):
    r = self.svc.get("/integrations/0101", headers={"X-Fill": "a" * 6000})
    self.assertJsonResponse(r, 200)

  def test_head_just_under_limit_accepted(self):
    # the connection's memory pool must hold a whole head of --max-head (8 KiB) bytes, not only
    # the half of the pool libmicrohttpd starts a request's read buffer with
    r = self.svc.get("/integrations/0101", headers={"X-Fill": "a" * 8000})
    self.assertJsonResponse(r, 200)

  def test_slow_head_closed(self):
    svc = self.start_service("--head-timeout", "1")
    with socket.create_connection(("127.0.0.1", svc.port), timeout=deadline(10)) as s:
      s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes the head
      started = time.monotonic()
      data = recv_until_closed(s)
      self.assertLess(time.monotonic() - started, deadline(5), "slow client not closed")
    responses = parse_responses(data)
    if responses:  # a 408 is allowed before the close
      self.assertEqual(responses[0][0], 408)
    self.assertEqual(svc.get("/health").status, 200)

  def test_idle_keep_alive_closed(self):
    svc = self.start_service("--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", svc.port), timeout=deadline(10)) as s:
      s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      started = time.monotonic()
      data = recv_until_closed(s)
      self.assertLess(time.monotonic() - started, deadline(5), "idle connection not closed")
    self.assertEqual([status for status, _, _ in parse_responses(data)], [200])

  def test_head_timeout_only_until_the_first_head(self):
    # --head-timeout bounds a new connection's first head; after it the idle limit applies, so a
    # slow second head on a kept-alive connection is not cut at the head timeout
    svc = self.start_service("--head-timeout", "1", "--idle-timeout", "30")
    with socket.create_connection(("127.0.0.1", svc.port), timeout=deadline(10)) as s:
      s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      first = b""
      while not parse_responses(first):
        chunk = s.recv(65536)
        self.assertTrue(chunk, "closed before the first answer")
        first += chunk
      s.sendall(b"GET /ready HTTP/1.1\r\n")
      time.sleep(2.5)  # past --head-timeout
      s.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
      data = recv_until_closed(s)
    self.assertEqual([status for status, _, _ in parse_responses(data)], [200])

  def test_second_instance_on_the_same_port_refused(self):
    # the HTTP threads share the port through SO_REUSEPORT; a second service must still not
    cmd = [BINARY, "serve", "--listen", "127.0.0.1:%d" % self.svc.port]
    env = clean_env()
    env["DATABASE_URL"] = self.cluster.conninfo()
    with tempfile.TemporaryDirectory(prefix="ic-test-second-") as cwd:  # its var/spool lands here
      proc = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=deadline(20))
    self.assertNotEqual(proc.returncode, 0, "a second service started on a port in use")
    self.assertIn("cannot listen on 127.0.0.1:%d" % self.svc.port, proc.stderr.decode())
    self.assertIn("in use", proc.stderr.decode())
    self.assertEqual(self.svc.get("/ready").status, 200)

  def test_connections_spread_over_the_http_threads(self):
    # one listening socket per HTTP thread (SO_REUSEPORT): the kernel spreads connections over
    # all threads; each thread's epoll instance holds the sockets of the connections it serves
    svc = self.start_service("--threads", "2")
    conns = [socket.create_connection(("127.0.0.1", svc.port), timeout=deadline(10))
             for _ in range(24)]
    try:
      for s in conns:
        s.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      for s in conns:
        data = b""
        while not parse_responses(data):
          chunk = s.recv(65536)
          self.assertTrue(chunk, "closed before the answer")
          data += chunk
      client_inodes = established_socket_inodes(svc.port)
      self.assertEqual(len(client_inodes), len(conns))
      per_epoll = [n for n in epoll_socket_counts(svc.proc.pid, client_inodes) if n]
      self.assertEqual(sum(per_epoll), len(conns))
      self.assertEqual(len(per_epoll), 2, "connections per HTTP thread: %s" % per_epoll)
    finally:
      for s in conns:
        s.close()

  def test_body_over_max_body(self):
    before = self.cluster.config_of("0203")
    body = json.dumps({"enabled": True, "blob": "x" * 100000}).encode()
    head = (b"PUT /config/0203/ms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    responses = parse_responses(raw_exchange(self.svc.port, head, body))
    self.assertTrue(responses, "no response to an oversized body")
    status, headers, payload = responses[0]
    self.assertEqual(status, 413)
    self.assertTrue(headers.get("content-type", "").startswith("application/json"))
    self.assertIn("detail", json.loads(payload))
    self.assertEqual(self.cluster.config_of("0203"), before)

  def test_chunked_body_over_max_body(self):
    # No Content-Length to judge by: the limit is noticed mid-body. libmicrohttpd cannot queue an
    # answer mid-upload, so a prompt close is accepted (SPEC §3: "or a closed connection when no
    # response can be formed"); an answer, if any, must be a 413. Nothing may be written.
    before = self.cluster.config_of("0203")
    body = json.dumps({"enabled": True, "blob": "x" * 100000}).encode()
    with socket.create_connection(("127.0.0.1", self.svc.port), timeout=deadline(5)) as s:
      s.sendall(b"PUT /config/0203/ms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
      for i in range(0, len(body), 4096):  # 4 KiB chunks, looking for an answer after each
        piece = body[i:i + 4096]
        try:
          s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
          break
        if select.select([s], [], [], 0.02)[0]:
          break
      started = time.monotonic()
      data = recv_until_closed(s)
      self.assertLess(time.monotonic() - started, deadline(4), "connection neither answered "
                      "nor closed")
    responses = parse_responses(data)
    if responses:
      self.assertEqual(responses[0][0], 413)
      self.assertIn("detail", json.loads(responses[0][2]))
    self.assertEqual(self.cluster.config_of("0203"), before)
    self.assertEqual(self.svc.get("/health").status, 200)

  def test_body_under_max_body(self):
    new = {"enabled": True, "blob": "y" * 30000}
    r = self.svc.put("/config/0203/uon", new)
    self.assertJsonResponse(r, 200)
    self.assertEqual(self.cluster.config_of("0203")["uon"], new)


if __name__ == "__main__":
  unittest.main()
