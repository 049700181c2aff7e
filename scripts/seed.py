#!/usr/bin/env python3
"""Prints SQL that creates a production-like `enterprises` table and fills it with demo tenants.

Used by `make demo` (50 enterprises plus three edge cases) and by the benchmarks (100,000 rows with
`--config-bytes 2000`). The output is deterministic: the same options always print the same SQL, so
a benchmark or a demo can be reproduced exactly. Secrets are obvious placeholders
("demo-retailcrm-key-0101"); nothing here is a real credential.

Rows go in as multi-row INSERTs of 1000 rows inside one transaction (fast enough for 100,000 rows
in seconds) with ON CONFLICT DO NOTHING, so running the script twice against one database is
harmless. Standard library only.

  python3 scripts/seed.py [--count N] [--first 100] [--config-bytes B] [--no-extras] | psql ...
"""

import argparse
import json
import sys

# The platform owns this table; it has more columns than the service reads (SPEC §2.1).
TABLE_SQL = """\
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
  is_enabled boolean DEFAULT true,
  parameter_option_1 boolean DEFAULT false
);"""

COLUMNS = "(number, name, name2, secret, active, integrations_config, host, bot_token)"
BATCH_ROWS = 1000

# The `enabled` spellings seen in production (SPEC §2.1): true, 1 and "true" in any case enable.
ENABLED_VALUES = [True, False, 1, "true", "TRUE", "false"]
# Which integrations a tenant has; offset 0 (enterprise 0101 by default) has all of them, like the
# SPEC's example document.
PRESENCE = [
  ("retailcrm", "ms", "uon"),
  ("retailcrm",),
  ("ms",),
  ("retailcrm", "ms"),
  ("uon",),
  ("ms", "uon"),
  ("retailcrm", "uon"),
  ("retailcrm", "bitrix24"),
]
MODES = ["routing+name", "name", "routing"]


def fake_uuid(kind, i):
  """A UUID-shaped placeholder that is visibly not random: 00000000-0000-4000-8<kind>-<i>."""
  return "00000000-0000-4000-8%03d-%012d" % (kind, i)


def make_config(i, number, config_bytes):
  """The integrations_config document of demo enterprise i (deterministic)."""
  k = i - 101  # offset so that enterprise 0101 is the SPEC's example
  present = PRESENCE[k % len(PRESENCE)]
  ext = 150 + (i % 50)
  doc = {}
  if "retailcrm" in present:
    doc["retailcrm"] = {
      "enabled": ENABLED_VALUES[k % 6],
      "domain": "https://demo%d.retailcrm.example" % i,
      "api_key": "demo-retailcrm-key-%s" % number,
      "user_extensions": {"19": str(ext), "18": str(ext + 1)},
    }
  if "ms" in present:
    doc["ms"] = {
      "enabled": ENABLED_VALUES[(5 * k) % 6],
      "api_token": "demo-ms-token-%s" % number,
      "webhook_uuid": fake_uuid(1, i),
      "employee_mapping": {
        str(ext + 1): {"name": "Demo Employee %d" % (ext + 1), "employee_id": fake_uuid(2, i)},
      },
      "incoming_call_actions": {"create_client": k % 2 == 0},
    }
  if "uon" in present:
    doc["uon"] = {
      "enabled": ENABLED_VALUES[(k + 1) % 6],
      "api_key": "demo-uon-key-%s" % number,
      "user_extensions": {"42": str(ext + 2)},
    }
  if "bitrix24" in present:
    doc["bitrix24"] = {
      "enabled": ENABLED_VALUES[(k + 2) % 6],
      "domain": "https://demo%d.bitrix24.example" % i,
      "webhook_token": "demo-bitrix24-token-%s" % number,
    }
  crms = [t for t in ("ms", "retailcrm", "uon") if t in doc]
  if crms:
    smart = {}
    if k % 5 != 4:  # every fifth tenant leaves `primary` out: the default (retailcrm) applies
      smart["primary"] = crms[k % len(crms)]
    smart.update({"mode": MODES[k % len(MODES)], "lines": {}})
    doc["smart"] = smart
  if config_bytes:
    pad(doc, i, config_bytes)
  return doc


