"""Customer look-ups (SPEC §7, issue 3): routed to the enterprise's primary CRM (`smart.primary`,
default retailcrm) with the exact downstream path and query, the response shapes, caching per
(enterprise, phone) including "not found", ?nocache=true, one downstream call for concurrent
identical look-ups, failures answered with nulls and not cached, the enterprise's own mapping
winning for responsible-extension, invalidation. Real binary, real PostgreSQL, HTTP stand-ins
(standins.py) for the three CRM services.

One service and one set of stand-ins for the class; every test uses its own phone numbers, so the
look-up cache carries nothing from one test to another.
"""

import itertools
import random
import threading
import time
import unittest
import urllib.parse

from harness import deadline, insert_sql, wait_until
from standins import StandInTestCase

R_PROFILE = "/internal/retailcrm/customer-profile"
R_RESP = "/internal/retailcrm/responsible-extension"
M_NAME = "/internal/ms/customer-name"
M_DEBUG = "/internal/ms/customer-debug"
M_RESP = "/internal/ms/responsible-extension"
U_BY_PHONE = "/internal/uon/customer-by-phone"
U_RESP = "/internal/uon/responsible-extension"

NULL_PROFILE = {"last_name": None, "first_name": None, "middle_name": None,
                "enterprise_name": None}

CONFIGS = {
  # no smart section: retailcrm answers
  "0401": {"retailcrm": {"enabled": True, "domain": "https://t.retailcrm.example",
                         "api_key": "test-k", "user_extensions": {"19": "150", "18": "151"}},
           "ms": {"enabled": True, "employee_mapping": {"158": {"employee_id": "19"}}},
           "uon": {"enabled": True, "user_extensions": {"19": "159"}}},
  "0402": {"ms": {"enabled": True, "api_token": "test-t",
                  "employee_mapping": {"151": {"name": "Ivanov I.", "employee_id": "e-151"},
                                       "152": {"name": "Petrov P.", "employee_id": "e-152"}}},
           "retailcrm": {"enabled": True, "user_extensions": {"e-151": "199"}},
           "smart": {"primary": "ms", "mode": "routing+name", "lines": {}}},
  "0403": {"uon": {"enabled": True, "api_key": "test-u", "user_extensions": {"42": "152"}},
           "retailcrm": {"enabled": True},
           "smart": {"primary": "uon", "mode": "name", "lines": {}}},
  "0404": {"retailcrm": {"enabled": True, "user_extensions": {"19": "150"}},
           "ms": {"enabled": True},
           "smart": {"primary": "retailcrm", "mode": "name", "lines": {}}},
  "0405": {"retailcrm": {"enabled": True}, "ms": {"enabled": True},
           "smart": {"primary": "retailcrm", "mode": "name", "lines": {}}},
}

_seq = itertools.count(1)
_base = random.randint(0, 999)


def new_number():
  """A distinct external number (digits only) per look-up."""
  return "7901%03d%04d" % (_base, next(_seq))


def by_phone(phone):
  return lambda r: r.query.get("phone") == phone


