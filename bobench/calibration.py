"""Calibration of a classifier's probabilities (BoB's observation 9): ECE and NLL.

Both take class probabilities ``(N, C)`` and integer labels ``(N,)``. NLL is a
mean of per-sample scores (so it gets the usual bootstrap CI); ECE is a binned
statistic of the whole set.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def per_sample_nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """−log p(true class) per sample (clipped away from log 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with ``n_bins`` equal-width confidence bins (Guo et al., 2017):
    Σ_b (|B_b| / N) · |accuracy(B_b) − mean confidence(B_b)|. A confidence of
    exactly k/n_bins falls in the bin that ends there."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
