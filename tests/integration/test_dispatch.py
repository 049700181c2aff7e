"""Call-event dispatch (SPEC §6, issue 3, docs/CONTRACT-dev.md "Dispatch and look-ups") against
the real binary, a real PostgreSQL and HTTP stand-ins for retailcrm, uon and ms (standins.py).

DispatchTest shares one service and one set of stand-ins per class: every test uses its own
uniqueIds and phones, so what other tests left in flight cannot be mistaken for its own requests.
DispatchDeliveryTest starts a service per test (fresh counters, an emptied outbox) for the tests
that stop stand-ins, kill the service or stop PostgreSQL. SipUnitTest has a `sip_unit` table
(§6.4), which must not exist for the others.
"""

import itertools
import json
import os
import random
import shutil
import tempfile
import threading
import time
import unittest

from harness import deadline, insert_sql, is_number, wait_until
from standins import StandInTestCase, wait_for

R_PATH = "/internal/retailcrm/call-event"
U_DIAL = "/internal/uon/notify-incoming"
U_HANGUP = "/internal/uon/log-call"
M_DIAL = "/internal/ms/incoming-call"
M_HANGUP = "/internal/ms/hangup-call"
M_RECOVERY = "/internal/ms/recovery-call"
DISPATCH = "/dispatch/call-event"

ALL3 = {
  "retailcrm": {"enabled": True, "domain": "https://t.retailcrm.example", "api_key": "test-k",
                "user_extensions": {"19": "150"}},
  "uon": {"enabled": "true", "api_key": "test-u", "user_extensions": {"42": "152"}},
  "ms": {"enabled": 1, "api_token": "test-t",
         "employee_mapping": {"151": {"name": "Ivanov I.", "employee_id": "e-151"}}},
  "smart": {"primary": "retailcrm", "mode": "name", "lines": {}},
}
ONLY_RETAILCRM = {"retailcrm": {"enabled": True}, "uon": {"enabled": "false"},
                  "ms": {"enabled": 0}, "bitrix24": {"enabled": True}}
RETAILCRM_MS = {"retailcrm": {"enabled": True}, "ms": {"enabled": True},
                "uon": {"enabled": False}}

START = "2025-09-18 14:57:28"
END = "2025-09-18 14:59:03"  # 95 s later
RECORD = "https://records.example/2025/09/18/call.mp3"

# Seconds; the delivery timeout is stretched for sanitizer builds like every other deadline.
DELIVERY_TIMEOUT = deadline(1)
FAST = {"--retry-min": "0.1", "--retry-max": "0.5", "--dispatch-poll": "0.1",
        "--delivery-timeout": str(DELIVERY_TIMEOUT), "--breaker-cooldown": "1"}
# how long to keep watching for a request that must NOT come (retries are due within 0.5 s)
QUIET = 1.5

_seq = itertools.count(1)
_base = 1758200000 + random.randint(0, 99999)


def new_uid():
  return "%d.%d" % (_base, next(_seq))


def new_phone():
  """A distinct 11-digit external number per call, so uon requests (which carry no uniqueId)
  can be told apart."""
  return "7900%07d" % (next(_seq) * 7 + random.randint(0, 6))


def raw_in(uid, phone, ext="150", hangup=False, **changes):
  """An incoming call's Asterisk event; `changes` set members (None removes one)."""
  raw = {"UniqueId": uid, "Phone": phone, "CallerIDNum": phone, "ConnectedLineNum": ext,
         "Extensions": [ext], "CallType": 0, "Trunk": "0001363", "StartTime": START}
  if hangup:
    raw.update({"EndTime": END, "CallStatus": 2, "InternalCode": ext})
  for key, value in changes.items():
    if value is None:
      raw.pop(key, None)
    else:
      raw[key] = value
  return raw


def event(uid, event_type, raw, token="tok-0201", **extra):
  body = {"token": token, "uniqueId": uid, "event_type": event_type, "raw": raw}
  body.update(extra)
  return body


def args_of(standins, **overrides):
  """Service flags: stand-in URLs plus FAST, with overrides given as flag_name="value"."""
  settings = dict(FAST)
  for key, value in overrides.items():
    settings["--" + key.replace("_", "-")] = str(value)
  out = standins.args()
  for flag, value in settings.items():
    out += [flag, value]
  return out


class DispatchCase(StandInTestCase):
  """Shared assertions and helpers; `cls.crm` holds the stand-ins."""


  def post_event(self, svc, body, path=DISPATCH, timeout=10):
    return svc.post(path, body, timeout=timeout)

  def accept(self, svc, body, targets=None, path=DISPATCH):
    """Posts an event that must be accepted; returns the response body."""
    r = self.post_event(svc, body, path)
    self.assertJsonResponse(r, 200)
    self.assertEqual(set(r.body), {"success", "event_id", "targets"}, r.body)
    self.assertIs(r.body["success"], True)
    self.assertIsInstance(r.body["event_id"], str)
    self.assertTrue(r.body["event_id"])
    self.assertIsInstance(r.body["targets"], list)
    self.assertEqual(len(r.body["targets"]), len(set(r.body["targets"])), r.body)
    if targets is not None:
      self.assertEqual(sorted(r.body["targets"]), sorted(targets))
    return r.body

  def assertPayload(self, body, expected, unset=()):
    """The exact member set of a delivered JSON body and its values; members in `unset` were
    not given in the event and must be null (or empty)."""
    self.assertIsInstance(body, dict)
    self.assertEqual(set(body), set(expected) | set(unset), body)
    for key, value in expected.items():
      self.assertEqual(body[key], value, "member %r of %r" % (key, body))
    for key in unset:
      self.assertIn(body[key], (None, ""), "member %r of %r" % (key, body))

  def delivered(self, standin, path, n=1, timeout=10, **match):
    """Until n requests to path matching the body members were answered 200; returns them."""
    return standin.wait_for_requests(n, path, timeout=timeout, status=200, **match)

  def assertQuiet(self, standin, path, expected, seconds=QUIET, **match):
    """No more than `expected` matching requests arrive during `seconds` (no retry, no copy)."""
    time.sleep(seconds)
    reqs = standin.requests(path, **match)
    self.assertEqual(len(reqs), expected, reqs)
    return reqs


# ================================================================================================

