"""HTTP stand-ins for the three CRM integration services (retailcrm, uon, ms) that the service
dispatches call events to and asks for customer look-ups (SPEC §6.1, §7). Standard library only.

A StandIn is a real HTTP/1.1 server (keep-alive, Content-Length on every answer, `Expect:
100-continue` and chunked request bodies understood) on 127.0.0.1, served by a ThreadingHTTPServer
in a background thread, so a request that is made to wait never blocks the others. It records
every request it receives (method, path, query, parsed JSON body, arrival time, the status it
answered) and answers according to rules the test sets:

  crm.respond(body, path=..., status=200)         # persistent answer (default 200 {"ok": true})
  crm.respond(handler=lambda req: (200, {...}))   # computed answer
  crm.fail(2, status=500, path=..., where=pred)   # the next 2 matching requests answer 500
  crm.hang(seconds=30, path=...)                  # matching requests wait, then answer
  crm.delay(0.3, path=...)                        # likewise, for a short delay
  crm.stop(); crm.start()                         # down and up again on the same port

Rules are tried newest first; a rule with `times` is used up after that many requests. `where` is a
predicate over the recorded request (see Request) or a dict of JSON body members to match.
A hanging request is woken (and dropped without an answer) by stop(), or answered at once by
release().
"""

import http.server
import json
import socket
import sys
import threading
import time
import urllib.parse

from harness import IntegrationTestCase, deadline, wait_until

DEFAULT_BODY = {"ok": True}


def wait_for(predicate, timeout, interval=0.02, message=""):
  """Polls predicate() until truthy and returns its value; `timeout` is stretched for sanitizer
  builds (harness.deadline). Raises AssertionError on timeout."""
  return wait_until(predicate, timeout, interval=interval, message=message)


class Request:
  """One recorded request. `query` maps each name to its first value (parse_qs, blanks kept),
  `body` is the parsed JSON (None when empty or not JSON), `time` is time.monotonic() at arrival,
  `status` the status answered (None while unanswered or when dropped), `answered_at` the
  monotonic time the answer started to go out; `headers` has lower-case names; `client` is
  the (host, port) of the connection it came on."""

  __slots__ = ("method", "path", "query", "query_string", "headers", "raw_body", "body", "time",
               "wall_time", "status", "answered_at", "seq", "client")

  def __init__(self, method, target, headers, raw_body, seq, client=None):
    parsed = urllib.parse.urlsplit(target)
    self.method = method
    self.path = parsed.path
    self.query_string = parsed.query
    self.query = {k: v[0] for k, v in
                  urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
    self.headers = headers
    self.raw_body = raw_body
    try:
      self.body = json.loads(raw_body) if raw_body else None
    except ValueError:
      self.body = None
    self.time = time.monotonic()
    self.wall_time = time.time()
    self.status = None
    self.answered_at = None
    self.seq = seq
    self.client = client  # (host, port) of the connection it came on

  def get(self, key, default=None):
    """A member of the JSON body (None when the body is not an object)."""
    return self.body.get(key, default) if isinstance(self.body, dict) else default

  def matches(self, where):
    if where is None:
      return True
    if callable(where):
      return bool(where(self))
    return isinstance(self.body, dict) and all(self.body.get(k) == v for k, v in where.items())

  def __repr__(self):
    body = self.raw_body[:300].decode("utf-8", "replace") if self.raw_body else ""
    after = ("" if self.answered_at is None else
             " after %.3fs" % (self.answered_at - self.time))
    port = " from :%s" % self.client[1] if self.client else ""
    return "<%s %s%s%s at %.3f -> %s%s %s>" % (
      self.method, self.path, "?" + self.query_string if self.query_string else "", port,
      self.wall_time % 1000, self.status, after, body)


class _Rule:
  def __init__(self, path, where, status, body, handler, delay, times):
    self.path = path
    self.where = where
    self.status = status
    self.body = body
    self.handler = handler
    self.delay = delay
    self.times = times  # None: unlimited

  def applies(self, req):
    return (self.path is None or self.path == req.path) and req.matches(self.where)


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 128


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  server_version = "CrmStandIn/1"
  timeout = 120  # an idle keep-alive connection is dropped after this

  def setup(self):
    super().setup()
    self.server.standin._track(self.connection, True)

  def finish(self):
    try:
      super().finish()
    finally:
      self.server.standin._track(self.connection, False)

  def log_message(self, fmt, *args):  # quiet
    pass

  def _read_body(self):
    if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
      chunks = []
      while True:
        line = self.rfile.readline(65537)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
          while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
          break
        chunks.append(self.rfile.read(size))
        self.rfile.readline(65537)
      return b"".join(chunks)
    length = int(self.headers.get("Content-Length") or 0)
    return self.rfile.read(length) if length > 0 else b""

  def _serve(self):
    standin = self.server.standin
    raw = self._read_body()
    req = standin._record(self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()}, raw,
                          tuple(self.client_address))
    status, body, delay = standin._decide(req)
    if delay:
      woken_by_stop = standin._sleep(delay)
      if woken_by_stop:
        self.close_connection = True
        return  # a stopped service does not answer
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    with standin._lock:  # before the first byte goes out: the client cannot have it earlier
      req.status = status
      req.answered_at = time.monotonic()
    try:
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      if self.command != "HEAD":
        self.wfile.write(data)
      self.wfile.flush()
    except OSError:
      self.close_connection = True
      with standin._lock:
        req.status = None
      return

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


