"""Bootstrap intervals: sensible, shrinking with n, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from bobench.stats import bootstrap_ci, mean_and_ci


def test_ci_contains_mean_and_matches_normal_theory() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random(2000) < 0.7
    mean, low, high = mean_and_ci(correct)
    assert low < mean < high
    assert mean == pytest.approx(correct.mean())
    # Binomial 95% half-width 1.96 * sqrt(p (1 - p) / n) ~= 0.020 here.
    expected = 1.96 * np.sqrt(mean * (1 - mean) / correct.size)
    assert (high - low) / 2 == pytest.approx(expected, rel=0.15)


def test_ci_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (100, 1000, 10000):
        low, high = bootstrap_ci(rng.standard_normal(n))
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # Width scales like 1 / sqrt(n): a hundred times more samples, ten times narrower.
    assert widths[0] / widths[2] == pytest.approx(10.0, rel=0.25)


def test_ci_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(2).random(500)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_higher_level_is_wider_and_constant_data_is_degenerate() -> None:
    values = np.random.default_rng(4).random(300)
    low90, high90 = bootstrap_ci(values, level=0.90)
    low99, high99 = bootstrap_ci(values, level=0.99)
    assert low99 < low90 and high90 < high99
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)


def test_invalid_input() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), level=1.0)


def test_auroc_entries_match_scikit_learn_and_skip_degenerate_resamples():
    from sklearn.metrics import roc_auc_score

    from bobench.cells import classification_metrics

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (60, 3))
    targets[:, 2] = 0
    targets[0, 2] = 1  # a rare finding: many bootstrap resamples miss it
    scores = targets + rng.normal(size=targets.shape)
    entries = {e["metric"]: e for e in classification_metrics("linear_probe", targets, scores=scores, class_names=["a", "b", "c"],
                                                              bootstrap={"n_boot": 200, "level": 0.9}, seed=0)}
    assert [name for name, e in entries.items() if e["primary"]] == ["mean_auroc"]
    assert entries["mean_auroc"]["value"] == pytest.approx(roc_auc_score(targets, scores, average="macro"))
    assert entries["auroc_b"]["value"] == pytest.approx(roc_auc_score(targets[:, 1], scores[:, 1]))
    for entry in entries.values():
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"] or entry["metric"] == "auroc_c"
        assert np.isfinite([entry["ci_low"], entry["ci_high"]]).all()
