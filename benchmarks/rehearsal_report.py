"""Summarise a finished rehearsal as markdown: per-rule job counts, times and memory, and its coverage.

    python benchmarks/rehearsal_report.py --results results/rehearsal --wall-s 1234 \
        --configfile config/paper.yaml config/rehearsal.yaml config/rehearsal_covering.yaml \
        --out benchmarks/results/rehearsal.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.io import atomic_path  # noqa: E402
from bobench.rehearsal.check import planned_cells  # noqa: E402
from bobench.rehearsal.report import coverage, markdown_report, rule_times  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "rehearsal")
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--title", default="Rehearsal")
    parser.add_argument("--command", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    table = args.results / "results.csv"
    covered = coverage(pd.read_csv(table), planned_cells(args.results)) if table.is_file() else None
    text = markdown_report(args.title, args.wall_s, rule_times(args.results), covered, args.command)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
