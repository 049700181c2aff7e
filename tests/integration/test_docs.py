"""The README's settings table is the binary's own (--help-markdown), so docs and code agree."""
import os
import subprocess
import unittest

BINARY = os.environ.get("IC_BINARY", "../../build/integration_cache")
SOURCE = os.environ.get("IC_SOURCE_DIR", "../..")


class DocsTest(unittest.TestCase):
  def test_readme_settings_table_matches_binary(self):
    table = subprocess.run([BINARY, "--help-markdown"], capture_output=True, text=True,
                           check=False)
    self.assertEqual(table.returncode, 0)
    rows = [line for line in table.stdout.splitlines() if line.startswith("| `--")]
    self.assertGreater(len(rows), 20)
    with open(os.path.join(SOURCE, "README.md"), encoding="utf-8") as f:
      readme = f.read()
    missing = [row for row in rows if row not in readme]
    self.assertEqual(missing, [], "README.md settings table is out of date: run "
                     "build/integration_cache --help-markdown and paste it")

  def test_readme_names_the_two_commands(self):
    with open(os.path.join(SOURCE, "README.md"), encoding="utf-8") as f:
      readme = f.read()
    self.assertIn("make demo", readme)
    self.assertIn("make test", readme)


if __name__ == "__main__":
  unittest.main()