class StandIn:
  """One CRM stand-in; `url` is its base URL (http://127.0.0.1:PORT)."""

  def __init__(self, name, port=None):
    self.name = name
    self.port = port
    self._lock = threading.Lock()
    self._requests = []
    self._rules = []
    self._seq = 0
    self._conns = set()
    self._server = None
    self._thread = None
    self._stop_event = threading.Event()  # set while stopped: wakes hanging requests
    self._wake = threading.Condition(self._lock)  # notified by release() and stop()
    self._generation = 0  # release() counts up: requests waiting since before are answered
    self._hanging = 0

  # -- life cycle --

  @property
  def url(self):
    return "http://127.0.0.1:%d" % self.port

  @property
  def running(self):
    return self._server is not None

  def start(self):
    if self._server is not None:
      return self
    self._stop_event.clear()
    end = time.monotonic() + 10
    while True:
      try:
        server = _Server(("127.0.0.1", self.port or 0), _Handler)
        break
      except OSError:
        if not self.port or time.monotonic() > end:
          raise
        time.sleep(0.05)  # the same port again: a moment for the old socket to go
    server.standin = self
    self.port = server.server_address[1]
    self._server = server
    self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                    name="standin-%s" % self.name, daemon=True)
    self._thread.start()
    return self

  def stop(self):
    """Stops listening (connections are refused from now on) and drops every open connection,
    including requests that are waiting: the service sees a dead peer."""
    server = self._server
    if server is None:
      return
    self._stop_event.set()
    with self._lock:
      self._wake.notify_all()
    server.shutdown()
    server.server_close()
    self._thread.join(10)
    with self._lock:
      conns = list(self._conns)
    for conn in conns:
      try:
        conn.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass
    self._server = None
    self._thread = None

  def restart(self):
    self.stop()
    return self.start()

  def ensure_running(self):
    return self.start()

  def close(self):
    self.release()
    self.stop()

  # -- behaviour --

  def _add(self, rule):
    with self._lock:
      self._rules.append(rule)
    return rule

  def respond(self, body=None, path=None, status=200, where=None, handler=None, times=None):
    """Answer matching requests with `status` and `body` (default {"ok": true}), or with what
    handler(req) returns: (status, body), or a body for 200."""
    return self._add(_Rule(path, where, status, DEFAULT_BODY if body is None else body, handler,
                           0, times))

  def fail(self, times, status=500, path=None, where=None, body=None):
    """The next `times` matching requests answer `status` (then the other rules apply)."""
    return self._add(_Rule(path, where, status, {"detail": "stand-in failure %d" % status}
                           if body is None else body, None, 0, times))

  def hang(self, seconds=60.0, path=None, where=None, times=None, status=200, body=None):
    """Matching requests wait `seconds` (or until release()/stop()) before answering."""
    return self._add(_Rule(path, where, status, DEFAULT_BODY if body is None else body, None,
                           seconds, times))

  def delay(self, seconds, path=None, where=None, times=None, status=200, body=None,
            handler=None):
    """Like respond(), after `seconds`."""
    return self._add(_Rule(path, where, status, DEFAULT_BODY if body is None else body, handler,
                           seconds, times))

  def remove(self, rule):
    with self._lock:
      if rule in self._rules:
        self._rules.remove(rule)

  def release(self):
    """Drops every rule and answers every waiting request now."""
    with self._lock:
      self._rules = []
      self._generation += 1
      self._wake.notify_all()

  def reset(self):
    """No rules, nothing recorded, waiting requests answered."""
    self.release()
    with self._lock:
      self._requests = []

  def _decide(self, req):
    with self._lock:
      for rule in reversed(self._rules):
        if rule.applies(req):
          if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
              self._rules.remove(rule)
          break
      else:
        return 200, DEFAULT_BODY, 0
    status, body = rule.status, rule.body
    if rule.handler is not None:
      out = rule.handler(req)
      if isinstance(out, tuple):
        status, body = out
      else:
        status, body = 200, out
    return status, body, rule.delay

  def _sleep(self, seconds):
    """Waits up to `seconds`; True when woken by stop() (then the request is dropped), False
    when the time is up or release() was called meanwhile."""
    end = time.monotonic() + seconds
    with self._lock:
      generation = self._generation
      self._hanging += 1
      try:
        while True:
          if self._stop_event.is_set():
            return True
          if self._generation != generation:
            return False
          left = end - time.monotonic()
          if left <= 0:
            return False
          self._wake.wait(min(left, 0.5))
      finally:
        self._hanging -= 1

  # -- recording --

  def _track(self, conn, add):
    with self._lock:
      if add:
        self._conns.add(conn)
      else:
        self._conns.discard(conn)

  def _record(self, method, target, headers, raw, client=None):
    with self._lock:
      self._seq += 1
      req = Request(method, target, headers, raw, self._seq, client)
      self._requests.append(req)
    return req

  def requests(self, path=None, where=None, **match):
    """Recorded requests in arrival order, optionally only those to `path` and matching `where`
    (predicate or dict) and the JSON body members given as keywords."""
    with self._lock:
      reqs = list(self._requests)
    return [r for r in reqs if (path is None or r.path == path) and r.matches(where)
            and r.matches(match or None)]

  def count(self, path=None, where=None, **match):
    return len(self.requests(path, where, **match))

  def answered(self, path=None, where=None, status=200, **match):
    """Recorded requests that were answered with `status`."""
    return [r for r in self.requests(path, where, **match) if r.status == status]

  def hanging(self):
    """How many requests are waiting right now."""
    with self._lock:
      return self._hanging

  def clear(self):
    with self._lock:
      self._requests = []

  def wait_for_requests(self, n, path=None, timeout=10, where=None, status=None, **match):
    """Until at least n matching requests arrived (answered with `status`, when given); returns
    them."""
    def check():
      reqs = self.requests(path, where, **match)
      if status is not None:
        reqs = [r for r in reqs if r.status == status]
      return reqs if len(reqs) >= n else None
    return wait_for(check, timeout, message="%s: %d request(s) to %s matching %r%s"
                    % (self.name, n, path or "any path", where or match,
                       "" if status is None else " answered %d" % status))

  def summary(self, limit=60):
    reqs = self.requests()
    lines = ["%s (%s): %d request(s)" % (self.name, self.url if self.port else "-", len(reqs))]
    for r in reqs[-limit:]:
      lines.append("  %r" % (r,))
    return "\n".join(lines)


