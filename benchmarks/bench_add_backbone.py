"""Time to a new backbone's rank on the demo battle: run the battle without one backbone, then add it.

The second run is what a user waits for when the others' results are cached: Snakemake runs only the added
backbone's jobs (and any preparation no other backbone needed), then the aggregates (collect, rank, tables,
figures, report). This script times both runs, lists the second run's jobs per rule (from Snakemake's job
stats) next to the planner's ``--backbone`` plan, and sums the ``benchmark:`` records the second run wrote
per rule. It writes ``benchmarks/results/add_backbone.md``.

    nice -n 19 python benchmarks/bench_add_backbone.py --workdir /tmp/add-backbone [--backbone effnet_lite2_in1k]

``--workdir`` is the run's directory (``snakemake --directory``; the demo's data and results go there): use
an empty one, it takes about as long as the demo battle itself, then the second run.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.io import atomic_path  # noqa: E402
from bobench.plan import load_battle, make_plan  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "add_backbone.md"
DEMO = ROOT / "config" / "config.yaml"


def without(config: dict, backbone: str) -> dict:
    """The overlay that leaves ``backbone`` out of the demo: its ``backbones`` and every ``task_backbones`` list."""
    if backbone not in config["backbones"]:
        raise SystemExit(f"--backbone {backbone}: not in {DEMO.name}'s backbones {config['backbones']}")
    overlay = {"backbones": [b for b in config["backbones"] if b != backbone]}
    lists = {task: [b for b in chosen if b != backbone] for task, chosen in (config.get("task_backbones") or {}).items()}
    if lists:
        overlay["task_backbones"] = lists
    return overlay


def snakemake(workdir: Path, configfiles: list[Path], cores: int, dry: bool = False) -> tuple[float, str]:
    """One Snakemake invocation in ``workdir``; its wall time and stdout + stderr."""
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", *map(str, configfiles)] + (["-n"] if dry else [])
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    log = run.stdout + run.stderr
    if run.returncode != 0:
        raise SystemExit(f"snakemake failed ({' '.join(command)}):\n{log[-4000:]}")
    return elapsed, log


def job_stats(log: str) -> Counter:
    """Jobs per rule from the first ``Job stats:`` table of a Snakemake log (empty: nothing to do)."""
    if "Job stats:" not in log:
        return Counter()
    table = log[log.index("Job stats:") :].split("\ntotal")[0]
    return Counter({rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M) if rule != "job"})


def benchmark_seconds(results: Path, since: float) -> dict[str, float]:
    """Seconds per rule from the ``benchmark:`` records (``logs/benchmarks/<rule>/…tsv``) written after ``since``."""
    seconds: dict[str, float] = defaultdict(float)
    root = results / "logs" / "benchmarks"
    for path in root.rglob("*.tsv") if root.is_dir() else []:
        if path.stat().st_mtime >= since:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            seconds[path.relative_to(root).parts[0]] += sum(float(r["s"]) for r in rows)
    return dict(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--backbone", default="effnet_lite2_in1k")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    demo = yaml.safe_load(DEMO.read_text())
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "without_backbone.yaml"
    overlay.write_text(yaml.safe_dump(without(demo, args.backbone)))

    first_s, _ = snakemake(workdir, [DEMO, overlay], args.cores)
    _, dry = snakemake(workdir, [DEMO], args.cores, dry=True)
    second_started = time.time()
    second_s, log = snakemake(workdir, [DEMO], args.cores)
    ran = job_stats(log)
    seconds = benchmark_seconds(workdir / demo["results_dir"], second_started)
    battle, cells, detectors = load_battle([DEMO])
    planned = Counter(j.rule for j, _ in make_plan(battle, cells, detectors, args.backbone).jobs)

    lines = [
        f"# Time to a new backbone's rank on the demo battle: {args.backbone} added",
        "",
        f"`nice -n 19 python benchmarks/bench_add_backbone.py --backbone {args.backbone} --cores {args.cores}` "
        f"({datetime.date.today().isoformat()}); {platform.machine()}, {os.cpu_count()} cores, "
        f"`snakemake --cores {args.cores}`.",
        "",
        f"* the demo battle without {args.backbone}: **{first_s / 60:.1f} min**",
        f"* then with it (only its jobs and the aggregates): **{second_s / 60:.1f} min**",
        "",
        "| rule | jobs run (Snakemake) | the planner's `--backbone` jobs | seconds (benchmark records) |",
        "|---|---:|---:|---:|",
    ]
    for rule in sorted(set(ran) | set(planned), key=lambda r: -seconds.get(r, 0.0)):
        if rule == "all":
            continue
        shown = f"{seconds[rule]:.0f}" if rule in seconds else ""
        lines.append(f"| {rule} | {ran.get(rule, 0)} | {planned.get(rule, '') or ''} | {shown} |")
    lines += [
        "",
        f"The dry run before the second run listed {sum(job_stats(dry).values()) - job_stats(dry).get('all', 0)} jobs; "
        "rules with no planner column are the aggregates, which the planner does not cost.",
    ]
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
