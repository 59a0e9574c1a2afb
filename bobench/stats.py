"""Bootstrap confidence intervals for per-sample scores.

Every task keeps one score per test sample or query (correct or not, AP,
...), so an interval on the reported mean is one resampling away. The
percentile bootstrap is used because the scores are bounded and often
binary, where normal-theory intervals misbehave near 0 and 1.
"""

from __future__ import annotations

import numpy as np

#: Resampled indices held in memory at once (int64): about 32 MB.
_BLOCK_CELLS = 1 << 22


def bootstrap_means(per_sample: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """The means of ``n_boot`` resamples (with replacement) of ``per_sample``.

    Resamples are drawn in blocks from one ``numpy`` generator seeded with
    ``seed``, so the draws depend only on ``len(per_sample)``, ``n_boot`` and
    ``seed``: every backbone scored on the same test set with the same seed
    gets the same resampled test samples (paired replicates, which the ranking's
    bootstrap relies on).
    """
    values = np.asarray(per_sample, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if not np.all(np.isfinite(values)):
        raise ValueError("per-sample values must be finite")
    if n_boot < 1:
        raise ValueError(f"need n_boot >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = values.size
    block = max(1, _BLOCK_CELLS // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        means[start : start + rows] = values[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return means


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``replicates`` (NaN replicates left out)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"need 0 < level < 1, got {level}")
    values = np.asarray(replicates, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    per_sample: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval ``(low, high)`` for the mean of ``per_sample``."""
    if not 0.0 < level < 1.0:  # checked before the resampling work
        raise ValueError(f"need 0 < level < 1, got {level}")
    return percentile_interval(bootstrap_means(per_sample, n_boot, seed), level)


def mean_and_ci(
    per_sample: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the point estimate with its bootstrap interval."""
    low, high = bootstrap_ci(per_sample, n_boot=n_boot, level=level, seed=seed)
    return float(np.mean(per_sample)), low, high


def bootstrap_statistic_values(statistic, n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``statistic(indices)`` on ``n_boot`` resamples of ``range(n)`` (for statistics that are not a mean
    of per-sample scores, e.g. ECE or AUROC); NaN where it is undefined on a resample. The resamples are
    drawn as in :func:`bootstrap_means`, so they are paired across backbones too."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got {n}, {n_boot}")
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_boot)], dtype=np.float64)