class DispatchTest(DispatchCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reset_enterprises("".join([
      insert_sql("0201", ALL3, name2="tok-0201", secret="sec-0201"),
      insert_sql("0202", ONLY_RETAILCRM, name2="tok-0202", secret="sec-0202"),
      insert_sql("0203", RETAILCRM_MS, name2="", secret="sec-0203"),
      insert_sql("0204", ALL3, active=False, name2="tok-0204", secret="sec-0204"),
      insert_sql("0205", None, name2="tok-0205", secret="sec-0205"),
      insert_sql("0206", {"retailcrm": {"enabled": True}, "ms": {"enabled": False}},
                 name2="tok-0206", secret="sec-0206"),
    ]))
    cls.start_standins()
    cls.spool = tempfile.mkdtemp(prefix="ic-test-spool-")
    cls.addClassCleanup(shutil.rmtree, cls.spool, True)
    cls.svc = cls.start_class_service(*args_of(cls.crm, breaker_failures=20),
                                      env={"IC_SPOOL_DIR": cls.spool})

  # ---- responses ----

  def test_accepted_response(self):
    uid = new_uid()
    before_ms = int(time.time() * 1000)
    body = self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone())),
                       targets=["retailcrm", "uon", "ms"])
    uid2 = new_uid()
    body2 = self.accept(self.svc, event(uid2, "dial", raw_in(uid2, new_phone())),
                        path=DISPATCH + "/", targets=["retailcrm", "uon", "ms"])
    self.assertNotEqual(body["event_id"], body2["event_id"])
    # 32 hex digits, the first 12 the acceptance time in ms (ids grow with time, as in a UUIDv7)
    for b in (body, body2):
      self.assertRegex(b["event_id"], "^[0-9a-f]{32}$")
    first, second = (int(b["event_id"][:12], 16) for b in (body, body2))
    self.assertLessEqual(before_ms - 1, first)
    self.assertLessEqual(first, second)
    self.assertLessEqual(second, int(time.time() * 1000) + 1)
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid2)

  def test_invalid_payloads(self):
    uid = new_uid()
    good = event(uid, "dial", raw_in(uid, new_phone()))
    cases = {
      "not json": b"this is not json",
      "empty body": b"",
      "truncated json": json.dumps(good)[:-3].encode(),
      "json array": b"[1, 2]",
      "json null": b"null",
      "no token": {k: v for k, v in good.items() if k != "token"},
      "no uniqueId": {k: v for k, v in good.items() if k != "uniqueId"},
      "no event_type": {k: v for k, v in good.items() if k != "event_type"},
      "event_type bridge": dict(good, event_type="bridge"),
      "event_type Dial": dict(good, event_type="Dial"),
    }
    for name, body in cases.items():
      with self.subTest(case=name):
        headers = {"Content-Type": "application/json"}
        r = self.svc.post(DISPATCH, body, headers=headers)
        self.assertDetail(r, 400, "invalid payload")
    # none of them was taken: the good one is still new
    self.accept(self.svc, good)

  def test_wrong_method(self):
    self.assertDetail(self.svc.get(DISPATCH), 405, "Method Not Allowed")

  def test_unknown_token(self):
    uid = new_uid()
    r = self.post_event(self.svc, event(uid, "dial", raw_in(uid, new_phone()),
                                        token="no-such-token"))
    self.assertDetail(r, 404, "enterprise not found by token")
    # a refused event is not remembered for dedup: the same uniqueId with a good token is new
    self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone())))

  def test_not_served_enterprise(self):
    # SPEC §6: a token that belongs to an enterprise that is not served (inactive, or NULL
    # config) answers "Enterprise not found", not "... by token"
    for token in ("tok-0204", "sec-0204", "0204", "tok-0205", "0205"):
      with self.subTest(token=token):
        uid = new_uid()
        phone = new_phone()
        r = self.post_event(self.svc, event(uid, "dial", raw_in(uid, phone), token=token))
        self.assertDetail(r, 404, "Enterprise not found")
        time.sleep(0.3)
        self.assertEqual(self.crm.retailcrm.requests(R_PATH, uniqueId=uid), [])
        self.assertEqual(self.crm.uon.requests(U_DIAL, phone="+" + phone), [])

  def test_empty_token_matches_no_enterprise(self):
    # 0203 has an empty name2: an empty token must not find it (nor anything else)
    uid = new_uid()
    r = self.post_event(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token=""))
    self.assertIn(r.status, (400, 404), r.body)
    self.assertIn(r.body, ({"detail": "invalid payload"},
                           {"detail": "enterprise not found by token"}))
    time.sleep(0.3)
    self.assertEqual(self.crm.retailcrm.requests(R_PATH, uniqueId=uid), [])

  # ---- tokens ----

  def test_token_by_name2_secret_number(self):
    for token in ("tok-0201", "sec-0201", "0201"):
      with self.subTest(token=token):
        uid = new_uid()
        self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token=token),
                    targets=["retailcrm", "uon", "ms"])
        req = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)[0]
        self.assertEqual(req.body["token"], "tok-0201", "retailcrm gets the name2")
        req = self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0]
        self.assertEqual(req.body["enterprise_number"], "0201")

  def test_retailcrm_token_without_name2(self):
    for token in ("0203", "sec-0203"):
      with self.subTest(token=token):
        uid = new_uid()
        self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token=token),
                    targets=["retailcrm", "ms"])
        req = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)[0]
        self.assertEqual(req.body["token"], token, "name2 empty: the request's token")

  # ---- targets ----

  def test_disabled_integrations_get_nothing(self):
    uid = new_uid()
    phone = new_phone()
    self.accept(self.svc, event(uid, "dial", raw_in(uid, phone), token="tok-0202"),
                targets=["retailcrm"])
    self.accept(self.svc, event(uid, "hangup", raw_in(uid, phone, hangup=True),
                                token="tok-0202"), targets=["retailcrm"])
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="hangup")
    time.sleep(QUIET)
    for standin in (self.crm.uon, self.crm.ms):
      self.assertEqual(standin.requests(where={"enterprise_number": "0202"}), [], standin.name)
      self.assertEqual(standin.requests(where={"unique_id": uid}), [], standin.name)

  def test_enabling_an_integration_at_runtime(self):
    uid = new_uid()
    self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token="tok-0206"),
                targets=["retailcrm"])
    self.cluster.psql("UPDATE enterprises SET integrations_config = "
                      "jsonb_set(integrations_config, '{ms,enabled}', 'true') "
                      "WHERE number = '0206'")
    wait_until(lambda: self.svc.get("/integrations/0206").body["integrations"]["ms"] is True, 5,
               message="the change is served")
    uid = new_uid()
    self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token="tok-0206"),
                targets=["retailcrm", "ms"])
    req = self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0]
    self.assertEqual(req.body["enterprise_number"], "0206")

  # ---- what each target receives (§6.1) ----

  def test_retailcrm_dial(self):
    uid = new_uid()
    raw = raw_in(uid, new_phone())
    self.accept(self.svc, event(uid, "dial", raw))
    reqs = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)
    self.assertEqual(reqs[0].method, "POST")
    self.assertTrue(reqs[0].headers.get("content-type", "").startswith("application/json"))
    self.assertPayload(reqs[0].body, {"token": "tok-0201", "uniqueId": uid, "event_type": "dial",
                                      "raw": raw}, unset=["record_url"])
    self.assertQuiet(self.crm.retailcrm, R_PATH, 1, uniqueId=uid)

  def test_raw_passed_through_intact(self):
    # what the platform puts in raw arrives as it was: other members, nesting, UTF-8, escapes
    uid = new_uid()
    raw = raw_in(uid, new_phone(), CallerIDName="Иванов Иван \U0001F4DE",
                 Note='quote " backslash \\ tab \t newline \n', Nested={"a": [1, 2.5, None,
                 True, {"b": "c"}]}, Big=9007199254740991, Empty={}, EmptyList=[])
    self.accept(self.svc, event(uid, "dial", raw))
    self.assertEqual(self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)[0].body["raw"],
                     raw)
    self.assertEqual(self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0].body["raw"], raw)

  def test_retailcrm_hangup_after_dial_gets_internal_code(self):
    cases = [
      # (what the hangup's raw has, the InternalCode retailcrm must receive)
      ({"CallerIDNum": None, "Extensions": ["151", "152"], "ConnectedLineNum": "153",
        "InternalCode": None}, "151"),
      ({"Extensions": ["79001112233", "154"], "ConnectedLineNum": "153",
        "InternalCode": None}, "154"),
      ({"Extensions": [], "ConnectedLineNum": "153", "InternalCode": None}, "153"),
      ({"CallType": 1, "CallerIDNum": "150", "Extensions": ["151"], "InternalCode": None}, "150"),
      ({"InternalCode": "155"}, "155"),
    ]
    for changes, code in cases:
      with self.subTest(changes=changes):
        uid = new_uid()
        phone = new_phone()
        dial = raw_in(uid, phone)
        self.accept(self.svc, event(uid, "dial", dial))
        self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)
        hangup = raw_in(uid, phone, hangup=True, **changes)
        self.accept(self.svc, event(uid, "hangup", hangup, record_url=RECORD))
        req = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="hangup")[0]
        expected_raw = dict(hangup, InternalCode=code)
        self.assertPayload(req.body, {"token": "tok-0201", "uniqueId": uid,
                                      "event_type": "hangup", "raw": expected_raw,
                                      "record_url": RECORD})
        reqs = self.crm.retailcrm.requests(R_PATH, uniqueId=uid)
        self.assertEqual([r.body["event_type"] for r in reqs], ["dial", "hangup"],
                         "the dial was delivered: no synthetic one")

  def test_retailcrm_synthetic_dial_before_hangup(self):
    uid = new_uid()
    raw = raw_in(uid, new_phone(), hangup=True)
    self.accept(self.svc, event(uid, "hangup", raw, record_url=RECORD))
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="hangup")
    reqs = self.crm.retailcrm.requests(R_PATH, uniqueId=uid)
    self.assertEqual([r.body["event_type"] for r in reqs], ["dial", "hangup"], reqs)
    dial = reqs[0]
    self.assertEqual(dial.status, 200)
    self.assertEqual(set(dial.body), {"token", "uniqueId", "event_type", "raw", "record_url"})
    self.assertEqual((dial.body["token"], dial.body["uniqueId"]), ("tok-0201", uid))
    self.assertIsInstance(dial.body["raw"], dict)
    self.assertEqual(dial.body["raw"].get("UniqueId"), uid)
    self.assertLessEqual(dial.answered_at, reqs[1].time, "the hangup came before its dial ended")
    self.assertEqual(reqs[1].body["raw"], raw)
    self.assertQuiet(self.crm.retailcrm, R_PATH, 2, uniqueId=uid)

  def test_download_origin(self):
    # §6.1: no synthetic retailcrm dial, no ms dial, ms hangup goes to recovery-call
    uid = new_uid()
    phone = new_phone()
    dial = raw_in(uid, phone)
    self.accept(self.svc, event(uid, "dial", dial, origin="download"),
                targets=["retailcrm", "uon", "ms"])
    self.delivered(self.crm.uon, U_DIAL, phone="+" + phone)
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="dial")

    uid2 = new_uid()
    phone2 = new_phone()
    hangup = raw_in(uid2, phone2, hangup=True)
    self.accept(self.svc, event(uid2, "hangup", hangup, record_url=RECORD, origin="download"))
    req = self.delivered(self.crm.ms, M_RECOVERY, unique_id=uid2)[0]
    self.assertPayload(req.body, {"enterprise_number": "0201", "phone": "+" + phone2,
                                  "extension": "150", "direction": "in", "event_type": "hangup",
                                  "unique_id": uid2, "raw": hangup, "record_url": RECORD,
                                  "origin": "download"})
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid2, event_type="hangup")
    self.delivered(self.crm.uon, U_HANGUP, phone="+" + phone2)
    time.sleep(QUIET)
    self.assertEqual(self.crm.ms.requests(where={"unique_id": uid}), [],
                     "ms gets no dial for origin download")
    self.assertEqual(self.crm.ms.requests(M_HANGUP, unique_id=uid2), [])
    reqs = self.crm.retailcrm.requests(R_PATH, uniqueId=uid2)
    self.assertEqual([r.body["event_type"] for r in reqs], ["hangup"],
                     "no synthetic dial for origin download")

  def test_uon_dial_and_hangup(self):
    uid = new_uid()
    phone = new_phone()
    self.accept(self.svc, event(uid, "dial", raw_in(uid, phone)))
    req = self.delivered(self.crm.uon, U_DIAL, phone="+" + phone)[0]
    self.assertEqual(req.method, "POST")
    self.assertPayload(req.body, {"enterprise_number": "0201", "phone": "+" + phone,
                                  "extension": "150", "extensions_all": ["150"],
                                  "direction": "in"})
    self.accept(self.svc, event(uid, "hangup", raw_in(uid, phone, hangup=True),
                                record_url=RECORD))
    req = self.delivered(self.crm.uon, U_HANGUP, phone="+" + phone)[0]
    self.assertPayload(req.body, {"enterprise_number": "0201", "phone": "+" + phone,
                                  "extension": "150", "start": START, "duration": 95,
                                  "direction": "in", "call_status": "answered",
                                  "record_url": RECORD})
    self.assertIsInstance(req.body["duration"], int)

  def test_uon_duration_and_call_status(self):
    cases = [
      ({"CallStatus": 2}, 95, "answered"),
      ({"CallStatus": 0}, 95, "missed"),
      ({"CallStatus": 1}, 95, "missed"),
      ({"CallStatus": None}, 95, "missed"),
      ({"CallStatus": 2, "EndTime": "2025-09-18 15:57:28"}, 3600, "answered"),
      ({"CallStatus": 2, "EndTime": START}, 0, "answered"),
      ({"CallStatus": 0, "EndTime": "2025-09-18 14:57:20"}, 0, "missed"),  # before the start
    ]
    for changes, duration, status in cases:
      with self.subTest(changes=changes):
        uid = new_uid()
        phone = new_phone()
        self.accept(self.svc, event(uid, "hangup", raw_in(uid, phone, hangup=True, **changes)))
        req = self.delivered(self.crm.uon, U_HANGUP, phone="+" + phone)[0]
        self.assertEqual((req.body["duration"], req.body["call_status"]), (duration, status))

  def test_ms_dial_and_hangup(self):
    uid = new_uid()
    phone = new_phone()
    dial = raw_in(uid, phone)
    self.accept(self.svc, event(uid, "dial", dial))
    req = self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0]
    self.assertEqual(req.method, "POST")
    self.assertPayload(req.body, {"enterprise_number": "0201", "phone": "+" + phone,
                                  "extension": "150", "direction": "in", "event_type": "dial",
                                  "unique_id": uid, "raw": dial})
    hangup = raw_in(uid, phone, hangup=True)
    self.accept(self.svc, event(uid, "hangup", hangup, record_url=RECORD))
    req = self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)[0]
    self.assertPayload(req.body, {"enterprise_number": "0201", "phone": "+" + phone,
                                  "extension": "150", "direction": "in",
                                  "event_type": "hangup", "unique_id": uid, "raw": hangup,
                                  "record_url": RECORD}, unset=["origin"])
    self.assertEqual(self.crm.ms.requests(M_RECOVERY, unique_id=uid), [])

  def test_direction_and_phone(self):
    p, q, plus = new_phone(), "8" + new_phone()[1:], "+375" + new_phone()[-9:]
    p2, p3, p4, p5, p6, p7 = (new_phone() for _ in range(6))
    cases = [
      # name, raw members, direction, phone
      ("in", {"CallType": 0, "Phone": p, "CallerIDNum": p, "Extensions": ["150"]}, "in", "+" + p),
      ("out", {"CallType": 1, "CallerIDNum": "150", "Phone": p2, "ConnectedLineNum": p2,
               "Extensions": ["150"]}, "out", "+" + p2),
      ("out as string", {"CallType": "1", "CallerIDNum": "150", "Phone": p3,
                         "Extensions": ["150"]}, "out", "+" + p3),
      ("in, Phone empty", {"CallType": "0", "Phone": "", "CallerIDNum": p4,
                           "Extensions": ["150"]}, "in", "+" + p4),
      ("out, only ConnectedLineNum", {"CallType": 1, "Phone": "", "CallerIDNum": "",
                                      "ConnectedLineNum": p5, "Extensions": ["150"]},
       "out", "+" + p5),
      ("internal caller, external in Extensions",
       {"CallType": 2, "CallerIDNum": "150", "Phone": "", "ConnectedLineNum": "",
        "Extensions": [p6]}, "out", "+" + p6),
      ("internal caller, external Phone, no CallType",
       {"CallType": None, "CallerIDNum": "150", "Phone": q, "ConnectedLineNum": "",
        "Extensions": ["151"]}, "out", "+" + q),
      ("external caller, internal extension",
       {"CallType": 2, "CallerIDNum": p7, "Phone": "", "ConnectedLineNum": "",
        "Extensions": ["150"]}, "in", "+" + p7),
      ("internal caller alone",  # "all digits get a +", even an internal number
       {"CallType": 2, "CallerIDNum": "150", "Phone": "", "ConnectedLineNum": "151",
        "Extensions": ["151"]}, "out", "+151"),
      ("plus kept", {"CallType": 0, "Phone": plus, "CallerIDNum": plus,
                     "Extensions": ["150"]}, "in", plus),
      ("not digits: unchanged", {"CallType": 0, "Phone": "anonymous", "CallerIDNum": "anonymous",
                                 "Extensions": ["150"]}, "in", "anonymous"),
    ]
    for name, changes, direction, phone in cases:
      with self.subTest(case=name):
        uid = new_uid()
        raw = raw_in(uid, "0", **changes)
        self.accept(self.svc, event(uid, "dial", raw))
        req = self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0]
        self.assertEqual((req.body["direction"], req.body["phone"]), (direction, phone))
        self.assertEqual(req.body["raw"], raw)
        # uon (no uniqueId in its payload) sees the same direction and phone
        uon = self.crm.uon.wait_for_requests(1, U_DIAL, phone=phone)
        self.assertEqual(uon[-1].body["direction"], direction)

  # ---- guarantees (§6.2) ----

  def test_hangup_never_overtakes_its_dial(self):
    uid = new_uid()
    phone = new_phone()
    self.crm.retailcrm.fail(3, 500, path=R_PATH, where={"uniqueId": uid, "event_type": "dial"})
    self.crm.uon.fail(3, 500, path=U_DIAL, where={"phone": "+" + phone})
    self.crm.ms.fail(3, 503, path=M_DIAL, where={"unique_id": uid})
    self.accept(self.svc, event(uid, "dial", raw_in(uid, phone)))
    self.accept(self.svc, event(uid, "hangup", raw_in(uid, phone, hangup=True)))
    checks = [
      (self.crm.retailcrm, R_PATH, lambda r: r.get("uniqueId") == uid,
       lambda r: r.get("event_type") == "dial", 500),
      (self.crm.uon, U_HANGUP, lambda r: r.get("phone") == "+" + phone,
       lambda r: r.path == U_DIAL, 500),
      (self.crm.ms, M_HANGUP, lambda r: r.get("unique_id") == uid,
       lambda r: r.path == M_DIAL, 503),
    ]
    for standin, hangup_path, mine, is_dial, failure in checks:
      with self.subTest(target=standin.name):
        standin.wait_for_requests(1, hangup_path, timeout=15, status=200,
                                  where=lambda r, mine=mine, is_dial=is_dial:
                                  mine(r) and not is_dial(r))
        reqs = [r for r in standin.requests() if mine(r)]
        dials = [r for r in reqs if is_dial(r)]
        hangups = [r for r in reqs if not is_dial(r)]
        self.assertGreaterEqual(len(dials), 4, "3 failures, then the delivery: %r" % reqs)
        self.assertEqual([r.status for r in dials[:3]], [failure] * 3)
        ok = [r for r in dials if r.status == 200]
        self.assertTrue(ok, reqs)
        for h in hangups:
          self.assertGreater(h.seq, ok[0].seq, "hangup before the dial was delivered: %r" % reqs)
          self.assertGreaterEqual(h.time, ok[0].answered_at,
                                  "hangup sent while the dial was in flight: %r" % reqs)

  def test_500_twice_then_200_exactly_three_requests(self):
    uid = new_uid()
    phone = new_phone()
    self.crm.ms.fail(2, 500, path=M_DIAL, where={"unique_id": uid})
    self.crm.retailcrm.fail(2, 500, path=R_PATH, where={"uniqueId": uid})
    self.crm.uon.fail(2, 502, path=U_DIAL, where={"phone": "+" + phone})
    self.accept(self.svc, event(uid, "dial", raw_in(uid, phone)))
    self.delivered(self.crm.ms, M_DIAL, unique_id=uid, timeout=15)
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, timeout=15)
    self.delivered(self.crm.uon, U_DIAL, phone="+" + phone, timeout=15)
    time.sleep(QUIET)
    for standin, path, match in ((self.crm.ms, M_DIAL, {"unique_id": uid}),
                                 (self.crm.retailcrm, R_PATH, {"uniqueId": uid}),
                                 (self.crm.uon, U_DIAL, {"phone": "+" + phone})):
      with self.subTest(target=standin.name):
        reqs = standin.requests(path, **match)
        self.assertEqual(len(reqs), 3, reqs)
        self.assertEqual(reqs[2].status, 200)

  def test_4xx_not_retried(self):
    for status in (400, 404, 422):
      with self.subTest(status=status):
        uid = new_uid()
        phone = new_phone()
        self.crm.ms.respond(status=status, body={"detail": "bad"}, path=M_DIAL,
                            where={"unique_id": uid})
        self.crm.uon.respond(status=status, body={"detail": "bad"}, path=U_DIAL,
                             where={"phone": "+" + phone})
        self.accept(self.svc, event(uid, "dial", raw_in(uid, phone)))
        self.crm.ms.wait_for_requests(1, M_DIAL, unique_id=uid)
        self.crm.uon.wait_for_requests(1, U_DIAL, phone="+" + phone)
        self.assertQuiet(self.crm.ms, M_DIAL, 1, unique_id=uid)
        self.assertEqual(len(self.crm.uon.requests(U_DIAL, phone="+" + phone)), 1)
        # the abandoned dial does not hold the call's hangup back
        self.accept(self.svc, event(uid, "hangup", raw_in(uid, phone, hangup=True)))
        self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)
        self.delivered(self.crm.uon, U_HANGUP, phone="+" + phone)

  def test_408_and_429_are_retried(self):
    for status in (408, 429):
      with self.subTest(status=status):
        uid = new_uid()
        self.crm.ms.fail(1, status, path=M_DIAL, where={"unique_id": uid})
        self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone())))
        self.delivered(self.crm.ms, M_DIAL, unique_id=uid, timeout=15)
        self.assertQuiet(self.crm.ms, M_DIAL, 2, unique_id=uid)

  def test_timeout_is_retried(self):
    uid = new_uid()
    self.crm.ms.hang(DELIVERY_TIMEOUT * 4, path=M_DIAL, where={"unique_id": uid}, times=1)
    self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone())))
    reqs = self.crm.ms.wait_for_requests(2, M_DIAL, timeout=15, unique_id=uid)
    self.assertGreaterEqual(reqs[1].time - reqs[0].time, DELIVERY_TIMEOUT * 0.8,
                            "the retry came before the delivery timeout")
    # the second attempt is answered at once
    wait_for(lambda: any(r.status == 200 for r in self.crm.ms.requests(M_DIAL, unique_id=uid)[1:]),
             10, message="the retry was answered")

  def test_retry_delays_within_bounds(self):
    # --retry-min 0.1 --retry-max 0.5: never hammering, never waiting past the cap (plus slack;
    # uncapped doubling would wait 1.6 s and 3.2 s before the last two attempts). The class
    # service's breaker threshold (--breaker-failures 20) stays out of the way.
    uid = new_uid()
    self.crm.ms.fail(7, 500, path=M_DIAL, where={"unique_id": uid})
    self.accept(self.svc, event(uid, "dial", raw_in(uid, new_phone())))
    self.delivered(self.crm.ms, M_DIAL, unique_id=uid, timeout=30)
    reqs = self.crm.ms.requests(M_DIAL, unique_id=uid)
    self.assertEqual(len(reqs), 8, reqs)
    gaps = [b.time - a.time for a, b in zip(reqs, reqs[1:])]
    self.assertGreaterEqual(min(gaps), 0.05, "retried sooner than --retry-min allows: %r" % gaps)
    self.assertLessEqual(max(gaps), 0.5 + deadline(0.6), "waited past --retry-max: %r" % gaps)

  def test_token_change_is_followed(self):
    self.cluster.psql("UPDATE enterprises SET name2 = 'tok-0202-new' WHERE number = '0202'")
    self.addCleanup(self.cluster.psql,
                    "UPDATE enterprises SET name2 = 'tok-0202' WHERE number = '0202'")

    def new_token_works():
      uid = new_uid()
      r = self.post_event(self.svc, event(uid, "dial", raw_in(uid, new_phone()),
                                          token="tok-0202-new"))
      return r.status == 200 and r.body.get("success") is True and uid
    uid = wait_until(new_token_works, 5, interval=0.1, message="the new name2 is accepted")
    req = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)[0]
    self.assertEqual(req.body["token"], "tok-0202-new")
    uid = new_uid()
    r = self.post_event(self.svc, event(uid, "dial", raw_in(uid, new_phone()), token="tok-0202"))
    self.assertDetail(r, 404, "enterprise not found by token")

  def test_connections_to_targets_are_kept_alive(self):
    # issue 3: keep-alive connections per target, not a connection per delivery
    calls = []
    for _ in range(10):
      uid, phone = new_uid(), new_phone()
      self.accept(self.svc, event(uid, "dial", raw_in(uid, phone)))
      self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)
      self.delivered(self.crm.ms, M_DIAL, unique_id=uid)
      calls.append(uid)
    for standin, path, key in ((self.crm.retailcrm, R_PATH, "uniqueId"),
                               (self.crm.ms, M_DIAL, "unique_id")):
      with self.subTest(target=standin.name):
        ports = {r.client for r in standin.requests(path, where=lambda r, key=key:
                                                    r.get(key) in calls)}
        self.assertLessEqual(len(ports), 3, "a new connection per delivery: %r" % ports)

  # ---- dedup (§6.3) ----

  def test_duplicates_ignored(self):
    uid = new_uid()
    phone = new_phone()
    dial = event(uid, "dial", raw_in(uid, phone))
    self.accept(self.svc, dial)
    duplicate = {"status": "ignored", "reason": "duplicate"}
    self.assertJsonResponse(self.post_event(self.svc, dial), 200, duplicate)
    # by another token of the same enterprise, and on the trailing-slash route
    self.assertJsonResponse(self.post_event(self.svc, dict(dial, token="sec-0201"),
                                            path=DISPATCH + "/"), 200, duplicate)
    hangup = event(uid, "hangup", raw_in(uid, phone, hangup=True))
    self.accept(self.svc, hangup)
    self.assertJsonResponse(self.post_event(self.svc, hangup), 200, duplicate)
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="hangup")
    self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)
    time.sleep(QUIET)
    self.assertEqual([r.body["event_type"] for r in
                      self.crm.retailcrm.requests(R_PATH, uniqueId=uid)], ["dial", "hangup"])
    self.assertEqual(len(self.crm.ms.requests(M_DIAL, unique_id=uid)), 1)
    self.assertEqual(len(self.crm.ms.requests(M_HANGUP, unique_id=uid)), 1)
    self.assertEqual(len(self.crm.uon.requests(U_DIAL, phone="+" + phone)), 1)

  def test_concurrent_duplicates_accepted_once(self):
    uid = new_uid()
    body = event(uid, "dial", raw_in(uid, new_phone()))
    results = []
    barrier = threading.Barrier(8)

    def send():
      barrier.wait()
      r = self.post_event(self.svc, body)
      results.append((r.status, r.body))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(deadline(30))
    self.assertEqual(len(results), 8)
    accepted = [b for s, b in results if s == 200 and b.get("success") is True]
    ignored = [b for s, b in results if s == 200 and b == {"status": "ignored",
                                                           "reason": "duplicate"}]
    self.assertEqual((len(accepted), len(ignored)), (1, 7), results)
    self.delivered(self.crm.ms, M_DIAL, unique_id=uid)
    self.assertQuiet(self.crm.ms, M_DIAL, 1, unique_id=uid)


