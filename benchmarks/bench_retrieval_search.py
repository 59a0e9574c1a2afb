"""Exact retrieval search: block-wise (bobench.retrieval) against brute force, side by side in one run.

A database of 200,000 random 768-d descriptors (GLDv2-sized databases are ~760k) and 1,000 queries with
10 random positives each. Two jobs, each done both ways:

* ``evaluate``: rank the whole database for every query and compute every metric (mAP, MRR, P@k, R@k);
  brute force = :func:`~bobench.retrieval.metrics.evaluate_retrieval` with one block holding the full
  query × database similarity matrix, blocks = the library default (``CHUNK_CELLS`` cells per block);
* ``top100``: the 100 best database images per query; brute force = ``torch.topk`` on the full matrix,
  blocks = :func:`~bobench.retrieval.search.search_topk` (``TOPK_CHUNK_CELLS`` cells per block).

Each measurement runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; the peak
is reported above the process's high-water mark once the descriptors are in memory. Both ways must return
identical results, or the benchmark fails.

    python benchmarks/bench_retrieval_search.py [--database 200000] [--queries 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bobench.io import atomic_path  # noqa: E402
from bobench.retrieval.ground_truth import GroundTruth  # noqa: E402
from bobench.retrieval.metrics import evaluate_retrieval  # noqa: E402
from bobench.retrieval.search import CHUNK_CELLS, TOPK_CHUNK_CELLS, normalised, search_topk  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "retrieval_search.md"
DIM, POSITIVES, TOPK = 768, 10, 100


def make_problem(n_database: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    database = rng.standard_normal((n_database, DIM), dtype=np.float32)
    queries = rng.standard_normal((n_queries, DIM), dtype=np.float32)
    truth = GroundTruth.from_lists([rng.choice(n_database, POSITIVES, replace=False) for _ in range(n_queries)])
    return queries, database, truth


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_one(job: str, way: str, n_database: int, n_queries: int, threads: int, out: Path) -> None:
    """Child process: one job one way; writes seconds, peak memory and a digest of the output."""
    torch.set_num_threads(threads)
    queries, database, truth = make_problem(n_database, n_queries)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    if job == "evaluate":
        chunk = n_queries * n_database if way == "brute force" else CHUNK_CELLS
        results, _ = evaluate_retrieval(queries, database, {"p": truth}, chunk_cells=chunk)
        output = np.stack([results["p"].per_query[k] for k in sorted(results["p"].per_query)])
    elif way == "brute force":
        similarity = normalised(queries) @ normalised(database).T
        output = similarity.topk(TOPK, dim=1).indices.numpy()
    else:
        output = search_topk(queries, database, TOPK)
    seconds = time.perf_counter() - started
    out.write_text(json.dumps({
        "seconds": seconds, "peak_mb": peak_rss_mb() - baseline, "baseline_mb": baseline,
        "output": output.tolist() if job == "top100" else output.round(12).tolist(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("JOB", "WAY"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_one(*args.child, args.database, args.queries, args.threads, args.out)

    rows, outputs = [], {}
    for job in ("evaluate", "top100"):
        for way in ("brute force", "blocks"):
            out = RESULT.parent / f".{job}-{way.replace(' ', '_')}.json"
            subprocess.run([sys.executable, __file__, "--child", job, way, "--out", str(out), "--database", str(args.database),
                            "--queries", str(args.queries), "--threads", str(args.threads)], check=True)
            measured = json.loads(out.read_text())
            out.unlink()
            outputs[job, way] = measured.pop("output")
            rows.append({"job": job, "way": way, **measured, "queries_per_s": args.queries / measured["seconds"]})
            print(f"{job:8s} {way:12s} {measured['seconds']:7.2f} s  {args.queries / measured['seconds']:8.1f} queries/s  "
                  f"peak +{measured['peak_mb']:.0f} MB", flush=True)
    for job in ("evaluate", "top100"):
        if outputs[job, "brute force"] != outputs[job, "blocks"]:
            raise SystemExit(f"{job}: block-wise and brute-force results differ")

    by = {(r["job"], r["way"]): r for r in rows}
    lines = [
        "# Exact retrieval search: blocks vs brute force",
        "",
        f"`python benchmarks/bench_retrieval_search.py` on {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}, CPU.",
        f"Database: {args.database:,} random {DIM}-d descriptors; {args.queries:,} queries with {POSITIVES} positives each.",
        f"Blocks: {CHUNK_CELLS:,} similarity cells ({max(1, CHUNK_CELLS // args.database)} queries) for `evaluate`, "
        f"{TOPK_CHUNK_CELLS:,} ({max(1, TOPK_CHUNK_CELLS // args.database)} queries) for `top100`. "
        "Peak memory: resident-set high-water mark above the process's after the descriptors were made "
        f"(descriptors ≈ {args.database * DIM * 4 / 2**20:.0f} MB); both ways include a normalised float32 copy of the database "
        "(the same size), brute force adds the full similarity matrix (and, for `evaluate`, its sort). "
        "Both ways returned identical results.",
        "",
        "| job | way | seconds | queries/s | peak memory (MB) |",
        "|---|---|---|---|---|",
        *(f"| {r['job']} | {r['way']} | {r['seconds']:.2f} | {r['queries_per_s']:.1f} | {r['peak_mb']:.0f} |" for r in rows),
        "",
        "Ratios (blocks / brute force):",
        "",
        *(f"* {job}: speed ×{by[job, 'blocks']['queries_per_s'] / by[job, 'brute force']['queries_per_s']:.2f}, "
          f"peak memory ×{by[job, 'blocks']['peak_mb'] / max(by[job, 'brute force']['peak_mb'], 1e-9):.3f}" for job in ("evaluate", "top100")),
        "",
    ]
    with atomic_path(RESULT) as tmp:
        Path(tmp).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
