"""Bootstrap intervals of BoB scores and ranks, and the IQM view: hand-made cases and coverage on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bobench.ranking import ALL_TASKS
from bobench.ranking_uncertainty import BootstrapOptions, bootstrap_scores, iqm_scores


def settings_table(z: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame:
    """(task, dataset) → {backbone: z} as a Ranking.settings table."""
    rows = [{"backbone": b, "task": task, "dataset": dataset, "protocol": "p", "metric": "m", "value": v, "z": v}
            for (task, dataset), scores in z.items() for b, v in scores.items()]
    return pd.DataFrame(rows)


def test_point_scores_are_the_rankings_and_missing_backbones_are_not_imputed():
    table = settings_table({
        ("classification", "a"): {"x": 1.0, "y": -1.0, "z": 0.0},
        ("classification", "b"): {"x": 0.5, "y": -0.5},            # z missing from b
        ("detection", "c"): {"x": -1.0, "y": 1.0, "z": 0.0},
    })
    out = bootstrap_scores(table, BootstrapOptions(n_boot=200)).set_index(["task", "backbone"])
    # Task means over the settings each backbone has: x 0.75 / -1, y -0.75 / 1, z 0 / 0; overall = mean of tasks.
    assert out.loc[("classification", "x"), "score"] == pytest.approx(0.75)
    assert out.loc[("classification", "z"), "score"] == pytest.approx(0.0)
    assert out.loc[("classification", "z"), "n_settings"] == 1
    assert out.loc[(ALL_TASKS, "x"), "score"] == pytest.approx(-0.125)
    assert out.loc[(ALL_TASKS, "y"), "score"] == pytest.approx(0.125)
    assert out.loc[(ALL_TASKS, "y"), "rank"] == 1 and out.loc[(ALL_TASKS, "x"), "rank"] == 3
    # One setting in detection: nothing to resample there, the interval is the point.
    assert out.loc[("detection", "x"), ["ci_low", "ci_high"]].tolist() == [-1.0, -1.0]
    # Two classification settings: x's task score is 1, 0.75 or 0.5 in every resample.
    assert out.loc[("classification", "x"), "ci_low"] == pytest.approx(0.5)
    assert out.loc[("classification", "x"), "ci_high"] == pytest.approx(1.0)
    assert (out["ci_low"] <= out["score"] + 1e-12).all() and (out["score"] <= out["ci_high"] + 1e-12).all()
    assert (out["rank_ci_low"] <= out["rank"]).all() and (out["rank"] <= out["rank_ci_high"]).all()
    # The same seed gives the same intervals.
    pd.testing.assert_frame_equal(bootstrap_scores(table, BootstrapOptions(n_boot=200)).set_index(["task", "backbone"]), out)


def test_iqm_ignores_an_extreme_setting():
    z = {("classification", str(i)): {"steady": 0.5, "spiky": 0.0} for i in range(8)}
    z["classification", "7"]["spiky"] = 40.0  # one outlier setting carries the mean, not the IQM
    table = settings_table(z)
    iqm = iqm_scores(table, BootstrapOptions(n_boot=300)).set_index("backbone")
    assert iqm.loc["spiky", "iqm"] == pytest.approx(0.0) and iqm.loc["steady", "iqm"] == pytest.approx(0.5)
    assert iqm.loc["steady", "rank"] == 1
    means = bootstrap_scores(table, BootstrapOptions(n_boot=50)).query("task == @ALL_TASKS").set_index("backbone")
    assert means.loc["spiky", "score"] == pytest.approx(5.0) and means.loc["spiky", "rank"] == 1


def test_intervals_cover_the_true_score_at_about_the_nominal_rate():
    """Settings drawn from a population whose mean z per backbone is known: the 90 % interval of the
    task score should hold that mean in about 90 % of repetitions (percentile intervals on 12 settings
    run a little short)."""
    rng = np.random.default_rng(0)
    true = {"a": 0.6, "b": 0.0, "c": -0.6}
    covered, trials = 0, 120
    for trial in range(trials):
        z = {("classification", f"s{i}"): {b: mu + rng.normal(0, 1.0) for b, mu in true.items()} for i in range(12)}
        out = bootstrap_scores(settings_table(z), BootstrapOptions(n_boot=200, level=0.9, seed=trial))
        row = out[(out.task == "classification") & (out.backbone == "a")].iloc[0]
        covered += row["ci_low"] <= true["a"] <= row["ci_high"]
    assert 0.8 <= covered / trials <= 0.97, covered / trials


def test_no_valid_z_gives_empty_tables():
    """A run whose settings all have fewer than two backbones: nothing to resample, but the rule still writes its files."""
    table = settings_table({("classification", "a"): {"x": 1.0}}).assign(z=np.nan)
    assert bootstrap_scores(table, BootstrapOptions(n_boot=10)).empty
    assert list(iqm_scores(table, BootstrapOptions(n_boot=10)).columns) == ["backbone", "iqm", "ci_low", "ci_high", "n_settings", "rank"]