# ================================================================================================

class DispatchDeliveryTest(DispatchCase):
  """A service per test, an emptied outbox and integration_logs, and a spool directory of its
  own; the cluster may be stopped by a test and is started again in setUp."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.start_standins()
    cls.spool_root = tempfile.mkdtemp(prefix="ic-test-spool-")
    cls.addClassCleanup(shutil.rmtree, cls.spool_root, True)

  def setUp(self):
    super().setUp()
    self.cluster.ensure_running()
    self.cluster.psql("DELETE FROM integration_cache_outbox; DELETE FROM integration_logs;")
    self.reset_enterprises("".join([
      insert_sql("0211", ALL3, name2="tok-0211", secret="sec-0211"),
      insert_sql("0212", RETAILCRM_MS, name2="tok-0212", secret="sec-0212"),
    ]))
    self.spool = tempfile.mkdtemp(prefix="spool-", dir=self.spool_root)
    self.instance = "test-%s-%d" % (self._testMethodName, os.getpid())

  def start(self, **overrides):
    overrides.setdefault("instance", self.instance)
    overrides.setdefault("reconnect_min", "0.2")
    overrides.setdefault("reconnect_max", "1")
    return self.start_service(*args_of(self.crm, **overrides), env={"IC_SPOOL_DIR": self.spool})

  def send_dials(self, svc, n, token="tok-0211"):
    """n accepted dials, each its own call and phone; returns [(uid, phone)]."""
    calls = []
    for _ in range(n):
      uid, phone = new_uid(), new_phone()
      self.accept(svc, event(uid, "dial", raw_in(uid, phone), token=token))
      calls.append((uid, phone))
    return calls

  def wait_all_delivered(self, calls, timeout=30, targets=("retailcrm", "uon", "ms")):
    """Every call's dial answered 200 by every target."""
    def missing():
      out = []
      for uid, phone in calls:
        if "retailcrm" in targets and not self.crm.retailcrm.answered(R_PATH, uniqueId=uid):
          out.append(("retailcrm", uid))
        if "uon" in targets and not self.crm.uon.answered(U_DIAL, phone="+" + phone):
          out.append(("uon", phone))
        if "ms" in targets and not self.crm.ms.answered(M_DIAL, unique_id=uid):
          out.append(("ms", uid))
      return out
    try:
      wait_until(lambda: not missing(), timeout, interval=0.1, message="all delivered")
    except AssertionError:
      self.fail("not delivered within %.0fs: %r" % (deadline(timeout), missing()))

  def target_stats(self, svc, name):
    return svc.stats()["dispatch_targets"][name]

  def test_without_prepared_statements(self):
    """--db-prepared 0 (for a transaction-pooling PgBouncer before 1.21): every statement is sent
    with its text, and events are recorded, delivered and logged as usual."""
    svc = self.start(db_prepared=0)
    calls = self.send_dials(svc, 5)
    self.wait_all_delivered(calls)
    wait_until(lambda: int(self.cluster.psql(
        "SELECT count(*) FROM integration_logs WHERE enterprise_number = '0211'")) == 10, 10,
               message="uon and ms deliveries logged")

  # ---- a target down, slow or failing ----

  def test_standin_stopped_20_events_then_started(self):
    svc = self.start()
    self.crm.ms.stop()
    self.addCleanup(self.crm.ms.start)
    calls = self.send_dials(svc, 20)
    # the other targets do not wait for the dead one
    self.wait_all_delivered(calls, timeout=10, targets=("retailcrm", "uon"))
    time.sleep(1)
    self.crm.ms.start()  # same port
    self.wait_all_delivered(calls, timeout=30, targets=("ms",))
    self.assertEqual({r.body["unique_id"] for r in self.crm.ms.answered(M_DIAL)},
                     {uid for uid, _ in calls})

  def test_hanging_target_slows_neither_intake_nor_other_targets(self):
    svc = self.start(delivery_timeout=2 * deadline(1))
    self.crm.ms.hang(600)
    times = []
    calls = []
    for _ in range(20):
      uid, phone = new_uid(), new_phone()
      t0 = time.monotonic()
      self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
      times.append(time.monotonic() - t0)
      calls.append((uid, phone))
    self.assertLess(max(times), deadline(0.5),
                    "a dispatch response waited for the hanging target: %r" % times)
    self.wait_all_delivered(calls, timeout=10, targets=("retailcrm", "uon"))
    self.assertGreaterEqual(self.crm.ms.hanging(), 1, "ms is still hanging")
    self.assertEqual(self.crm.ms.answered(M_DIAL), [], "ms answered nothing yet")
    # more events while it still hangs: still answered at once
    uid, phone = new_uid(), new_phone()
    t0 = time.monotonic()
    self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    self.assertLess(time.monotonic() - t0, deadline(0.5))
    calls.append((uid, phone))
    self.wait_all_delivered(calls[-1:], timeout=10, targets=("retailcrm", "uon"))
    self.crm.ms.release()
    self.wait_all_delivered(calls, timeout=40, targets=("ms",))

  def test_breaker_stops_sending_then_closes(self):
    svc = self.start(breaker_failures=3, breaker_cooldown=5)
    self.assertEqual(self.target_stats(svc, "ms")["breaker"], "closed")
    self.crm.ms.respond(status=500, body={"detail": "down"})
    t0 = time.monotonic()
    calls = self.send_dials(svc, 10)
    wait_until(lambda: self.target_stats(svc, "ms")["breaker"] in ("open", "half-open"), 3,
               message="ms breaker opens")
    # within the cooldown the breaker holds the retries back (without it: ~8 attempts per event
    # in 3 s with --retry-max 0.5)
    time.sleep(max(0, 3 - (time.monotonic() - t0)))
    sent = self.crm.ms.count(M_DIAL)
    self.assertLessEqual(sent, 10 + 3, "ms requests during the open breaker: %d" % sent)
    # the healthy targets are not held back
    self.wait_all_delivered(calls, timeout=5, targets=("retailcrm", "uon"))
    pending = wait_until(lambda: self.target_stats(svc, "ms")["pending"], 10, interval=0.2,
                         message="ms pending counted")
    self.assertGreaterEqual(pending, 1)
    self.assertLessEqual(pending, 10)
    self.crm.ms.release()
    self.wait_all_delivered(calls, timeout=30, targets=("ms",))
    wait_until(lambda: self.target_stats(svc, "ms")["breaker"] == "closed", 10,
               message="ms breaker closes again")
    wait_until(lambda: self.target_stats(svc, "ms")["pending"] == 0, 10, interval=0.2,
               message="ms pending back to 0")

  def test_queued_rows_handed_back_when_the_breaker_opens(self):
    """Claimed rows wait in a queue for a delivery slot: never more than --delivery-concurrency
    requests at a time go to a target. When its breaker opens, the rows still queued go back to
    the outbox at once (no lease held, their claim's attempt taken back), instead of waiting out
    the breaker's cooldown under this instance's lease."""
    svc = self.start(delivery_concurrency=2, breaker_failures=2, breaker_cooldown=deadline(5))
    self.crm.ms.delay(deadline(0.5), status=500, body={"detail": "slow and down"}, path=M_DIAL)
    calls = self.send_dials(svc, 8)
    most = 0
    t_end = time.monotonic() + deadline(5)
    while time.monotonic() < t_end and self.target_stats(svc, "ms")["breaker"] == "closed":
      most = max(most, self.crm.ms.hanging())
      time.sleep(0.01)
    self.assertEqual(self.target_stats(svc, "ms")["breaker"], "open")
    self.assertLessEqual(most, 2, "ms requests waiting at once")
    self.assertGreaterEqual(most, 1)
    wait_until(lambda: "2 claimed rows handed back to the outbox" in svc.log_text()
               or "1 claimed rows handed back to the outbox" in svc.log_text(), 5,
               message="queued rows handed back")
    ms_rows = ("SELECT count(*) FILTER (WHERE locked_by IS NOT NULL), sum(attempts)"
               " FROM integration_cache_outbox WHERE target = 'ms'")
    # once the failed attempts are written back, no ms row is held and each attempt counted
    # was a request the stand-in saw
    wait_until(lambda: self.cluster.rows(ms_rows)[0][0] == "0", 5, interval=0.1,
               message="no ms row under a lease")
    self.assertEqual(int(self.cluster.rows(ms_rows)[0][1]), self.crm.ms.count(M_DIAL))
    self.assertLessEqual(self.crm.ms.count(M_DIAL), 3, "sent while the breaker was closed")
    self.crm.ms.release()
    self.wait_all_delivered(calls, timeout=deadline(30), targets=("ms",))

  def test_retry_horizon_then_abandoned(self):
    svc = self.start(retry_horizon=1)
    self.crm.ms.respond(status=500, body={"detail": "down for good"}, path=M_DIAL)
    uid, phone = new_uid(), new_phone()
    self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    wait_until(lambda: self.cluster.psql(
      "SELECT state FROM integration_cache_outbox WHERE unique_id = '%s' AND target = 'ms'"
      % uid) == "abandoned", 15, interval=0.2, message="abandoned after the retry horizon")
    self.assertGreaterEqual(self.crm.ms.count(M_DIAL, unique_id=uid), 2, "retried before")
    wait_until(lambda: svc.stats()["dispatch_abandoned"] == 1, 5, message="counted")
    self.assertQuiet(self.crm.ms, M_DIAL, self.crm.ms.count(M_DIAL, unique_id=uid),
                     unique_id=uid)
    wait_until(lambda: ("ms", "dial", "error") in
               [r[1:4] for r in self.cluster.rows(
                 "SELECT enterprise_number, integration_type, event_type, status "
                 "FROM integration_logs")], 5, interval=0.2, message="integration_logs error row")
    # the call's hangup still goes out
    self.accept(svc, event(uid, "hangup", raw_in(uid, phone, hangup=True), token="tok-0211"))
    self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)

  # ---- crashes and the database ----

  def test_sigkill_right_after_ack_loses_nothing(self):
    svc = self.start()
    calls = self.send_dials(svc, 20)
    svc.kill()
    svc.restart()
    self.wait_all_delivered(calls, timeout=30)

  def test_sigkill_with_target_down_then_restart(self):
    svc = self.start()
    self.crm.ms.stop()
    self.addCleanup(self.crm.ms.start)
    calls = self.send_dials(svc, 10)
    self.wait_all_delivered(calls, timeout=10, targets=("retailcrm", "uon"))
    time.sleep(0.5)  # a few failed attempts, rows claimed by this instance
    svc.kill()
    self.crm.ms.start()
    svc.restart()
    self.wait_all_delivered(calls, timeout=30, targets=("ms",))

  def test_database_down_events_spooled_then_delivered(self):
    svc = self.start()
    warm = self.send_dials(svc, 1)  # the enterprise is cached and a delivery path exists
    self.wait_all_delivered(warm, timeout=10)
    self.cluster.stop()
    calls = []
    for _ in range(10):
      uid, phone = new_uid(), new_phone()
      t0 = time.monotonic()
      self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
      self.assertLess(time.monotonic() - t0, deadline(5), "dispatch while the database is down")
      calls.append((uid, phone))
    self.assertGreaterEqual(svc.stats()["dispatch_spooled"], 10)
    spooled = [f for f in os.listdir(self.spool)]
    self.assertTrue(spooled, "nothing in the spool directory %s" % self.spool)
    self.cluster.start()
    self.wait_all_delivered(calls, timeout=40)
    uids = ",".join("'%s'" % uid for uid, _ in calls)
    wait_until(lambda: self.cluster.psql(
      "SELECT count(DISTINCT unique_id) FROM integration_cache_outbox WHERE unique_id IN (%s)"
      % uids) == "10", 20, interval=0.2, message="spooled events moved into the outbox")
    wait_until(lambda: "spool replayed:" in svc.log_text(), 10, message="log: spool replayed")
    # dedup still knows the spooled events
    uid, phone = calls[0]
    self.assertJsonResponse(self.post_event(svc, event(uid, "dial", raw_in(uid, phone),
                                                       token="tok-0211")),
                            200, {"status": "ignored", "reason": "duplicate"})

  def test_spooled_events_survive_sigkill(self):
    svc = self.start()
    self.wait_all_delivered(self.send_dials(svc, 1), timeout=10)
    self.cluster.stop()
    calls = self.send_dials(svc, 10)
    svc.kill()
    self.cluster.start()
    svc.restart()
    self.wait_all_delivered(calls, timeout=40)

  def test_backlog_claimed_by_index_probes_after_statistics_of_a_drained_outbox(self):
    """PostgreSQL's statistics of an outbox mostly come from moments when it was drained
    (autovacuum analyzes a busy table often). A backlog that builds up afterwards (a target down
    for a while) must still be claimed with one index probe per candidate row for "is an earlier
    row of this call pending?". With such statistics the planner once answered that by walking
    every pending row instead, for every candidate: 1.8 s per claim with 120,000 rows waiting,
    seconds more as the backlog grew (docs/PERFORMANCE-NOTES.md, section 11). Counted, not timed:
    the index entries PostgreSQL read per delivered row."""
    c = self.cluster
    c.psql("ALTER TABLE integration_cache_outbox SET (autovacuum_enabled = off)")
    self.addCleanup(c.psql, "ALTER TABLE integration_cache_outbox RESET (autovacuum_enabled)")
    c.psql("INSERT INTO integration_cache_outbox (event_id, enterprise_number, unique_id,"
           " event_type, target, payload, state, delivered_at)"
           " SELECT 'drained-' || g || '-' || t, '0211', 'drained.' || g, 'dial', t, '{}',"
           " 'delivered', now() FROM generate_series(1, 10000) g,"
           " unnest(ARRAY['retailcrm', 'uon', 'ms']) t;"
           " ANALYZE integration_cache_outbox;")
    calls = [(new_uid(), new_phone()) for _ in range(400)]
    rows = []
    for uid, phone in calls:
      payload = json.dumps({"token": "tok-0211", "uniqueId": uid, "event_type": "dial",
                            "raw": raw_in(uid, phone), "record_url": None, "origin": None,
                            "name2": "tok-0211"})
      for target in ("retailcrm", "uon", "ms"):
        rows.append("('backlog-%s-%s', '0211', '%s', 'dial', '%s', '%s')"
                    % (uid, target, uid, target, payload.replace("'", "''")))
    c.psql("INSERT INTO integration_cache_outbox (event_id, enterprise_number, unique_id,"
           " event_type, target, payload) VALUES %s;" % ", ".join(rows))
    reads_sql = ("SELECT sum(idx_tup_read) FROM pg_stat_user_indexes"
                 " WHERE relname = 'integration_cache_outbox'")
    before = int(c.psql(reads_sql))
    svc = self.start()
    self.wait_all_delivered(calls, timeout=60)
    wait_until(lambda: c.psql("SELECT count(*) FROM integration_cache_outbox WHERE event_id"
                              " LIKE 'backlog-%' AND state = 'delivered'") == str(len(rows)),
               15, interval=0.2, message="every backlog row marked delivered")
    svc.stop()  # its backends exit, and a backend reports its counters when it exits
    wait_until(lambda: c.psql("SELECT count(*) FROM pg_stat_activity"
                              " WHERE application_name = 'integration_cache'") == "0", 10,
               interval=0.1, message="the service's sessions ended")
    per_row = (int(c.psql(reads_sql)) - before) / len(rows)
    # an index probe per candidate reads a few entries per row; walking the pending rows for
    # each candidate reads about as many entries per row as rows are pending (1,200 here)
    self.assertLess(per_row, 60, "index entries read per delivered row")

  def test_outbox_retention(self):
    """Finished rows older than --outbox-retention are deleted (the first sweep comes right after
    the start); pending rows of any age and newer finished rows stay."""
    def row(event_id, state, age, next_attempt="now()"):
      return ("INSERT INTO integration_cache_outbox (event_id, enterprise_number, unique_id,"
              " event_type, target, payload, state, created_at, next_attempt_at) VALUES"
              " ('%s', '0211', 'ret.%s', 'dial', 'ms', '{}', '%s', now() - interval '%d seconds',"
              " %s);" % (event_id, event_id, state, age, next_attempt))
    self.cluster.psql(row("old-delivered", "delivered", 1000) + row("old-abandoned", "abandoned", 900)
                      + row("old-pending", "pending", 1000, "now() + interval '1 day'")
                      + row("new-delivered", "delivered", 100))
    svc = self.start(outbox_retention=300)
    wait_until(lambda: self.cluster.psql(
        "SELECT count(*) FROM integration_cache_outbox WHERE event_id LIKE 'old-%'") == "1", 15,
               interval=0.2, message="old finished rows deleted")
    self.assertEqual(self.cluster.psql(
        "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM integration_cache_outbox"
        " WHERE event_id IN ('old-delivered', 'old-abandoned', 'old-pending', 'new-delivered')"),
        "new-delivered,old-pending")
    wait_until(lambda: "outbox retention: deleted 2 finished rows older than 300s"
               in svc.log_text(), 5, message="the sweep is logged")

  def test_spool_of_an_earlier_version_replayed(self):
    """A spool written before the upgrade (one line per event: an array of rows, each with its
    "target") is replayed into the outbox beside one in the current shape (one object with
    "targets"), and both events are delivered to every target."""
    lines = []
    calls = [(new_uid(), new_phone()) for _ in range(2)]
    for n, (uid, phone) in enumerate(calls):
      payload = {"token": "tok-0211", "uniqueId": uid, "event_type": "dial",
                 "raw": raw_in(uid, phone), "record_url": None, "origin": None,
                 "name2": "tok-0211"}
      event_row = {"event_id": "spooled-%d-%s" % (n, uid), "enterprise_number": "0211",
                   "unique_id": uid, "event_type": "dial", "payload": payload,
                   "accepted_at": time.time()}
      if n == 0:
        lines.append([dict(event_row, target=t) for t in ("retailcrm", "uon", "ms")])
      else:
        lines.append(dict(event_row, targets=["retailcrm", "uon", "ms"]))
    with open(os.path.join(self.spool, "outbox.spool"), "w") as f:
      f.write("".join(json.dumps(line) + "\n" for line in lines))
    self.start()
    self.wait_all_delivered(calls, timeout=15)
    self.assertEqual(self.cluster.psql(
      "SELECT count(*) FROM integration_cache_outbox WHERE event_id LIKE 'spooled-%'"), "6")

  def first_answer_after_restart(self, svc, body):
    """Restarts svc and posts `body` as early as the service answers it with a 200 (anything
    else -- refused connection, 503, a 404 before the first load -- is "not yet"): the first
    moment an event can be accepted is the first moment dedup must know the old ones."""
    svc.restart(wait_ready=False)
    svc.wait_listening()

    def answer():
      r = self.post_event(svc, body)
      return r if r.status == 200 else None
    return wait_until(answer, 15, interval=0.01, message="dispatch answers 200 after restart")

  def test_dedup_survives_restart(self):
    svc = self.start()
    uid, phone = new_uid(), new_phone()
    dial = event(uid, "dial", raw_in(uid, phone), token="tok-0211")
    self.accept(svc, dial)
    self.wait_all_delivered([(uid, phone)], timeout=10)
    duplicate = {"status": "ignored", "reason": "duplicate"}
    svc.stop()
    self.assertJsonResponse(self.first_answer_after_restart(svc, dial), 200, duplicate)
    svc.kill()
    self.assertJsonResponse(self.first_answer_after_restart(svc, dial), 200, duplicate)
    svc.wait_ready()
    self.assertJsonResponse(self.post_event(svc, dial), 200, duplicate)
    hangup = event(uid, "hangup", raw_in(uid, phone, hangup=True), token="tok-0211")
    self.accept(svc, hangup)
    self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)

  def test_clean_stop_does_not_redeliver(self):
    # SIGTERM right after deliveries were answered: a graceful stop records them as delivered,
    # so the restarted instance does not send them again (SPEC §8: finish in-flight work)
    svc = self.start()
    calls = self.send_dials(svc, 10)
    self.wait_all_delivered(calls, timeout=10)
    svc.stop()
    svc.restart()
    # and at once after the answers: the service has them, the write-back may still be queued
    more = []
    for _ in range(3):
      uid, phone = new_uid(), new_phone()
      self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
      more.append((uid, phone))
    total = 3 * (len(calls) + len(more))
    end = time.monotonic() + deadline(10)
    while sum(len(s.answered()) for s in self.crm.all()) < total:
      self.assertLess(time.monotonic(), end, "not delivered: %s" % self.crm.summary())
      time.sleep(0.001)
    time.sleep(0.002)
    svc.stop()
    svc.restart()
    calls += more
    time.sleep(QUIET * 2)
    again = []
    for uid, phone in calls:
      for name, n in (("retailcrm", self.crm.retailcrm.count(R_PATH, uniqueId=uid)),
                      ("uon", self.crm.uon.count(U_DIAL, phone="+" + phone)),
                      ("ms", self.crm.ms.count(M_DIAL, unique_id=uid))):
        if n != 1:
          again.append((name, uid, n))
    self.assertEqual(again, [], "delivered again after a clean stop: (target, uniqueId, times)")

  def test_sigterm_with_pending_events_exits_0_and_restart_delivers(self):
    svc = self.start()
    self.crm.ms.stop()
    self.addCleanup(self.crm.ms.start)
    calls = self.send_dials(svc, 5)
    self.wait_all_delivered(calls, timeout=10, targets=("retailcrm", "uon"))
    svc.stop()  # asserts exit status 0 within the deadline
    self.crm.ms.start()
    svc.restart()
    self.wait_all_delivered(calls, timeout=30, targets=("ms",))

  def test_concurrent_intake(self):
    # many connections at once (group commit): every event answered, accepted once, delivered
    svc = self.start()
    results = []
    lock = threading.Lock()

    def client(k):
      conn = svc.connection()
      try:
        for _ in range(5):
          uid, phone = new_uid(), new_phone()
          conn.request("POST", DISPATCH, body=json.dumps(
            event(uid, "dial", raw_in(uid, phone), token="tok-0211")),
            headers={"Content-Type": "application/json"})
          resp = conn.getresponse()
          body = json.loads(resp.read())
          with lock:
            results.append((resp.status, body, uid, phone))
      finally:
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(40)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(deadline(60))
    self.assertEqual(len(results), 200)
    self.assertEqual([r for r in results if r[0] != 200 or r[1].get("success") is not True], [])
    self.assertEqual(len({r[1]["event_id"] for r in results}), 200, "event ids are unique")
    self.wait_all_delivered([(uid, phone) for _, _, uid, phone in results], timeout=60)
    self.assertEqual(svc.stats()["dispatch_accepted"], 200)

  def test_outbox_rows(self):
    # docs/CONTRACT-dev.md: one row per event and target, state 'delivered' once delivered
    svc = self.start()
    uid, phone = new_uid(), new_phone()
    body = self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    # committed before the 200 (the database is up: no spool detour)
    self.assertEqual(self.cluster.psql("SELECT count(*) FROM integration_cache_outbox "
                                       "WHERE event_id = '%s'" % body["event_id"]), "3")
    self.wait_all_delivered([(uid, phone)], timeout=10)

    def rows():
      return self.cluster.rows(
        "SELECT event_id, enterprise_number, event_type, target, state, attempts, "
        "delivered_at IS NOT NULL FROM integration_cache_outbox WHERE unique_id = '%s' "
        "ORDER BY target" % uid)
    wait_until(lambda: all(r[4] == "delivered" for r in rows()) and len(rows()) == 3, 10,
               interval=0.2, message="3 delivered outbox rows")
    for row in rows():
      self.assertEqual(row[:3], (body["event_id"], "0211", "dial"), row)
      self.assertEqual((row[5], row[6]), ("1", "t"), row)
    self.assertEqual(sorted(r[3] for r in rows()), ["ms", "retailcrm", "uon"])

  def test_two_replicas_share_one_outbox(self):
    # FOR UPDATE SKIP LOCKED: two instances on one outbox deliver every event, and only once
    a = self.start(instance=self.instance + "-a")
    b = self.start(instance=self.instance + "-b")
    calls = []
    for k in range(20):
      svc = a if k % 2 == 0 else b
      calls += self.send_dials(svc, 1)
    self.wait_all_delivered(calls, timeout=30)
    time.sleep(QUIET)
    for uid, phone in calls:
      self.assertEqual(len(self.crm.ms.requests(M_DIAL, unique_id=uid)), 1, uid)
      self.assertEqual(len(self.crm.retailcrm.requests(R_PATH, uniqueId=uid)), 1, uid)
      self.assertEqual(len(self.crm.uon.requests(U_DIAL, phone="+" + phone)), 1, phone)

  # ---- /stats ----

  def test_stats_counters(self):
    svc = self.start()
    s = svc.stats()
    counters = ["dispatch_accepted", "dispatch_duplicates", "dispatch_spooled",
                "dispatch_delivered", "dispatch_retried", "dispatch_abandoned"]
    for key in counters:
      self.assertIsInstance(s[key], int, key)
      self.assertNotIsInstance(s[key], bool, key)
      self.assertEqual(s[key], 0, key)
    self.assertEqual(set(s["dispatch_targets"]), {"retailcrm", "uon", "ms"})
    for name, t in s["dispatch_targets"].items():
      self.assertLessEqual({"pending", "in_flight", "breaker"}, set(t), name)
      self.assertTrue(is_number(t["pending"]) and is_number(t["in_flight"]), t)
      self.assertEqual(t["breaker"], "closed")
    looked_up = s["hits"] + s["misses"]

    def counts():
      s = svc.stats()
      return tuple(s[k] for k in counters)

    # 0212: retailcrm and ms. Deliveries count per event and target.
    calls = self.send_dials(svc, 3, token="tok-0212")
    self.wait_all_delivered(calls, timeout=10, targets=("retailcrm", "ms"))
    wait_until(lambda: counts() == (3, 0, 0, 6, 0, 0), 5, message="3 accepted, 6 delivered")
    self.assertGreaterEqual(svc.stats()["hits"] + svc.stats()["misses"] - looked_up, 3,
                            "dispatch's /integrations look-ups are counted")
    uid, phone = calls[0]
    r = self.post_event(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0212"))
    self.assertEqual(r.body, {"status": "ignored", "reason": "duplicate"})
    wait_until(lambda: counts() == (3, 1, 0, 6, 0, 0), 5, message="1 duplicate")

    uid = new_uid()
    self.crm.ms.fail(2, 500, path=M_DIAL, where={"unique_id": uid})
    self.accept(svc, event(uid, "dial", raw_in(uid, new_phone()), token="tok-0212"))
    self.delivered(self.crm.ms, M_DIAL, unique_id=uid, timeout=15)
    wait_until(lambda: counts() == (4, 1, 0, 8, 2, 0), 5, message="2 retries, 8 delivered")

    uid = new_uid()
    self.crm.ms.respond(status=400, body={"detail": "bad"}, path=M_DIAL, where={"unique_id": uid})
    self.accept(svc, event(uid, "dial", raw_in(uid, new_phone()), token="tok-0212"))
    wait_until(lambda: counts() == (5, 1, 0, 9, 2, 1), 10, message="1 abandoned, 9 delivered")
    wait_until(lambda: all(t["pending"] == 0 and t["in_flight"] == 0
                           for t in svc.stats()["dispatch_targets"].values()), 10, interval=0.2,
               message="nothing pending or in flight")
    self.assertEqual(self.cluster.psql(
      "SELECT state FROM integration_cache_outbox WHERE unique_id = '%s' AND target = 'ms'" % uid),
      "abandoned")
    self.assertIn("abandoned", svc.log_text())

  # ---- integration_logs (§6.5) ----

  def log_rows(self, where="true"):
    return self.cluster.rows(
      "SELECT enterprise_number, integration_type, event_type, status, "
      "coalesce(error_message, ''), request_data::text, response_data::text FROM integration_logs"
      " WHERE %s "
      "ORDER BY integration_type, event_type, created_at" % where)

  def test_integration_logs_success(self):
    svc = self.start()
    uid, phone = new_uid(), new_phone()
    self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    self.accept(svc, event(uid, "hangup", raw_in(uid, phone, hangup=True), token="tok-0211"))
    self.delivered(self.crm.ms, M_HANGUP, unique_id=uid)
    self.delivered(self.crm.uon, U_HANGUP, phone="+" + phone)
    self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid, event_type="hangup")
    rows = wait_until(lambda: (lambda rows: rows if len(rows) >= 4 else None)(self.log_rows()),
                      10, interval=0.2, message="4 integration_logs rows")
    time.sleep(0.5)
    rows = self.log_rows()
    self.assertEqual([r[:4] for r in rows], [("0211", "ms", "dial", "success"),
                                             ("0211", "ms", "hangup", "success"),
                                             ("0211", "uon", "dial", "success"),
                                             ("0211", "uon", "hangup", "success")],
                     "one row per finished uon/ms delivery, none for retailcrm")
    for row in rows:
      request = json.loads(row[5])
      self.assertEqual(request.get("phone"), "+" + phone, row)
      self.assertEqual(request.get("enterprise_number"), "0211", row)
      self.assertEqual(json.loads(row[6]), {"ok": True}, "the stand-in's answer: %r" % (row,))
    self.assertEqual(self.cluster.psql(
      "SELECT count(*) FROM integration_logs WHERE created_at IS NULL"), "0")

  def test_integration_logs_one_row_after_retries_and_error_when_abandoned(self):
    svc = self.start()
    uid, phone = new_uid(), new_phone()
    self.crm.ms.fail(2, 500, path=M_DIAL, where={"unique_id": uid})
    self.crm.uon.respond(status=400, body={"detail": "rejected \"here\""}, path=U_DIAL,
                         where={"phone": "+" + phone})
    self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    self.delivered(self.crm.ms, M_DIAL, unique_id=uid, timeout=15)
    self.crm.uon.wait_for_requests(1, U_DIAL, phone="+" + phone)
    wait_until(lambda: len(self.log_rows()) >= 2, 10, interval=0.2, message="2 log rows")
    time.sleep(QUIET)
    rows = self.log_rows()
    self.assertEqual([r[1:4] for r in rows], [("ms", "dial", "success"),
                                              ("uon", "dial", "error")], rows)
    self.assertTrue(rows[1][4], "an abandoned delivery has an error_message")
    self.assertEqual(json.loads(rows[1][6]), {"detail": 'rejected "here"'})
    self.assertEqual(len(self.crm.uon.requests(U_DIAL, phone="+" + phone)), 1)

  def test_integration_logs_answer_that_is_not_json(self):
    """A target's answer that is not a JSON object or array is logged as its status alone."""
    svc = self.start()
    uid, phone = new_uid(), new_phone()
    self.crm.ms.respond(status=422, body=b"not json {", path=M_DIAL, where={"unique_id": uid})
    self.crm.uon.respond(status=200, body=b"42", path=U_DIAL, where={"phone": "+" + phone})
    self.accept(svc, event(uid, "dial", raw_in(uid, phone), token="tok-0211"))
    wait_until(lambda: len(self.log_rows()) >= 2, 10, interval=0.2, message="2 log rows")
    rows = self.log_rows()
    self.assertEqual([(r[1], r[3], json.loads(r[6])) for r in rows],
                     [("ms", "error", {"status": 422}), ("uon", "success", {"status": 200})])


