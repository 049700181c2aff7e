"""integration_cache.sh, as an operator runs it: start waits for /ready, status/stats/health
answer, stop ends the process by its pid, and a stale pid file never kills another process."""
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import harness


class ScriptTest(harness.IntegrationTestCase):
  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(prefix="ic-script-")
    self.addCleanup(shutil.rmtree, self.dir, True)
    shutil.copy(os.path.join(harness.SOURCE_DIR, "integration_cache.sh"), self.dir)
    self.port = harness.free_port()
    self.env = harness.clean_env()
    self.env.update({"IC_BINARY": harness.BINARY, "IC_LISTEN": "127.0.0.1:%d" % self.port,
                     "DATABASE_URL": self.cluster.conninfo(),
                     "IC_SPOOL_DIR": os.path.join(self.dir, "spool")})
    self.addCleanup(self.script, "stop")

  def script(self, *args):
    return subprocess.run([os.path.join(self.dir, "integration_cache.sh")] + list(args),
                          env=self.env, capture_output=True, text=True, timeout=harness.deadline(60))

  def pid(self):
    with open(os.path.join(self.dir, "run", "integration_cache.pid")) as f:
      return int(f.read())

  def test_start_status_stats_stop(self):
    started = self.script("start")
    self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
    self.assertIn("ready", started.stdout)
    pid = self.pid()
    os.kill(pid, 0)  # alive
    # threads carry names for top -H and the bench's profiles (README, How it works)
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
      with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
        names.append(f.read().strip())
    self.assertIn("ic-reaper", names)
    self.assertIn("MHD-single", names)
    with urllib.request.urlopen("http://127.0.0.1:%d/ready" % self.port, timeout=5) as r:
      self.assertEqual(r.status, 200)
    self.assertIn("already running", self.script("start").stdout)
    status = self.script("status")
    self.assertEqual(status.returncode, 0)
    self.assertIn("running (pid %d)" % pid, status.stdout)
    stats = self.script("stats")
    self.assertEqual(stats.returncode, 0)
    self.assertIn("hits", json.loads(stats.stdout))
    self.assertIn(json.loads(self.script("health").stdout)["status"], ("healthy", "degraded"))
    stopped = self.script("stop")
    self.assertIn("stopped", stopped.stdout)
    harness.wait_until(lambda: not os.path.exists("/proc/%d" % pid), harness.deadline(5),
                       message="process still there after stop")
    self.assertFalse(os.path.exists(os.path.join(self.dir, "run", "integration_cache.pid")))
    self.assertEqual(self.script("status").returncode, 3)
    with open(os.path.join(self.dir, "logs", "integration_cache.log")) as f:
      log = f.read()
    self.assertIn("Cache refreshed:", log)
    self.assertNotIn(self.cluster.conninfo(), log)

  def test_stale_pid_file_kills_nothing(self):
    bystander = subprocess.Popen(["sleep", "60"])
    self.addCleanup(bystander.kill)
    os.makedirs(os.path.join(self.dir, "run"))
    with open(os.path.join(self.dir, "run", "integration_cache.pid"), "w") as f:
      f.write(str(bystander.pid))
    self.assertIn("not running", self.script("stop").stdout)
    self.assertIsNone(bystander.poll(), "stop killed a process that was not the service")

  def test_failed_start_says_why(self):
    self.env["IC_TTL"] = "-5"
    started = self.script("start")
    self.assertNotEqual(started.returncode, 0)
    self.assertIn("IC_TTL", started.stderr)


if __name__ == "__main__":
  import unittest
  unittest.main()