class CrmStandIns:
  """The three stand-ins together: .retailcrm, .uon, .ms."""

  NAMES = ("retailcrm", "uon", "ms")

  def __init__(self):
    self.retailcrm = StandIn("retailcrm")
    self.uon = StandIn("uon")
    self.ms = StandIn("ms")

  def all(self):
    return [self.retailcrm, self.uon, self.ms]

  def by_name(self, name):
    return getattr(self, name)

  def start(self):
    for s in self.all():
      s.start()
    return self

  def args(self):
    """Service flags pointing the three base URLs at the stand-ins."""
    return ["--retailcrm-url", self.retailcrm.url, "--uon-url", self.uon.url,
            "--ms-url", self.ms.url]

  def reset(self):
    for s in self.all():
      s.reset()
      s.start()

  def close(self):
    for s in self.all():
      s.close()

  def summary(self):
    return "\n".join(s.summary() for s in self.all())


class StandInTestCase(IntegrationTestCase):
  """An integration test case with the three CRM stand-ins: started once per class
  (start_standins), reset before each test, summarised in the output when a test fails."""

  crm = None

  @classmethod
  def start_standins(cls):
    cls.crm = CrmStandIns().start()
    cls.addClassCleanup(cls.crm.close)

  def setUp(self):
    super().setUp()
    self.crm.reset()

  def tearDown(self):
    if self._failed():
      sys.stderr.write("\n----- stand-ins (%s) -----\n%s\n" % (self.id(), self.crm.summary()))
      for svc in list(self.class_services) + self._services:
        if svc.proc is not None and svc.proc.poll() is not None:
          sys.stderr.write("----- %s (port %s) has exited with status %s -----\n"
                           % (svc.name, svc.port, svc.proc.returncode))
    super().tearDown()
