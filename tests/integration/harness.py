"""Shared helpers for the black-box integration tests (standard library only).

PgCluster wraps scripts/pgcluster.sh (a throw-away PostgreSQL 15 owned by the postgres user),
Service starts the real binary on a free port with its output in a log file, and
IntegrationTestCase ties them to unittest: one cluster per test class, services per test or per
class, everything stopped by pid in cleanups even when a test fails, and the service log printed
to stderr when a test fails. Deadlines go through `deadline()`, which triples them for
sanitizer builds (IC_SANITIZED=1).
"""

import collections
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("IC_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BINARY = os.environ.get("IC_BINARY") or os.path.join(SOURCE_DIR, "build", "integration_cache")
PGCLUSTER = os.path.join(SOURCE_DIR, "scripts", "pgcluster.sh")
SANITIZED = os.environ.get("IC_SANITIZED", "0").strip().lower() in ("1", "on", "true", "yes")
SLOWDOWN = 3.0 if SANITIZED else 1.0

# ISO local time with microseconds, no zone (SPEC §3): 2025-09-06T11:43:46.198319
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")

# The platform's table: more columns than the service reads (SPEC §2.1).
ENTERPRISES_DDL = """
CREATE TABLE IF NOT EXISTS enterprises (
  id serial PRIMARY KEY,
  number text UNIQUE NOT NULL,
  name text,
  name2 text,
  secret text,
  active boolean DEFAULT true,
  integrations_config jsonb,
  created_at timestamptz DEFAULT now(),
  host text,
  bot_token text,
  parameter_option_1 boolean DEFAULT false
);
"""


# Everything started and not yet cleaned up, so that a test run killed from outside (a CTest
# timeout sends SIGTERM, a terminal SIGHUP) still stops its clusters and services by pid.
_LIVE = []


def _cleanup_live(signum, frame):
  for thing in reversed(list(_LIVE)):
    try:
      thing.emergency_stop()
    except Exception:  # noqa: BLE001 -- best effort while dying
      pass
  signal.signal(signum, signal.SIG_DFL)
  os.kill(os.getpid(), signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
  signal.signal(_sig, _cleanup_live)


def _die_with_parent():
  """preexec_fn: the service gets SIGKILL if the test process dies (Linux PR_SET_PDEATHSIG)."""
  try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
  except Exception:  # noqa: BLE001 -- not Linux: the registry above still applies
    pass


def deadline(seconds):
  """A functional deadline, stretched for sanitizer builds."""
  return seconds * SLOWDOWN


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, message=""):
  """Polls predicate() until it returns something truthy and returns that value. `timeout` is
  stretched by deadline(). An exception inside predicate() counts as "not yet" (a service that is
  restarting refuses connections); the last value or exception is reported on timeout."""
  end = time.monotonic() + deadline(timeout)
  last = None
  while True:
    try:
      last = predicate()
      if last:
        return last
    except Exception as exc:  # noqa: BLE001 -- reported below
      last = exc
    if time.monotonic() >= end:
      raise AssertionError("%s: not true within %.1fs (last: %r)"
                           % (message or "condition", deadline(timeout), last))
    time.sleep(interval)


def is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- SQL helpers ------------------------------------------------------------------------------

def sql_text(value):
  if value is None:
    return "NULL"
  return "'" + str(value).replace("'", "''") + "'"


class RawSql(str):
  """A config given as a SQL expression, e.g. RawSql("'[1,2]'::jsonb")."""


def sql_jsonb(doc):
  if doc is None:
    return "NULL"
  if isinstance(doc, RawSql):
    return str(doc)
  return sql_text(json.dumps(doc, ensure_ascii=False)) + "::jsonb"


def insert_sql(number, config, active=True, name2=None, secret=None):
  """One INSERT of an enterprise; config None is SQL NULL."""
  return ("INSERT INTO enterprises (number, name, name2, secret, active, integrations_config) "
          "VALUES (%s, %s, %s, %s, %s, %s);\n"
          % (sql_text(number), sql_text("Test Enterprise " + number),
             sql_text(name2 if name2 is not None else "test-name2-" + number),
             sql_text(secret if secret is not None else "test-secret-" + number),
             "true" if active else "false", sql_jsonb(config)))


def clean_env():
  """The test process's environment without anything that would steer the service: our own
  IC_BINARY/IC_SOURCE_DIR/IC_SANITIZED, libpq's PG* variables and DATABASE_URL."""
  env = {k: v for k, v in os.environ.items()
         if not (k.startswith("IC_") or k.startswith("PG") or k == "DATABASE_URL")}
  env.setdefault("LC_ALL", "C.UTF-8")
  return env


# ---- PostgreSQL -------------------------------------------------------------------------------

class PgCluster:
  """A throw-away cluster in its own temporary directory; restarts reuse the same port."""

  def __init__(self):
    self.tmp = tempfile.mkdtemp(prefix="ic-test-pg-")
    self.dir = os.path.join(self.tmp, "pg")
    self.port = None
    self.running = False

  def _script(self, command, env=None):
    proc = subprocess.run([PGCLUSTER, command, self.dir], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    if proc.returncode != 0:
      raise RuntimeError("pgcluster.sh %s failed (%d): %s" % (command, proc.returncode,
                                                              proc.stderr.strip()))
    return proc.stdout

  def start(self):
    env = dict(os.environ)
    env.setdefault("PGCLUSTER_FSYNC", "off")  # test data only
    if self.port:
      env["PGCLUSTER_PORT"] = str(self.port)  # restart: the service reconnects to the same address
    if self not in _LIVE:
      _LIVE.append(self)
    self.port = int(self._script("start", env).strip().splitlines()[-1])
    self.running = True
    return self.port

  def stop(self):
    self._script("stop")
    self.running = False

  def kill(self):
    self._script("kill")
    self.running = False

  def restart(self):
    self.stop()
    self.start()

  def ensure_running(self):
    if not self.running:
      self.start()

  def cleanup(self):
    try:
      self.stop()
    finally:
      shutil.rmtree(self.tmp, ignore_errors=True)
      if self in _LIVE:
        _LIVE.remove(self)

  def emergency_stop(self):
    self.kill()
    shutil.rmtree(self.tmp, ignore_errors=True)

  def conninfo(self, **extra):
    params = {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": "postgres"}
    params.update(extra)
    return " ".join("%s=%s" % kv for kv in params.items())

  def psql(self, sql):
    """Runs SQL through the psql CLI (ON_ERROR_STOP, tuples only, unaligned); returns stdout
    without the final newline. Raises on any error."""
    env = clean_env()
    env.update(PGCLIENTENCODING="UTF8", PGCONNECT_TIMEOUT="5")
    proc = subprocess.run(["psql", self.conninfo(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA",
                           "-f", "-"], input=sql, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    if proc.returncode != 0:
      raise RuntimeError("psql failed (%d): %s\nSQL: %s" % (proc.returncode, proc.stderr.strip(),
                                                            sql[:2000]))
    return proc.stdout.rstrip("\n")

  def rows(self, sql):
    """psql() split into rows of '|'-separated columns (text; empty text for NULL)."""
    out = self.psql(sql)
    return [tuple(line.split("|")) for line in out.splitlines()] if out else []

  def config_of(self, number):
    """integrations_config of one enterprise from the database, parsed (None for NULL)."""
    out = self.psql("SELECT coalesce(integrations_config::text, 'null') FROM enterprises "
                    "WHERE number = %s" % sql_text(number))
    if out == "":
      raise AssertionError("enterprise %s is not in the table" % number)
    return json.loads(out)


# ---- the service ------------------------------------------------------------------------------

class Response(collections.namedtuple("Response", "status headers body")):
  """(status, headers, parsed JSON body). headers is case-insensitive; body is None for an empty
  body and the decoded text when it is not JSON. `raw` holds the bytes."""
  raw = b""


def _parse_body(raw):
  if not raw:
    return None
  try:
    return json.loads(raw)
  except ValueError:
    return raw.decode("utf-8", "replace")


def run_binary(args, db=None, env=None, timeout=30):
  """Runs the binary to completion (migrate, --help, bad settings); returns CompletedProcess
  with text stdout/stderr. A binary that does not exit in time is killed and reported."""
  full_env = clean_env()
  if db:
    full_env["DATABASE_URL"] = db
  full_env.update(env or {})
  cwd = tempfile.mkdtemp(prefix="ic-test-run-")
  try:
    proc = subprocess.Popen([BINARY] + list(args), env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
      out, err = proc.communicate(timeout=deadline(timeout))
    except subprocess.TimeoutExpired:
      proc.kill()
      out, err = proc.communicate()
      raise AssertionError("%s %s did not exit within %.0fs; output:\n%s%s"
                           % (BINARY, " ".join(args), deadline(timeout), out, err))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
  finally:
    shutil.rmtree(cwd, ignore_errors=True)


class Service:
  """The real binary (`serve`) on a free loopback port, in its own temporary working directory
  (so logs/ and var/spool stay private), stdout and stderr in `service.log` there."""

  def __init__(self, db, args=(), env=None, name="service"):
    self.db = db
    self.args = list(args)
    self.env = dict(env or {})
    self.name = name
    self.port = None
    self.proc = None
    self.tmp = tempfile.mkdtemp(prefix="ic-test-svc-")
    self.log_path = os.path.join(self.tmp, "service.log")

  def start(self, wait_ready=True):
    self.port = free_port()
    env = clean_env()
    if self.db:  # "" or None: no DATABASE_URL (libpq's PG* variables, or --db in args)
      env["DATABASE_URL"] = self.db
    env.update(self.env)
    cmd = [BINARY, "serve", "--listen", "127.0.0.1:%d" % self.port] + self.args
    with open(self.log_path, "ab") as log:
      # the command line heads the log, with any password masked (tests look for leaks)
      log.write(("# %s\n" % re.sub(r"password=\S+", "password=***", " ".join(cmd))).encode())
      log.flush()
      self.proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    _LIVE.append(self)
    if wait_ready:
      self.wait_ready()
    return self

  def running(self):
    return self.proc is not None and self.proc.poll() is None

  def restart(self, wait_ready=True):
    """Starts the same service again after it exited or was killed: same arguments, environment
    and working directory (so the same spool and log file), a new port."""
    if self.running():
      raise AssertionError("%s is still running; stop or kill it first" % self.name)
    if self in _LIVE:
      _LIVE.remove(self)
    return self.start(wait_ready)

  def _check_alive(self):
    if self.proc is not None and self.proc.poll() is not None:
      raise AssertionError("%s exited unexpectedly with status %s; log:\n%s"
                           % (self.name, self.proc.returncode, self.log_text()))

  def wait_listening(self, timeout=15):
    """Until the port answers HTTP at all (any status)."""
    end = time.monotonic() + deadline(timeout)
    while True:
      self._check_alive()
      try:
        return self.get("/ready", timeout=2).status
      except OSError:
        pass
      if time.monotonic() >= end:
        raise AssertionError("%s did not answer HTTP within %.0fs; log:\n%s"
                             % (self.name, deadline(timeout), self.log_text()))
      time.sleep(0.05)

  def wait_ready(self, timeout=15):
    """Until GET /ready answers 200 (first full load done)."""
    end = time.monotonic() + deadline(timeout)
    status = None
    while True:
      self._check_alive()
      try:
        status = self.get("/ready", timeout=2).status
        if status == 200:
          return
      except OSError as exc:
        status = exc
      if time.monotonic() >= end:
        raise AssertionError("%s not ready within %.0fs (last /ready: %r); log:\n%s"
                             % (self.name, deadline(timeout), status, self.log_text()))
      time.sleep(0.05)

  # -- HTTP --

  def connection(self, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", self.port, timeout=deadline(timeout))

  def request(self, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection. A dict/list body is sent as JSON; str/bytes as is."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (str, bytes)):
      body = json.dumps(body)
      headers.setdefault("Content-Type", "application/json")
    conn = self.connection(timeout)
    try:
      conn.request(method, path, body=body, headers=headers)
      return read_response(conn)
    finally:
      conn.close()

  def get(self, path, **kw):
    return self.request("GET", path, **kw)

  def put(self, path, body=None, **kw):
    return self.request("PUT", path, body=body, **kw)

  def post(self, path, body=None, **kw):
    return self.request("POST", path, body=body, **kw)

  def delete(self, path, **kw):
    return self.request("DELETE", path, **kw)

  def stats(self):
    r = self.get("/stats")
    if r.status != 200 or not isinstance(r.body, dict):
      raise AssertionError("GET /stats answered %s %r" % (r.status, r.body))
    return r.body

  # -- process control --

  def signal(self, signum=signal.SIGTERM, timeout=10):
    """Sends signum and waits for the exit; returns the exit status."""
    self._check_alive()
    self.proc.send_signal(signum)
    try:
      return self.proc.wait(deadline(timeout))
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
      raise AssertionError("%s did not exit within %.0fs of signal %d; log:\n%s"
                           % (self.name, deadline(timeout), signum, self.log_text()))

  def stop(self, timeout=10):
    """SIGTERM; asserts a clean exit (status 0)."""
    status = self.signal(signal.SIGTERM, timeout)
    if status != 0:
      raise AssertionError("%s exited with status %d after SIGTERM; log:\n%s"
                           % (self.name, status, self.log_text()))
    return status

  def kill(self):
    if self.running():
      self.proc.kill()
      self.proc.wait()

  def close(self):
    """Cleanup: whatever state it is in, the process is gone afterwards (TERM, then KILL)."""
    if self.running():
      self.proc.terminate()
      try:
        self.proc.wait(deadline(5))
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    shutil.rmtree(self.tmp, ignore_errors=True)
    if self in _LIVE:
      _LIVE.remove(self)

  def emergency_stop(self):
    if self.running():
      self.proc.kill()
    shutil.rmtree(self.tmp, ignore_errors=True)

  def log_size(self):
    try:
      return os.path.getsize(self.log_path)
    except OSError:
      return 0

  def log_text(self, since=0):
    try:
      with open(self.log_path, "rb") as f:
        f.seek(since)
        return f.read().decode("utf-8", "replace")
    except OSError:
      return ""


def read_response(conn):
  resp = conn.getresponse()
  raw = resp.read()
  r = Response(resp.status, resp.msg, _parse_body(raw))
  r.raw = raw
  return r


# ---- raw sockets (limits, pipelining) -----------------------------------------------------------

def recv_until_closed(sock):
  """Everything the server sends until it closes the connection (or the socket times out)."""
  chunks = []
  while True:
    try:
      chunk = sock.recv(65536)
    except (ConnectionResetError, socket.timeout):
      break
    if not chunk:
      break
    chunks.append(chunk)
  return b"".join(chunks)


def raw_exchange(port, head, body=None, timeout=5):
  """Sends a hand-made request and returns every byte received until the peer closes or stays
  quiet for `timeout` (b"" when it closed without answering). With a body, the head goes first and
  the body only when no early answer (say a 413 decided from Content-Length) arrives within
  0.5 s, so a server that refuses a body is not fed one it will never read."""
  with socket.create_connection(("127.0.0.1", port), timeout=deadline(timeout)) as s:
    try:
      s.sendall(head)
      if body:
        ready, _, _ = select.select([s], [], [], 0.5)
        if not ready:
          s.sendall(body)
    except (BrokenPipeError, ConnectionResetError):
      pass
    return recv_until_closed(s)


def parse_responses(data):
  """Splits raw bytes into [(status, {lower-case header: value}, body bytes)]; responses need a
  Content-Length (what the service sends). Stops at the first incomplete response."""
  out = []
  while data:
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
      break
    lines = data[:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
      name, _, value = line.partition(":")
      headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    start = head_end + 4
    if len(data) < start + length:
      break
    out.append((status, headers, data[start:start + length]))
    data = data[start + length:]
  return out


# ---- unittest glue ----------------------------------------------------------------------------

class IntegrationTestCase(unittest.TestCase):
  """One PostgreSQL cluster per test class (setUpClass), with the enterprises table and the
  service's migrations applied. Services started with start_service() (per test) or
  start_class_service() (per class) are stopped in cleanups; when a test fails, the log of every
  service involved (for class services: only what was logged during that test) goes to stderr."""

  cluster = None
  class_services = []
  maxDiff = None

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not os.access(BINARY, os.X_OK):
      raise RuntimeError("service binary not found: %s (run `make build`; IC_BINARY overrides)"
                         % BINARY)
    cls.class_services = []
    cls.cluster = PgCluster()
    cls.addClassCleanup(cls.cluster.cleanup)
    cls.cluster.start()
    cls.cluster.psql(ENTERPRISES_DDL)
    cls.migrate()

  @classmethod
  def migrate(cls):
    proc = run_binary(["migrate"], db=cls.cluster.conninfo())
    if proc.returncode != 0:
      raise RuntimeError("migrate failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc

  @classmethod
  def start_class_service(cls, *args, env=None, db=None, wait_ready=True):
    svc = Service(cls.cluster.conninfo() if db is None else db, args, env, name="class service")
    cls.addClassCleanup(svc.close)
    cls.class_services.append(svc)
    return svc.start(wait_ready)

  def start_service(self, *args, env=None, db=None, wait_ready=True):
    """db None: the class cluster via DATABASE_URL; "": no DATABASE_URL at all."""
    svc = Service(self.cluster.conninfo() if db is None else db, args, env, name="service")
    self.addCleanup(svc.close)
    self._services.append(svc)
    self._log_marks[svc] = 0
    return svc.start(wait_ready)

  @classmethod
  def reset_enterprises(cls, sql_rows=""):
    """Empties the table (DELETE: outbox tables may reference it) and inserts the given rows."""
    cls.cluster.psql("BEGIN;\nDELETE FROM enterprises;\n%sCOMMIT;\n" % sql_rows)

  def setUp(self):
    super().setUp()
    self._services = []
    self._log_marks = {svc: svc.log_size() for svc in self.class_services}

  def tearDown(self):
    if self._failed() or os.environ.get("IC_TEST_SHOW_LOGS"):
      for svc in list(self.class_services) + self._services:
        text = svc.log_text(self._log_marks.get(svc, 0))
        lines = text.splitlines()
        if len(lines) > 400:
          lines = ["... (%d earlier lines)" % (len(lines) - 400)] + lines[-400:]
        sys.stderr.write("\n----- %s log (%s), port %s -----\n%s\n----- end of log -----\n"
                         % (svc.name, self.id(), svc.port, "\n".join(lines)))
    super().tearDown()

  def _failed(self):
    outcome = getattr(self, "_outcome", None)
    if outcome is None:
      return False
    errors = getattr(outcome, "errors", None)  # Python < 3.11 collects them on the outcome
    if errors:
      return any(exc is not None for _, exc in errors)
    # Python >= 3.11 reports each failure (and subtest failure) to the result at once
    result = getattr(outcome, "result", None)
    reported = getattr(result, "errors", []) + getattr(result, "failures", [])
    return any(test is self or getattr(test, "test_case", None) is self for test, _ in reported)

  # -- assertions shared by the files --

  def assertJsonResponse(self, r, status, body=None):
    """Status, JSON Content-Type, and (when given) the exact parsed body."""
    self.assertEqual(r.status, status, "body: %r" % (r.body,))
    ctype = r.headers.get("Content-Type", "")
    self.assertTrue(ctype.startswith("application/json"),
                    "Content-Type %r for %d %r" % (ctype, r.status, r.raw[:200]))
    if body is not None:
      self.assertEqual(r.body, body)

  def assertDetail(self, r, status, detail):
    self.assertJsonResponse(r, status, {"detail": detail})
