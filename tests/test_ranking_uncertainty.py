"""Bootstrap intervals of BoB scores and ranks, and the IQM view: hand-made cases and coverage on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bobench.cells import metric_entry
from bobench.ranking import ALL_TASKS, RankingOptions, compute_ranking
from bobench.ranking_uncertainty import (
    BootstrapOptions,
    _z_matrix,
    bootstrap_scores,
    iqm_scores,
    sample_z_replicates,
    two_level_bootstrap,
)


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


def replicate_table(rows: list[tuple[str, str, list[float]]], n_test: int = 100) -> pd.DataFrame:
    """(backbone, dataset, replicates) rows of results/replicates.parquet, task classification, protocol p."""
    return pd.DataFrame([{"backbone": b, "task": "classification", "dataset": d, "protocol": "p", "metric": "m",
                          "n_test": n_test, "protocol_params": "{}", "replicates": r} for b, d, r in rows])


def test_sample_replicates_recompute_each_settings_z_per_replicate():
    table = settings_table({
        ("classification", "a"): {"x": 1.0, "y": -1.0, "rnd": -3.0},
        ("classification", "b"): {"x": 1.0, "y": -1.0},
    })
    replicates = replicate_table([
        # a: a sweep for x (two rows, reduced with max per replicate), one row for y and the random baseline.
        ("x", "a", [0.8, 0.5]), ("x", "a", [0.6, 0.7]), ("y", "a", [0.4, 0.6]), ("rnd", "a", [0.1, 0.1]),
        ("x", "b", [0.9, 0.9]),  # b: y has no replicates, so b keeps its point z-scores
    ])
    samples = sample_z_replicates(table, replicates, RankingOptions(), {"rnd"}, n_boot=5)
    backbones, settings = ["rnd", "x", "y"], [("classification", "a", "p"), ("classification", "b", "p")]
    assert samples.resampled.tolist() == [True, False] and samples.z.shape == (5, 3, 2)
    # Replicate 0: x 0.8, y 0.4, pool {x, y} (random-init excluded): mean 0.6, std 0.2.
    assert samples.z[0, :, 0] == pytest.approx([(0.1 - 0.6) / 0.2, 1.0, -1.0])
    # Replicate 1: x max(0.5, 0.7) = 0.7, y 0.6: x +1, y -1 again; replicate 2 wraps round to replicate 0.
    assert samples.z[1, 1:, 0] == pytest.approx([1.0, -1.0])
    assert samples.z[2] == pytest.approx(samples.z[0], nan_ok=True)
    assert np.isnan(samples.z[:, 0, 1]).all() and (samples.z[:, 1:, 1] == [1.0, -1.0]).all()
    assert list(_z_matrix(table)[0].index) == backbones and list(_z_matrix(table)[0].columns) == settings
    out = bootstrap_scores(table, BootstrapOptions(n_boot=5), samples).set_index(["task", "backbone"])
    assert out.loc[(ALL_TASKS, "x"), "n_settings_samples_resampled"] == 1 and out.loc[(ALL_TASKS, "x"), "n_settings"] == 2


def test_resampled_test_samples_cover_the_true_z_of_one_setting():
    """One setting of five backbones, each scored on the same 400 test images: resampling settings alone gives
    a zero-width interval, resampling the test samples (paired replicates from the jobs' own metric_entry)
    holds the true z at about the nominal rate."""
    rng = np.random.default_rng(1)
    accuracy = {"a": 0.60, "b": 0.65, "c": 0.70, "d": 0.75, "e": 0.80}
    pool = np.array(list(accuracy.values()))
    true_z = (accuracy["d"] - pool.mean()) / pool.std()
    options = BootstrapOptions(n_boot=200, level=0.9)
    covered, trials = 0, 100
    for trial in range(trials):
        entries = {b: metric_entry("top1", rng.random(400) < p, {"n_boot": 200, "level": 0.9}, seed=trial, primary=True)
                   for b, p in accuracy.items()}
        values = pd.Series({b: e["value"] for b, e in entries.items()})
        z = (values - values.mean()) / values.std(ddof=0)
        table = settings_table({("classification", "s"): z.to_dict()}).assign(value=values.to_numpy())
        replicates = replicate_table([(b, "s", e["replicates"]) for b, e in entries.items()], n_test=400)
        samples = sample_z_replicates(table, replicates, RankingOptions(), set(), options.n_boot)
        row = bootstrap_scores(table, options, samples).query("task == 'classification' and backbone == 'd'").iloc[0]
        covered += row["ci_low"] <= true_z <= row["ci_high"]
        if trial == 0:
            settings_only = bootstrap_scores(table, options).query("task == 'classification' and backbone == 'd'").iloc[0]
            assert settings_only["ci_low"] == settings_only["ci_high"]  # one setting: nothing else to resample
            assert row["ci_high"] - row["ci_low"] > 0.3
    assert 0.8 <= covered / trials <= 0.99, covered / trials


def test_two_level_bootstrap_of_a_ranking_without_replicates_resamples_settings_only():
    results = pd.DataFrame([
        {"backbone": b, "backbone_name": b, "family": "CNN", "method": "none" if b == "r" else "supervised",
         "n_params": 1, "pretrain_size": 1, "task": "classification", "dataset": d, "protocol": "p", "metric": "m",
         "value": v, "primary": True}
        for d, values in {"a": {"x": 0.9, "y": 0.5, "w": 0.7, "r": 0.1}, "b": {"x": 0.6, "y": 0.8, "w": 0.7, "r": 0.2}}.items()
        for b, v in values.items()
    ])
    ranking = compute_ranking(results)
    options = BootstrapOptions(n_boot=40)
    empty = pd.DataFrame(columns=["backbone", "task", "dataset", "protocol", "metric", "n_test", "protocol_params", "replicates"])
    intervals, iqm, samples = two_level_bootstrap(ranking, empty, options)
    assert not samples.resampled.any()
    pd.testing.assert_frame_equal(intervals, bootstrap_scores(ranking.settings, options))
    pd.testing.assert_frame_equal(iqm, iqm_scores(ranking.settings, options))