class LookupTest(StandInTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reset_enterprises("".join(insert_sql(n, c) for n, c in CONFIGS.items()))
    cls.start_standins()
    cls.svc = cls.start_class_service(*cls.crm.args(), "--lookup-timeout", "1")


  # -- helpers --

  def on(self, standin, path, phone, body, status=200, delay=0.0):
    """`standin` answers GET path?phone=<phone>... with body."""
    if delay:
      return standin.delay(delay, path=path, where=by_phone(phone), status=status, body=body)
    return standin.respond(body, path=path, status=status, where=by_phone(phone))

  def downstream(self, standin, path, phone):
    return standin.requests(path, where=by_phone(phone))

  def everything_for(self, phone):
    """Every request any stand-in received for this phone (normalised or not)."""
    return [r for s in self.crm.all() for r in s.requests()
            if phone.lstrip("+") in r.query.get("phone", "") or
            phone.lstrip("+") in r.query_string]

  def lookup(self, route, ent, phone, nocache=False, status=200, timeout=10):
    path = "/%s/%s/%s" % (route, ent, urllib.parse.quote(phone, safe="+"))
    if nocache:
      path += "?nocache=true"
    r = self.svc.get(path, timeout=timeout)
    self.assertJsonResponse(r, status)
    return r.body

  def name(self, ent, phone, **kw):
    body = self.lookup("customer-name", ent, phone, **kw)
    self.assertEqual(set(body), {"name"}, body)
    return body["name"]

  def profile(self, ent, phone, **kw):
    body = self.lookup("customer-profile", ent, phone, **kw)
    self.assertEqual(set(body), set(NULL_PROFILE), body)
    return body

  def extension(self, ent, phone, **kw):
    body = self.lookup("responsible-extension", ent, phone, **kw)
    self.assertEqual(set(body), {"extension"}, body)
    return body["extension"]

  def assertOnlyRequest(self, standin, path, phone, query):
    """Exactly one downstream GET to path with exactly this query, and nothing for this phone
    anywhere else."""
    reqs = self.downstream(standin, path, phone)
    self.assertEqual(len(reqs), 1, reqs)
    self.assertEqual(reqs[0].method, "GET")
    self.assertEqual(reqs[0].query, query)
    others = [r for r in self.everything_for(phone) if r is not reqs[0]]
    self.assertEqual(others, [], "requests elsewhere for %s" % phone)

  # ---- retailcrm primary (default, and explicit) ----

  def test_retailcrm_customer_name(self):
    cases = [
      ({"last_name": "Ivanov", "first_name": "Ivan", "middle_name": "Ivanovich",
        "enterprise_name": "OOO Romashka"}, "OOO Romashka"),
      ({"last_name": "Ivanov", "first_name": "Ivan", "middle_name": "Ivanovich",
        "enterprise_name": None}, "Ivanov Ivan Ivanovich"),
      ({"last_name": "Ivanov", "first_name": "Ivan", "middle_name": "Ivanovich",
        "enterprise_name": ""}, "Ivanov Ivan Ivanovich"),
      ({"last_name": "Petrov", "first_name": "Petr", "middle_name": None,
        "enterprise_name": None}, "Petrov Petr"),
      (NULL_PROFILE, None),
      ({}, None),
    ]
    for ent in ("0401", "0404"):
      for downstream, expected in cases:
        with self.subTest(ent=ent, downstream=downstream):
          number = new_number()
          self.on(self.crm.retailcrm, R_PROFILE, "+" + number, downstream)
          self.assertEqual(self.name(ent, number), expected)
          self.assertOnlyRequest(self.crm.retailcrm, R_PROFILE, "+" + number,
                                 {"phone": "+" + number})

  def test_retailcrm_customer_profile(self):
    number = new_number()
    full = {"last_name": "Ivanov", "first_name": "Ivan", "middle_name": "Ivanovich",
            "enterprise_name": "OOO Romashka"}
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, full)
    self.assertEqual(self.profile("0401", number), full)
    self.assertOnlyRequest(self.crm.retailcrm, R_PROFILE, "+" + number, {"phone": "+" + number})
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"first_name": "Ivan"})
    self.assertEqual(self.profile("0401", number), dict(NULL_PROFILE, first_name="Ivan"))

  def test_retailcrm_responsible_extension(self):
    cases = [
      ({"extension": "170", "manager_id": "19"}, "150"),  # the enterprise's mapping wins
      ({"extension": "170", "manager_id": 18}, "151"),  # RetailCRM ids are JSON numbers
      ({"extension": "171", "manager_id": "77"}, "171"),  # not mapped: the downstream's
      ({"extension": "172", "manager_id": None}, "172"),
      ({"extension": "abc", "manager_id": None}, None),  # only all-digit extensions
      ({"extension": None, "manager_id": None}, None),
      ({}, None),
    ]
    for downstream, expected in cases:
      with self.subTest(downstream=downstream):
        number = new_number()
        self.on(self.crm.retailcrm, R_RESP, "+" + number, downstream)
        self.assertEqual(self.extension("0401", number), expected)
        self.assertOnlyRequest(self.crm.retailcrm, R_RESP, "+" + number,
                               {"phone": "+" + number, "enterprise_number": "0401"})

  # ---- ms primary ----

  def test_ms_customer_name(self):
    for downstream, expected in (({"name": "Petrov P."}, "Petrov P."), ({"name": None}, None)):
      with self.subTest(downstream=downstream):
        number = new_number()
        self.on(self.crm.ms, M_NAME, "+" + number, downstream)
        self.assertEqual(self.name("0402", number), expected)
        self.assertOnlyRequest(self.crm.ms, M_NAME, "+" + number,
                               {"phone": "+" + number, "enterprise_number": "0402"})

  def test_ms_customer_profile(self):
    number = new_number()
    self.on(self.crm.ms, M_DEBUG, "+" + number, {"counterparty": {"name": "OOO Vector",
                                                                 "id": "c-1"}})
    self.assertEqual(self.profile("0402", number),
                     dict(NULL_PROFILE, last_name="OOO Vector", enterprise_name="OOO Vector"))
    self.assertOnlyRequest(self.crm.ms, M_DEBUG, "+" + number,
                           {"phone": "+" + number, "enterprise_number": "0402"})
    number = new_number()
    self.on(self.crm.ms, M_DEBUG, "+" + number, {"counterparty": None})
    self.assertEqual(self.profile("0402", number), NULL_PROFILE)

  def test_ms_responsible_extension(self):
    cases = [
      ({"extension": "153", "manager_id": "e-151"}, "151"),  # employee_mapping inverted
      ({"extension": "153", "manager_id": "e-152"}, "152"),
      ({"extension": "153", "manager_id": "e-999"}, "153"),
      ({"extension": "x153", "manager_id": "e-999"}, None),
    ]
    for downstream, expected in cases:
      with self.subTest(downstream=downstream):
        number = new_number()
        self.on(self.crm.ms, M_RESP, "+" + number, downstream)
        self.assertEqual(self.extension("0402", number), expected)
        self.assertOnlyRequest(self.crm.ms, M_RESP, "+" + number,
                               {"phone": "+" + number, "enterprise_number": "0402"})

  # ---- uon primary ----

  def test_uon_customer_name_and_profile(self):
    number = new_number()
    self.on(self.crm.uon, U_BY_PHONE, "+" + number,
            {"found": True, "profile": {"display_name": "Sidorov Sergey", "id": 5}})
    self.assertEqual(self.name("0403", number), "Sidorov Sergey")
    self.assertOnlyRequest(self.crm.uon, U_BY_PHONE, "+" + number,
                           {"phone": "+" + number, "enterprise_number": "0403"})
    number = new_number()
    self.on(self.crm.uon, U_BY_PHONE, "+" + number,
            {"found": True, "profile": {"display_name": "Sidorov Sergey", "id": 5}})
    self.assertEqual(self.profile("0403", number),
                     dict(NULL_PROFILE, last_name="Sidorov", first_name="Sergey"))
    self.assertOnlyRequest(self.crm.uon, U_BY_PHONE, "+" + number,
                           {"phone": "+" + number, "enterprise_number": "0403"})
    number = new_number()
    self.on(self.crm.uon, U_BY_PHONE, "+" + number, {"found": False, "profile": None})
    self.assertIsNone(self.name("0403", number))

  def test_uon_responsible_extension(self):
    cases = [
      ({"extension": "160", "manager_id": "42"}, "152"),  # uon.user_extensions wins
      ({"extension": "160", "manager_id": 42}, "152"),
      ({"extension": "161", "manager_id": "43"}, "161"),
    ]
    for downstream, expected in cases:
      with self.subTest(downstream=downstream):
        number = new_number()
        self.on(self.crm.uon, U_RESP, "+" + number, downstream)
        self.assertEqual(self.extension("0403", number), expected)
        self.assertOnlyRequest(self.crm.uon, U_RESP, "+" + number, {"phone": "+" + number})

  # ---- phones and paths ----

  def test_phone_forms(self):
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Plus"})
    self.assertEqual(self.name("0401", "+" + number), "OOO Plus")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)
    # the same number without the plus is the same (normalised) phone: cached
    self.assertEqual(self.name("0401", number), "OOO Plus")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)
    # spaces, dashes and parentheses are allowed characters
    body = self.lookup("customer-name", "0401", "+7 (901) 000-00-00")
    self.assertEqual(set(body), {"name"})

  def test_invalid_path_parameters(self):
    for phone in ("abc", "7901x", "1" * 33, "%ZZ", "%2F123", "12;3"):
      with self.subTest(phone=phone):
        for route in ("customer-name", "customer-profile", "responsible-extension"):
          self.assertDetail(self.svc.get("/%s/0401/%s" % (route, phone)), 400, "invalid phone")
    for ent in ("bad.number", "a" * 33, "%ZZ"):
      with self.subTest(ent=ent):
        self.assertDetail(self.svc.get("/customer-name/%s/79010000000" % ent), 400,
                          "invalid enterprise_number")
    self.assertDetail(self.svc.post("/customer-name/0401/79010000000"), 405,
                      "Method Not Allowed")
    self.assertEqual(self.svc.get("/customer-name/0401/79010000000/").status, 404)

  def test_unknown_enterprise_answers_nulls(self):
    number = new_number()
    for standin, path in ((self.crm.retailcrm, R_PROFILE), (self.crm.retailcrm, R_RESP),
                          (self.crm.ms, M_NAME), (self.crm.uon, U_BY_PHONE)):
      self.on(standin, path, "+" + number, {"enterprise_name": "Somebody Else",
                                            "name": "Somebody Else", "extension": "150",
                                            "manager_id": "19"})
    for ent in ("9999", "0499"):
      with self.subTest(ent=ent):
        self.assertIsNone(self.name(ent, number))
        self.assertEqual(self.profile(ent, number), NULL_PROFILE)
        self.assertIsNone(self.extension(ent, number))

  # ---- caching ----

  def test_cached_including_not_found(self):
    found, missing = new_number(), new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + found, {"enterprise_name": "OOO Cached"})
    self.on(self.crm.retailcrm, R_PROFILE, "+" + missing, NULL_PROFILE)
    for _ in range(3):
      self.assertEqual(self.name("0401", found), "OOO Cached")
      self.assertIsNone(self.name("0401", missing))
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + found)), 1)
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + missing)), 1,
                     "a 'not found' is cached too")
    # per enterprise: another enterprise asks again
    self.assertEqual(self.name("0404", found), "OOO Cached")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + found)), 2)
    # the other routes cache as well
    self.on(self.crm.ms, M_RESP, "+" + found, {"extension": "153", "manager_id": "e-151"})
    self.assertEqual(self.extension("0402", found), "151")
    self.assertEqual(self.extension("0402", found), "151")
    self.assertEqual(len(self.downstream(self.crm.ms, M_RESP, "+" + found)), 1)
    self.on(self.crm.ms, M_DEBUG, "+" + found, {"counterparty": {"name": "OOO Vector"}})
    self.assertEqual(self.profile("0402", found)["enterprise_name"], "OOO Vector")
    self.assertEqual(self.profile("0402", found)["enterprise_name"], "OOO Vector")
    self.assertEqual(len(self.downstream(self.crm.ms, M_DEBUG, "+" + found)), 1)

  def test_nocache_refreshes(self):
    number = new_number()
    first = self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "Old Name"})
    self.assertEqual(self.name("0401", number), "Old Name")
    self.crm.retailcrm.remove(first)
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "New Name"})
    self.assertEqual(self.name("0401", number), "Old Name", "cached")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)
    self.assertEqual(self.name("0401", number, nocache=True), "New Name")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 2)
    self.assertEqual(self.name("0401", number), "New Name", "nocache refreshed the cache")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 2)
    # likewise on the other routes
    self.on(self.crm.retailcrm, R_RESP, "+" + number, {"extension": "171", "manager_id": None})
    self.assertEqual(self.extension("0401", number), "171")
    self.assertEqual(self.extension("0401", number, nocache=True), "171")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_RESP, "+" + number)), 2)

  def test_failure_answers_nulls_and_is_not_cached(self):
    for status in (500, 503):
      with self.subTest(status=status):
        number = new_number()
        rule = self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"detail": "boom"},
                       status=status)
        self.assertIsNone(self.name("0401", number))
        first = len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number))
        self.assertIn(first, (1, 2), "at most 2 attempts")
        self.assertEqual(self.profile("0401", number), NULL_PROFILE)
        self.crm.retailcrm.remove(rule)
        self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "Back Again"})
        self.assertEqual(self.name("0401", number), "Back Again",
                         "a failure must not be cached")
    number = new_number()
    rule = self.on(self.crm.ms, M_RESP, "+" + number, {"detail": "boom"}, status=500)
    self.assertIsNone(self.extension("0402", number))
    self.crm.ms.remove(rule)
    self.on(self.crm.ms, M_RESP, "+" + number, {"extension": "153", "manager_id": "e-152"})
    self.assertEqual(self.extension("0402", number), "152")

  def test_one_failure_then_the_second_attempt_answers(self):
    # "at most 2 attempts": a single 5xx is tried once more within the deadline
    number = new_number()
    self.on(self.crm.uon, U_BY_PHONE, "+" + number, {"profile": {"display_name": "Retry Ok"}})
    self.crm.uon.fail(1, 500, path=U_BY_PHONE, where=by_phone("+" + number))
    self.assertEqual(self.name("0403", number), "Retry Ok")
    self.assertEqual(len(self.downstream(self.crm.uon, U_BY_PHONE, "+" + number)), 2)

  def test_standin_down_answers_nulls_quickly_and_is_not_cached(self):
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Up"})
    self.crm.retailcrm.stop()
    self.addCleanup(self.crm.retailcrm.start)
    t0 = time.monotonic()
    self.assertIsNone(self.name("0401", number))
    self.assertEqual(self.profile("0401", number), NULL_PROFILE)
    self.assertIsNone(self.extension("0401", number))
    self.assertLess(time.monotonic() - t0, deadline(3), "a refused connection is no timeout")
    self.crm.retailcrm.start()
    self.assertEqual(self.name("0401", number), "OOO Up")

  def test_slow_downstream_times_out_with_nulls(self):
    number = new_number()
    rule = self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "Too Late"},
                   delay=10)
    t0 = time.monotonic()
    self.assertIsNone(self.name("0401", number, timeout=20))
    elapsed = time.monotonic() - t0
    # --lookup-timeout 1 (and at most 2 attempts)
    self.assertLess(elapsed, deadline(2.5), "look-up deadline not kept")
    self.assertGreaterEqual(elapsed, 0.8, "answered before the deadline: %.2fs" % elapsed)
    self.crm.retailcrm.remove(rule)
    self.crm.retailcrm.release()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "In Time"})
    self.assertEqual(self.name("0401", number), "In Time", "a timeout must not be cached")

  def test_concurrent_identical_lookups_share_one_call(self):
    number = new_number()
    # long enough for all ten to arrive while the call is out, well inside --lookup-timeout 1
    # (not scaled for sanitizer builds: the stand-in is not the one that slows down)
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Shared"},
            delay=0.4)
    results = []
    barrier = threading.Barrier(10)

    def ask():
      barrier.wait()
      r = self.svc.get("/customer-name/0401/%s" % number)
      results.append((r.status, r.body))

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(deadline(20))
    self.assertEqual(results, [(200, {"name": "OOO Shared"})] * 10)
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)

  def test_invalidate_drops_lookups(self):
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Inval"})
    self.on(self.crm.ms, M_NAME, "+" + number, {"name": "Ms Inval"})
    self.assertEqual(self.name("0401", number), "OOO Inval")
    self.assertEqual(self.name("0402", number), "Ms Inval")
    self.assertEqual(self.name("0401", number), "OOO Inval")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)
    r = self.svc.post("/cache/invalidate/0401")
    self.assertJsonResponse(r, 200, {"message": "Cache invalidated for enterprise 0401"})
    self.assertEqual(self.name("0401", number), "OOO Inval")
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 2)
    # only that enterprise's look-ups went
    self.assertEqual(self.name("0402", number), "Ms Inval")
    self.assertEqual(len(self.downstream(self.crm.ms, M_NAME, "+" + number)), 1)

  def test_config_change_switches_primary_and_drops_lookups(self):
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "From RetailCRM"})
    self.on(self.crm.ms, M_NAME, "+" + number, {"name": "From MS"})
    self.assertEqual(self.name("0405", number), "From RetailCRM")
    self.cluster.psql("UPDATE enterprises SET integrations_config = jsonb_set("
                      "integrations_config, '{smart,primary}', '\"ms\"') WHERE number = '0405'")
    wait_until(lambda: self.svc.get("/config/0405/smart").body["config"]["primary"] == "ms", 5,
               message="the change is served")
    self.assertEqual(self.name("0405", number), "From MS")
    reqs = self.downstream(self.crm.ms, M_NAME, "+" + number)
    self.assertEqual([r.query for r in reqs],
                     [{"phone": "+" + number, "enterprise_number": "0405"}])
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)

  def test_lookup_stats(self):
    before = self.svc.stats()
    for key in ("lookup_hits", "lookup_misses", "lookup_failures"):
      self.assertIsInstance(before[key], int, key)
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Stats"})
    self.name("0401", number)
    self.name("0401", number)
    self.name("0401", number)
    failing = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + failing, {"detail": "x"}, status=500)
    self.name("0401", failing)
    after = self.svc.stats()
    self.assertEqual(after["lookup_misses"] - before["lookup_misses"], 2)
    self.assertEqual(after["lookup_hits"] - before["lookup_hits"], 2)
    self.assertEqual(after["lookup_failures"] - before["lookup_failures"], 1)

  def test_lookup_ttl(self):
    svc = self.start_service(*self.crm.args(), "--lookup-ttl", "1")
    number = new_number()
    self.on(self.crm.retailcrm, R_PROFILE, "+" + number, {"enterprise_name": "OOO Ttl"})
    path = "/customer-name/0401/%s" % number
    self.assertEqual(svc.get(path).body, {"name": "OOO Ttl"})
    self.assertEqual(svc.get(path).body, {"name": "OOO Ttl"})
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 1)
    time.sleep(1.5)
    self.assertEqual(svc.get(path).body, {"name": "OOO Ttl"})
    self.assertEqual(len(self.downstream(self.crm.retailcrm, R_PROFILE, "+" + number)), 2)


if __name__ == "__main__":
  unittest.main()
