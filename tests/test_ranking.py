"""BoB ranking on a hand-made table whose z-scores are worked out by hand below.

Backbones: A (CNN, supervised, 25M), B (ViT, SSL, 22M), C (hierarchical ViT,
vision-language, 88M), R (CNN, random init = method "none", 25M).

Primary values per setting (s = task / dataset / protocol):
  S1 classification/in1k/linear_probe: A 70, B 80, C 90, R 10
  S2 classification/in1k/knn:          A {50, 60} (LR sweep), B 40, R 20; C not evaluated
  S3 retrieval/cub/frozen (map):       A 0.2, B 0.4, C 0.6, R 0.1
  S4 retrieval/inat/frozen:            A 0.3, R 0.1  -> pool (without R) has 1 backbone -> NaN
  S5 retrieval/sop/frozen:             A 0.5, B 0.5  -> std 0 -> NaN
Non-primary rows (retrieval mrr) carry absurd values and must be ignored.

Defaults (ddof 0, R excluded from mean/std, sweep max, task_mean):
  S1 pool {70,80,90}: mean 80, std sqrt(200/3) = 8.164966
     zA = -10/8.164966 = -1.224745, zB = 0, zC = +1.224745, zR = -70/8.164966 = -8.573214
  S2 A -> max(50,60) = 60; pool {60,40}: mean 50, std 10
     zA = +1, zB = -1, zR = (20-50)/10 = -3
  S3 pool {.2,.4,.6}: mean .4, std sqrt(.08/3) = 0.163299
     zA = -1.224745, zB = 0, zC = +1.224745, zR = -.3/.163299 = -1.837117
  classification: A (-1.224745+1)/2 = -0.112372, B (0-1)/2 = -0.5,
                  C -> S1 only (S2 not imputed) = 1.224745, R (-8.573214-3)/2 = -5.786607
  retrieval:      A -1.224745 (S4, S5 dropped), B 0, C 1.224745, R -1.837117
  overall task_mean: A (-0.112372-1.224745)/2 = -0.668559, B (-0.5+0)/2 = -0.25,
                     C 1.224745, R (-5.786607-1.837117)/2 = -3.811862
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from bobench.ranking import (
    ALL_TASKS,
    RankingOptions,
    compute_ranking,
    write_ranking,
)

META = {
    "A": ("Net-A", "CNN", "supervised", 25_000_000, 1_000_000),
    "B": ("Net-B", "ViT", "SSL", 22_000_000, 1_000_000),
    "C": ("Net-C", "hierarchical ViT", "vision-language", 88_000_000, 400_000_000),
    "R": ("Net-R", "CNN", "none", 25_000_000, 0),
}
PRIMARY = [
    ("classification", "in1k", "linear_probe", "top1", {"A": [70], "B": [80], "C": [90], "R": [10]}),
    ("classification", "in1k", "knn", "top1", {"A": [50, 60], "B": [40], "R": [20]}),
    ("retrieval", "cub", "frozen", "map", {"A": [0.2], "B": [0.4], "C": [0.6], "R": [0.1]}),
    ("retrieval", "inat", "frozen", "map", {"A": [0.3], "R": [0.1]}),
    ("retrieval", "sop", "frozen", "map", {"A": [0.5], "B": [0.5]}),
]
S = math.sqrt(1.5)  # 1.224745 = 10 / sqrt(200/3)


def _row(
    backbone: str, task: str, dataset: str, protocol: str, metric: str, value: float, primary: bool
) -> dict:
    name, family, method, n_params, pretrain_size = META[backbone]
    return {
        "backbone": backbone, "backbone_name": name, "family": family, "method": method,
        "pretrain_data": "x", "pretrain_size": pretrain_size, "n_params": n_params,
        "task": task, "dataset": dataset, "domain": "natural", "protocol": protocol,
        "metric": metric, "value": value, "ci_low": np.nan, "ci_high": np.nan, "primary": primary,
        "source": "test",
    }


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    for task, dataset, protocol, metric, values in PRIMARY:
        for backbone, vals in values.items():
            rows += [_row(backbone, task, dataset, protocol, metric, v, True) for v in vals]
    for backbone in "ABCR":  # secondary metric, must not influence anything
        rows.append(_row(backbone, "retrieval", "cub", "frozen", "mrr", 1000.0 * ord(backbone), False))
    return pd.DataFrame(rows)


def _z(ranking, backbone: str, dataset: str, protocol: str) -> float:
    s = ranking.settings
    row = (s.backbone == backbone) & (s.dataset == dataset) & (s.protocol == protocol)
    return float(s.loc[row, "z"].item())


def _score(table: pd.DataFrame, backbone: str, column: str = "score") -> float:
    return float(table.set_index("backbone").at[backbone, column])


def test_default_zscores_task_scores_and_overall(results):
    r = compute_ranking(results)
    assert _z(r, "A", "in1k", "linear_probe") == pytest.approx(-S)
    assert _z(r, "B", "in1k", "linear_probe") == pytest.approx(0.0)
    assert _z(r, "C", "in1k", "linear_probe") == pytest.approx(S)
    assert _z(r, "A", "in1k", "knn") == pytest.approx(1.0)
    assert _z(r, "B", "cub", "frozen") == pytest.approx(0.0)
    tasks = r.tasks.set_index(["backbone", "task"])
    assert tasks.at[("A", "classification"), "z"] == pytest.approx((-S + 1) / 2)
    assert tasks.at[("B", "classification"), "z"] == pytest.approx(-0.5)
    assert tasks.at[("A", "retrieval"), "z"] == pytest.approx(-S)
    assert list(r.overall["backbone"]) == ["C", "B", "A", "R"]
    assert list(r.overall["rank"]) == [1, 2, 3, 4]
    assert _score(r.overall, "A") == pytest.approx(((-S + 1) / 2 - S) / 2)  # -0.668559
    assert _score(r.overall, "B") == pytest.approx(-0.25)
    assert _score(r.overall, "C") == pytest.approx(S)
    assert list(r.overall.columns) == [
        "backbone", "backbone_name", "family", "method", "n_params", "pretrain_size",
        "score", "rank", "n_tasks", "n_settings",
    ]


def test_secondary_metric_rows_are_ignored(results):
    r = compute_ranking(results)
    assert set(r.settings["metric"]) == {"top1", "map"}


def test_ddof_one_uses_sample_std(results):
    # S1 pool {70,80,90}: sample std sqrt(200/2) = 10 -> zA = -1, zC = +1, zR = (10-80)/10 = -7
    r = compute_ranking(results, RankingOptions(ddof=1))
    assert _z(r, "A", "in1k", "linear_probe") == pytest.approx(-1.0)
    assert _z(r, "C", "in1k", "linear_probe") == pytest.approx(1.0)
    assert _z(r, "R", "in1k", "linear_probe") == pytest.approx(-7.0)


def test_random_init_is_scored_but_not_in_stats(results):
    r = compute_ranking(results)
    assert _z(r, "R", "in1k", "linear_probe") == pytest.approx(-70 / math.sqrt(200 / 3))  # -8.573214
    assert _z(r, "R", "cub", "frozen") == pytest.approx(-0.3 / math.sqrt(0.08 / 3))  # -1.837117
    z_r_class = (-70 / math.sqrt(200 / 3) - 3) / 2  # -5.786607
    assert _score(r.overall, "R") == pytest.approx((z_r_class - 1.837117) / 2, abs=1e-6)
    assert r.overall.set_index("backbone").at["R", "method"] == "none"
    # Including R: S1 pool {70,80,90,10}: mean 62.5, population var 3875/4 = 968.75
    # zA = (70-62.5)/sqrt(968.75) = 0.240966
    r_in = compute_ranking(results, RankingOptions(exclude_random_from_stats=False))
    assert _z(r_in, "A", "in1k", "linear_probe") == pytest.approx(7.5 / math.sqrt(968.75))
    # S4 has A and R: a pool of 2 once R counts -> defined (mean .2, std .1 -> zA = +1)
    assert _z(r_in, "A", "inat", "frozen") == pytest.approx(1.0)


def test_setting_mean_weights_every_setting_equally(results):
    # A: mean(-S, 1, -S) = -0.483163; B: mean(0, -1, 0) = -1/3; C: mean(S, S) = S
    r = compute_ranking(results, RankingOptions(aggregate="setting_mean"))
    assert _score(r.overall, "A") == pytest.approx((1 - 2 * S) / 3)
    assert _score(r.overall, "B") == pytest.approx(-1 / 3)
    assert _score(r.overall, "C") == pytest.approx(S)
    assert r.options.aggregate == "setting_mean"


def test_sweep_reduce_max_and_mean(results):
    r_max = compute_ranking(results)
    s = r_max.settings
    assert s.loc[(s.backbone == "A") & (s.protocol == "knn"), "value"].item() == 60
    assert _z(r_max, "R", "in1k", "knn") == pytest.approx(-3.0)
    # mean: A -> 55; pool {55,40}: mean 47.5, std 7.5 -> zR = (20-47.5)/7.5 = -3.666667
    r_mean = compute_ranking(results, RankingOptions(sweep_reduce="mean"))
    s = r_mean.settings
    assert s.loc[(s.backbone == "A") & (s.protocol == "knn"), "value"].item() == 55
    assert _z(r_mean, "R", "in1k", "knn") == pytest.approx(-27.5 / 7.5)
    assert len(r_mean.settings) == len(r_max.settings) == 15  # one row per backbone x setting (4+3+4+2+2)


def test_undefined_settings_are_nan_dropped_and_logged(results, caplog):
    with caplog.at_level(logging.WARNING, logger="bobench.ranking"):
        r = compute_ranking(results)
    assert math.isnan(_z(r, "A", "inat", "frozen"))  # pool of 1
    assert math.isnan(_z(r, "A", "sop", "frozen"))  # std 0
    assert "retrieval / inat / frozen" in caplog.text and "retrieval / sop / frozen" in caplog.text
    tasks = r.tasks.set_index(["backbone", "task"])
    assert tasks.at[("A", "retrieval"), "n_settings"] == 1
    assert _score(r.overall, "A", "n_settings") == 3


def test_missing_backbone_is_not_imputed(results):
    r = compute_ranking(results)
    tasks = r.tasks.set_index(["backbone", "task"])
    assert tasks.at[("C", "classification"), "z"] == pytest.approx(S)  # S1 only, not S2
    assert tasks.at[("C", "classification"), "n_settings"] == 1
    assert not ((r.settings.backbone == "C") & (r.settings.protocol == "knn")).any()


def test_top_table_and_small_subset(results):
    r = compute_ranking(results)
    top = r.top

    def names(task: str, subset: str) -> list[str]:
        rows = top[(top.task == task) & (top.subset == subset)].sort_values("position")
        return list(rows["backbone"])

    assert names("classification", "all") == ["C", "A", "B"]  # S, -0.112, -0.5; R never listed
    assert names("retrieval", "all") == ["C", "B", "A"]
    assert names(ALL_TASKS, "all") == ["C", "B", "A"]
    assert names(ALL_TASKS, "< 30M params") == ["B", "A"]  # C has 88M; R is random init
    assert list(top["task"].unique()) == ["classification", "retrieval", ALL_TASKS]
    assert list(top.columns) == ["task", "subset", "position", "backbone", "backbone_name", "score"]
    top2 = compute_ranking(results, RankingOptions(top_k=2, small_params_threshold=23_000_000)).top
    assert list(top2[(top2.task == ALL_TASKS) & (top2.subset == "all")]["backbone"]) == ["C", "B"]
    assert list(top2[(top2.task == ALL_TASKS) & (top2.subset == "< 23M params")]["backbone"]) == ["B"]


def test_ties_share_the_minimum_rank():
    # values 1,1,3,3: mean 2, std 1 -> z = -1,-1,+1,+1 -> ranks 1,1,3,3
    rows = [
        _row(b, "classification", "in1k", "linear_probe", "top1", v, True)
        for b, v in zip("ABCR", [1.0, 1.0, 3.0, 3.0])
    ]
    r = compute_ranking(pd.DataFrame(rows), RankingOptions(exclude_random_from_stats=False))
    assert r.overall.set_index("backbone")["rank"].to_dict() == {"C": 1, "R": 1, "A": 3, "B": 3}


def test_primary_read_back_from_csv_as_text(results, tmp_path):
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    from_csv = compute_ranking(pd.read_csv(path, dtype={"primary": str}))
    pd.testing.assert_frame_equal(from_csv.overall, compute_ranking(results).overall)


def test_bad_inputs_raise(results):
    with pytest.raises(ValueError, match="value"):
        compute_ranking(results.drop(columns=["value"]))
    mixed = results.copy()
    mixed.loc[mixed.metric == "mrr", "primary"] = True
    with pytest.raises(ValueError, match="retrieval / cub / frozen"):
        compute_ranking(mixed)


def test_single_backbone_gives_unranked_nan_not_crash():
    rows = [_row("A", "classification", "in1k", "linear_probe", "top1", 70.0, True)]
    r = compute_ranking(pd.DataFrame(rows))
    assert r.tasks.empty and r.top.empty
    assert math.isnan(_score(r.overall, "A")) and pd.isna(r.overall["rank"].item())


def test_from_config_roundtrip_and_defaults():
    assert RankingOptions.from_config({}) == RankingOptions()
    assert RankingOptions.from_config(None) == RankingOptions()
    opts = RankingOptions.from_config({"ddof": 1, "aggregate": "setting_mean", "top_k": 5})
    assert (opts.ddof, opts.aggregate, opts.top_k) == (1, "setting_mean", 5)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"ddoff": 1}, ["'ddoff'", "ddof", "sweep_reduce"]),
        ({"aggregate": "median"}, ["'aggregate'", "'median'", "'task_mean'", "'setting_mean'"]),
        ({"sweep_reduce": "min"}, ["'sweep_reduce'", "'min'", "'max'", "'mean'"]),
        ({"ddof": 2}, ["'ddof'", "2", "0, 1"]),
        ({"ddof": True}, ["'ddof'", "True"]),
        ({"exclude_random_from_stats": "yes"}, ["'exclude_random_from_stats'", "'yes'", "True, False"]),
        ({"top_k": 0}, ["'top_k'", "0", "positive integer"]),
        ({"small_params_threshold": 3.0e7}, ["'small_params_threshold'", "positive integer"]),
    ],
)
def test_from_config_errors_name_key_value_and_choices(config, expected):
    with pytest.raises(ValueError) as err:
        RankingOptions.from_config(config)
    for text in expected:
        assert text in str(err.value)


def test_write_ranking_files(results, tmp_path):
    paths = write_ranking(compute_ranking(results), tmp_path / "out")
    assert set(paths) == {"overall", "tasks", "settings", "top", "markdown", "table2_csv", "table2_md"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["ranking_overall.csv", "ranking_tasks.csv", "ranking_settings.csv", "ranking_top.csv", "ranking.md",
         "table2.csv", "table2.md"]
    )
    overall = pd.read_csv(paths["overall"])
    assert list(overall["backbone"]) == ["C", "B", "A", "R"]
    text = paths["markdown"].read_text()
    assert "| C | Net-C |" in text and "retrieval | inat | frozen" in text and "ddof=0" in text


def test_read_ranking_returns_what_write_ranking_wrote(results, tmp_path):
    from bobench.ranking import read_ranking

    ranking = compute_ranking(results)
    write_ranking(ranking, tmp_path)
    again = read_ranking(tmp_path, ranking.options)
    for name in ("overall", "tasks", "settings", "top"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(ranking, name), check_dtype=False)


def test_write_ranking_with_intervals_and_iqm(results, tmp_path):
    from bobench.ranking_uncertainty import BootstrapOptions, bootstrap_scores, iqm_scores

    ranking = compute_ranking(results)
    options = BootstrapOptions(n_boot=100)
    paths = write_ranking(ranking, tmp_path, intervals=bootstrap_scores(ranking.settings, options),
                          iqm=iqm_scores(ranking.settings, options))
    assert {"intervals", "iqm"} <= set(paths)
    intervals = pd.read_csv(paths["intervals"])
    overall = intervals[intervals.task == "all tasks"].set_index("backbone")
    # The point scores are the ranking's own overall scores.
    expected = ranking.overall.set_index("backbone")["score"].dropna()
    pd.testing.assert_series_equal(overall["score"].reindex(expected.index), expected, check_names=False)
    text = paths["markdown"].read_text()
    assert "## Overall score and rank with bootstrap intervals" in text and "interquartile mean" in text


def test_table2_marks_ood_rows_and_the_overall_row():
    from bobench.ranking import table2, table2_markdown

    top = pd.DataFrame([
        {"task": "classification", "subset": "all", "position": 1, "backbone": "a", "backbone_name": "A", "score": 1.0},
        {"task": "classification", "subset": "all", "position": 2, "backbone": "b", "backbone_name": "B", "score": 0.5},
        {"task": "ood_classification", "subset": "all", "position": 1, "backbone": "b", "backbone_name": "B", "score": 0.9},
        {"task": "all tasks", "subset": "all", "position": 1, "backbone": "a", "backbone_name": "A", "score": 0.7},
    ])
    table = table2(top).set_index("task")
    assert table.loc["classification", ["kind", "1st", "2nd"]].tolist() == ["in-distribution", "A (+1.00)", "B (+0.50)"]
    assert table.loc["ood_classification", "kind"] == "OOD" and table.loc["all tasks", "kind"] == "all tasks"
    text = table2_markdown(top)
    assert "| **ood_classification** (OOD) | B (+0.90) |" in text and "| _all tasks_ | A (+0.70) |" in text
    assert table2(top.iloc[:0]).empty and "No backbone has a task score yet" in table2_markdown(top.iloc[:0])
