"""Redrawing the figures from a results table: redraw mode against the same work called in-process.

Redraw mode is the documented target,

    snakemake --cores 2 figures report_tables --config results_table=figures/source/results.parquet

run in a fresh directory on the demo battle's committed table (import, ranking with the two-level
bootstrap, every figure, the report's tables and Table 1). The alternative is the same library calls in one
Python process, which is what the workflow's own start-up and job overhead is measured against.

    python benchmarks/bench_redraw.py   →   benchmarks/results/redraw.md
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "figures" / "source" / "results.parquet"
OUT = ROOT / "benchmarks" / "results" / "redraw.md"


def redraw_mode(workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        # The targets go before --config, which takes every word after it as a key=value pair.
        [sys.executable, "-m", "snakemake", "figures", "report_tables", "-s", str(ROOT / "Snakefile"),
         "--directory", str(workdir), "--cores", "2", "--quiet",
         "--configfile", str(ROOT / "config" / "config.yaml"), "--config", f"results_table={TABLE}"],
        check=True, capture_output=True, text=True,
    )
    return time.perf_counter() - started


def in_process(out_dir: Path) -> float:
    started = time.perf_counter()
    from bobench.figures import draw_all, with_score_intervals
    from bobench.ranking import RankingOptions, compute_ranking, write_ranking
    from bobench.ranking_uncertainty import BootstrapOptions, two_level_bootstrap
    from bobench.report_tables import leaderboard_html, results_html, write_html
    from bobench.results import import_results

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    results, replicates = import_results(TABLE)
    options = RankingOptions.from_config(config.get("ranking"))
    ranking = compute_ranking(results, options)
    bootstrap = BootstrapOptions(seed=config.get("seed", 0), aggregate=options.aggregate)
    intervals, iqm, _ = two_level_bootstrap(ranking, replicates, bootstrap)
    out_dir.mkdir(parents=True)
    write_ranking(ranking, out_dir, intervals=intervals, iqm=iqm)
    draw_all(results, with_score_intervals(ranking, intervals), out_dir / "figures")
    write_html(out_dir / "leaderboard.html", leaderboard_html(ranking.overall, ranking.tasks, intervals, iqm))
    write_html(out_dir / "results.html", results_html(results))
    return time.perf_counter() - started


def main() -> None:
    if not TABLE.exists():
        sys.exit(f"{TABLE} is missing: run the demo battle and copy its results table there (README)")
    with tempfile.TemporaryDirectory() as tmp:
        workflow = redraw_mode(Path(tmp) / "workflow")
        library = in_process(Path(tmp) / "library")
    n_rows = len(pd.read_parquet(TABLE))
    text = (
        "# Redrawing the figures from a results table\n\n"
        f"The demo battle's table (`figures/source/results.parquet`, {n_rows} rows), 2-core CPU, one run each:\n\n"
        "| way | wall time |\n|---|---:|\n"
        f"| redraw mode: `snakemake figures report_tables --config results_table=…` in a fresh directory | {workflow:.1f} s |\n"
        f"| the same ranking, figures and tables called in one Python process | {library:.1f} s |\n\n"
        f"Redraw mode takes **{workflow / library:.2f}×** the in-process time: the difference is Snakemake's start-up, "
        "one Python process per rule, and Table 1 (which the in-process path skips).\n"
    )
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
