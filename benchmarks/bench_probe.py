"""Time the torch L-BFGS linear probe against scikit-learn on the same problem.

Both sides run the identical protocol: z-score with train statistics, sweep
the same C grid from small to large with warm starts, pick C by val top-1
(ties to the smaller C), refit on train+val (re-standardised) warm-started
from the chosen model, and score test top-1. Same ``max_iter`` and gradient
tolerance (scikit-learn's ``tol`` for lbfgs bounds the same quantity as our
``tolerance``).

Threads are pinned (``--threads``, default 1) for torch, BLAS and OpenMP
alike: on a shared machine OpenBLAS's spinning worker threads can slow
scikit-learn down by 50x, which would measure the machine, not the solvers.

    python benchmarks/bench_probe.py [--features path.npz] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bobench.io import atomic_path  # noqa: E402
from bobench.tasks.linear_probe import ProbeOptions, linear_probe  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "probe_vs_sklearn.md"
SPLITS = ("train", "val", "test")


def synthetic_features(seed: int = 0) -> dict[str, np.ndarray]:
    """3,000 train (+1,000 val, +1,000 test) x 1,280 features, 10 classes.

    Class means are small relative to the noise and live in a 64-dim
    subspace, so the problem is not trivially separable and the C sweep
    has a real optimum (like frozen backbone features).
    """
    rng = np.random.default_rng(seed)
    num_classes, dim, rank = 10, 1280, 64
    basis = rng.standard_normal((rank, dim)) / np.sqrt(rank)
    means = 0.12 * rng.standard_normal((num_classes, rank)) @ basis
    out = {}
    for split, n in zip(SPLITS, (3000, 1000, 1000)):
        labels = rng.integers(0, num_classes, size=n)
        feats = means[labels] + rng.standard_normal((n, dim))
        out[f"{split}_features"] = np.maximum(feats, 0.0).astype(np.float32)  # ReLU-like, non-negative
        out[f"{split}_labels"] = labels.astype(np.int64)
    return out


def sklearn_probe(data: dict[str, np.ndarray], options: ProbeOptions) -> dict[str, object]:
    """scikit-learn mirror of :func:`linear_probe` (same protocol, lbfgs solver)."""
    start = time.perf_counter()
    tr_x, tr_y = data["train_features"], data["train_labels"]
    va_x, va_y = data["val_features"], data["val_labels"]
    scaler = StandardScaler().fit(tr_x)
    tr_z, va_z = scaler.transform(tr_x), scaler.transform(va_x)
    clf = LogisticRegression(solver="lbfgs", max_iter=options.max_iter, tol=options.tolerance, warm_start=True)
    val_top1, best = {}, None
    for c in sorted(options.c_grid):
        clf.set_params(C=c).fit(tr_z, tr_y)
        val_top1[c] = float((clf.predict(va_z) == va_y).mean())
        if best is None or val_top1[c] > val_top1[best[0]]:
            best = (c, clf.coef_.copy(), clf.intercept_.copy())
    chosen_c, coef, intercept = best
    all_x, all_y = np.concatenate([tr_x, va_x]), np.concatenate([tr_y, va_y])
    scaler = StandardScaler().fit(all_x)
    final = LogisticRegression(
        solver="lbfgs", C=chosen_c, max_iter=options.max_iter, tol=options.tolerance, warm_start=True
    )
    final.coef_, final.intercept_ = coef, intercept
    final.fit(scaler.transform(all_x), all_y)
    test_top1 = float((final.predict(scaler.transform(data["test_features"])) == data["test_labels"]).mean())
    return {
        "seconds": time.perf_counter() - start,
        "chosen_c": chosen_c,
        "val_top1_per_c": val_top1,
        "test_top1": test_top1,
        "n_iter": int(final.n_iter_[0]),
    }


def torch_probe(data: dict[str, np.ndarray], options: ProbeOptions) -> dict[str, object]:
    num_classes = int(max(data[f"{s}_labels"].max() for s in SPLITS)) + 1
    start = time.perf_counter()
    res = linear_probe(
        *(data[f"{s}_{kind}"] for s in SPLITS for kind in ("features", "labels")),
        num_classes=num_classes,
        options=options,
    )
    return {
        "seconds": time.perf_counter() - start,
        "chosen_c": res.chosen_c,
        "val_top1_per_c": res.val_top1_per_c,
        "test_top1": res.test_top1,
        "n_iter": res.n_iter,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render(source: str, data: dict[str, np.ndarray], threads: int, options: ProbeOptions,
           ours: dict[str, object], theirs: dict[str, object]) -> str:
    shape = {s: data[f"{s}_features"].shape for s in SPLITS}
    lines = [
        "# Linear probe: torch L-BFGS vs scikit-learn lbfgs",
        "",
        f"- features: {source}; train {shape['train']}, val {shape['val']}, test {shape['test']}",
        f"- C grid: {', '.join(f'{c:g}' for c in sorted(options.c_grid))}; max_iter {options.max_iter}; "
        f"tolerance {options.tolerance:g}; torch dtype {options.dtype}",
        f"- torch {torch.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"- threads: {threads} (torch, BLAS and OpenMP pinned); CPU: {cpu_name()}, {os.cpu_count()} cores; "
        f"1-min load average at the end: {os.getloadavg()[0]:.1f}",
        "- both: select C on val, refit on train+val, report test top-1; wall time covers the whole sweep",
        "",
        "| solver | seconds | chosen C | val top-1 @ C | test top-1 | refit iterations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("torch L-BFGS (bobench)", ours), ("scikit-learn lbfgs", theirs)):
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['chosen_c']:g} | {r['val_top1_per_c'][r['chosen_c']]:.4f} "
            f"| {r['test_top1']:.4f} | {r['n_iter']} |"
        )
    lines += [
        "",
        f"**Speed ratio (sklearn time / torch time): {theirs['seconds'] / ours['seconds']:.1f}x**",
        "",
        "| C | val top-1 torch | val top-1 sklearn |",
        "|---:|---:|---:|",
    ]
    for c in sorted(options.c_grid):
        lines.append(f"| {c:g} | {ours['val_top1_per_c'][c]:.4f} | {theirs['val_top1_per_c'][c]:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, help=".npz with {train,val,test}_{features,labels}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    if args.features is None:
        data, source = synthetic_features(), "synthetic (seed 0)"
    else:
        with np.load(args.features) as npz:
            data = {key: npz[key] for key in npz.files}
        source = str(args.features)
    options = ProbeOptions()
    torch.set_num_threads(args.threads)
    # Large-C fits may hit max_iter on both sides; the refit iteration count is reported instead.
    warnings.simplefilter("ignore", ConvergenceWarning)
    with threadpool_limits(args.threads):
        torch_probe(data, ProbeOptions(c_grid=(1.0,), max_iter=5))  # warm-up: thread pools, allocator
        ours = torch_probe(data, options)
        theirs = sklearn_probe(data, options)
    table = render(source, data, args.threads, options, ours, theirs)
    print(table)
    with atomic_path(args.output) as tmp:
        tmp.write_text(table)


if __name__ == "__main__":
    main()
