"""Pieces bench/report.py and bench/report_profile.py share: reading run.sh's tab-separated
files and writing Markdown tables. Standard library only."""

import csv


def read_tsv(path, header=True):
  try:
    with open(path, encoding="utf-8") as f:
      if header:
        return list(csv.DictReader(f, delimiter="\t"))
      return [line.rstrip("\n").split("\t") for line in f if line.strip()]
  except OSError:
    return []


def table(header, rows):
  """A Markdown table; it reads well as plain text too."""
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
  out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
  out += [line(r) for r in rows]
  return "\n".join(out)