# ================================================================================================

class SipUnitTest(DispatchCase):
  """§6.4: with a sip_unit table, a rule '+375{9}' for line 'sip:<Trunk>' rewrites the external
  number before delivery; other trunks and other enterprises are untouched."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.reset_enterprises("".join([
      insert_sql("0301", ALL3, name2="tok-0301", secret="sec-0301"),
      insert_sql("0302", ALL3, name2="tok-0302", secret="sec-0302"),
    ]))
    cls.cluster.psql(
      "CREATE TABLE sip_unit (enterprise_number text, line_name text, incoming_transform text);"
      "INSERT INTO sip_unit VALUES ('0301', 'sip:0001363', '+375{9}'),"
      " ('0301', 'sip:0002222', NULL), ('0301', 'sip:0003333', '');")
    cls.start_standins()
    cls.spool = tempfile.mkdtemp(prefix="ic-test-spool-")
    cls.addClassCleanup(shutil.rmtree, cls.spool, True)
    cls.svc = cls.start_class_service(*args_of(cls.crm), env={"IC_SPOOL_DIR": cls.spool})

  def dial(self, token, trunk, number="80291234567"):
    uid = new_uid()
    raw = raw_in(uid, number, Trunk=trunk)
    self.accept(self.svc, event(uid, "dial", raw, token=token))
    ms = self.delivered(self.crm.ms, M_DIAL, unique_id=uid)[0]
    retailcrm = self.delivered(self.crm.retailcrm, R_PATH, uniqueId=uid)[0]
    return ms.body, retailcrm.body

  def test_rule_rewrites_the_number(self):
    ms, retailcrm = self.dial("tok-0301", "0001363")
    self.assertEqual(ms["phone"], "+375291234567")
    self.assertEqual(ms["raw"]["Phone"], "+375291234567")
    self.assertEqual(retailcrm["raw"]["Phone"], "+375291234567")
    self.delivered(self.crm.uon, U_DIAL, phone="+375291234567", enterprise_number="0301")
    # the last 9 digits, whatever the prefix
    ms, _ = self.dial("tok-0301", "0001363", number="375291234568")
    self.assertEqual(ms["phone"], "+375291234568")

  def test_no_rule_no_rewrite(self):
    for token, trunk in (("tok-0301", "0002222"), ("tok-0301", "0003333"),
                         ("tok-0301", "0009999"), ("tok-0302", "0001363")):
      with self.subTest(token=token, trunk=trunk):
        ms, retailcrm = self.dial(token, trunk)
        self.assertEqual(ms["phone"], "+80291234567")
        self.assertEqual(retailcrm["raw"]["Phone"], "80291234567")


if __name__ == "__main__":
  unittest.main()
