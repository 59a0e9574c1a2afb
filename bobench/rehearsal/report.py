"""What a rehearsal ran and covered, as markdown: per-rule job counts and times (Snakemake's benchmark
records), peak memory, and the (backbone, task) and (dataset, task) pairs of the DAG it covered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

PEAK_GPU = re.compile(r"peak GPU memory: ([0-9.]+) GiB")


def rule_times(results_dir: str | Path) -> pd.DataFrame:
    """One row per job that has a benchmark record: rule, job (its wildcards as a path), seconds, CPU seconds
    (NaN in a record without them), max RSS (MB), and peak GPU memory (GiB) where its log reports one."""
    root = Path(results_dir) / "logs"
    rows = []
    for tsv in sorted((root / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(root / "benchmarks").parts[0]
        job = str(tsv.relative_to(root / "benchmarks" / rule).with_suffix(""))
        record = pd.read_csv(tsv, sep="\t").iloc[-1]
        log = root / rule / f"{job}.log"
        peak = PEAK_GPU.findall(log.read_text(errors="replace")) if log.is_file() else []
        rows.append({"rule": rule, "job": job, "seconds": float(record["s"]),
                     "cpu_s": float(record.get("cpu_time", float("nan"))), "max_rss_mb": float(record["max_rss"]),
                     "peak_gpu_gib": float(peak[-1]) if peak else None})
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "cpu_s", "max_rss_mb", "peak_gpu_gib"])


def coverage(results: pd.DataFrame, planned: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The (backbone, task) and (dataset, task) pairs of ``planned`` cells (config task names) that the
    results table has rows for."""
    from bobench.config import TASKS

    def label(task: str) -> tuple[str, str]:
        return TASKS[task].task, TASKS[task].protocol

    # A detector's rows carry its setting (finetune or frozen) as their protocol: any setting counts.
    setting_tasks = {TASKS[t].task for t in ("detection", "ood_detection")}
    protocols = [TASKS["detection"].protocol if t in setting_tasks else p for t, p in zip(results["task"], results["protocol"])]
    have_b = {(b, t, p) for b, t, p in zip(results["backbone"], results["task"], protocols)}
    # OOD rows name their test set; the cell is the dataset the model was trained on.
    trained_on = [json.loads(p).get("trained_on") if isinstance(p, str) and p else None for p in results["protocol_params"]]
    have_d = {(src or d, t, p) for d, t, p, src in zip(results["dataset"], results["task"], protocols, trained_on)}
    want_b = {(b, *label(task)) for task, b, _ in planned}
    want_d = {(d, *label(task)) for task, _, d in planned}
    return {
        "backbone_task": (len(want_b & have_b), len(want_b), sorted(want_b - have_b)),
        "dataset_task": (len(want_d & have_d), len(want_d), sorted(want_d - have_d)),
    }


def markdown_report(title: str, wall_s: float, times: pd.DataFrame, covered: dict[str, Any] | None, command: str) -> str:
    lines = [f"# {title}", "", f"Command: `{command}`", "", f"Wall time: {wall_s / 60:.1f} min ({wall_s:.0f} s)", ""]
    if not times.empty:
        per_rule = times.groupby("rule").agg(
            jobs=("seconds", "size"), total_s=("seconds", "sum"), cpu_s=("cpu_s", "sum"), median_s=("seconds", "median"),
            max_s=("seconds", "max"), max_rss_mb=("max_rss_mb", "max"), peak_gpu_gib=("peak_gpu_gib", "max"),
        ).sort_values("total_s", ascending=False)
        lines += ["| rule | jobs | total s | CPU s | median s | max s | max RSS MB | peak GPU GiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for rule, row in per_rule.iterrows():
            gpu = "" if pd.isna(row.peak_gpu_gib) else f"{row.peak_gpu_gib:.1f}"
            lines.append(f"| {rule} | {int(row.jobs)} | {row.total_s:.0f} | {row.cpu_s:.0f} | {row.median_s:.1f} | "
                         f"{row.max_s:.1f} | {row.max_rss_mb:.0f} | {gpu} |")
        lines.append(f"| all | {len(times)} | {times.seconds.sum():.0f} | {times.cpu_s.sum():.0f} | | | | |")
        slowest = times.sort_values("seconds", ascending=False).head(10)
        lines += ["", "Slowest jobs:", "", "| rule | job | s |", "|---|---|---:|"]
        lines += [f"| {r.rule} | {r.job} | {r.seconds:.0f} |" for r in slowest.itertuples()]
    if covered:
        lines += ["", "Coverage of the DAG's pairs (task, protocol):", ""]
        for name, (got, wanted, missing) in covered.items():
            lines.append(f"- {name.replace('_', ' × ')}: {got} of {wanted}" + (f"; missing: {missing}" if missing else ""))
    return "\n".join(lines) + "\n"