def pad(doc, i, config_bytes):
  """Grows the document to about config_bytes of JSON for benchmarks, the way real configs grow:
  more extension mappings, then a free-text comment for the last few bytes."""
  holder = next((doc[t] for t in ("retailcrm", "uon") if t in doc), None)
  if holder is None:
    holder = doc.setdefault("uon", {"enabled": False, "api_key": "demo-uon-key-%04d" % i})
  exts = holder.setdefault("user_extensions", {})
  missing = config_bytes - len(json.dumps(doc))
  for n in range(max(0, missing // 16)):  # one `"1234": "567", ` is about 16 bytes
    exts[str(1000 + n)] = str(100 + (n * 37 + i) % 900)
  missing = config_bytes - len(json.dumps(doc)) - len(', "comment": ""')
  if missing > 0:
    text = "".join("demo line %d of tenant %d. " % (n, i) for n in range(missing // 20 + 1))
    holder["comment"] = text[:missing]


def sql_text(value):
  """A SQL string literal (standard_conforming_strings is on in every supported PostgreSQL)."""
  if value is None:
    return "NULL"
  return "'" + value.replace("'", "''") + "'"


def sql_json(doc):
  if doc is None:
    return "NULL"
  return sql_text(json.dumps(doc, ensure_ascii=False, separators=(", ", ": "))) + "::jsonb"


def rows(args):
  """Yields (number, active, config) for every enterprise, extras last."""
  for i in range(args.first, args.first + args.count):
    number = "%04d" % i
    yield number, True, make_config(i, number, args.config_bytes)
  if args.extras:
    after = args.first + args.count
    number = "%04d" % after
    yield number, False, make_config(after, number, 0)  # inactive: configured, never served
    yield "%04d" % (after + 1), True, None  # NULL config: not served
    yield "%04d" % (after + 2), True, {}  # empty config: served, no integrations


def row_sql(number, active, config):
  values = [
    sql_text(number),
    sql_text("Demo Enterprise %s" % number),
    sql_text("demo-name2-%s" % number),
    sql_text("demo-secret-%s" % number),
    "true" if active else "false",
    sql_json(config),
    sql_text("10.0.0.%d" % (int(number) % 250 + 1)),
    "NULL",
  ]
  return "(" + ", ".join(values) + ")"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--count", type=int, default=50, help="demo enterprises (default 50)")
  parser.add_argument("--first", type=int, default=100,
                      help="first enterprise number (default 100)")
  parser.add_argument("--config-bytes", type=int, default=0, metavar="B",
                      help="pad each integrations_config to about B bytes of JSON (benchmarks)")
  parser.add_argument("--extras", action=argparse.BooleanOptionalAction, default=True,
                      help="add an inactive enterprise, one with NULL config and one with {} "
                           "(numbered right after the demo range; default on)")
  args = parser.parse_args()
  if args.count < 0 or args.first < 0 or args.config_bytes < 0:
    parser.error("--count, --first and --config-bytes must not be negative")

  out = sys.stdout
  out.write("-- generated by scripts/seed.py --count %d --first %d --config-bytes %d %s\n"
            % (args.count, args.first, args.config_bytes,
               "--extras" if args.extras else "--no-extras"))
  if args.extras:
    after = args.first + args.count
    out.write("-- extras: %04d inactive, %04d NULL config, %04d empty config {}\n"
              % (after, after + 1, after + 2))
  out.write("BEGIN;\n%s\n" % TABLE_SQL)
  batch = []

  def flush():
    out.write("INSERT INTO enterprises %s VALUES\n" % COLUMNS)
    out.write(",\n".join(batch))
    out.write("\nON CONFLICT (number) DO NOTHING;\n")
    batch.clear()

  for row in rows(args):
    batch.append(row_sql(*row))
    if len(batch) == BATCH_ROWS:
      flush()
  if batch:
    flush()
  out.write("COMMIT;\n")


if __name__ == "__main__":
  main()
