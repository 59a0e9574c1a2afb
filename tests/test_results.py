"""Cell records → the tidy results table."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from bobench.cells import metric_entry, write_record
from bobench.results import COLUMNS, collect_results, read_results, write_results

INFO = {
    "n_params": 1000, "feature_dim": 8, "transform": {"size": 64}, "precision": "bf16", "device": "cpu",
    "channels_last": True, "weights": {"weights": "random", "seed": 0}, "fingerprint": "f00",
}
BACKBONES = {
    "a": {"name": "A", "family": "CNN", "method": "supervised", "pretrain_data": "IN-1k", "pretrain_size": 5},
    "b": {"name": "B", "family": "ViT", "method": "none", "pretrain_data": "none", "pretrain_size": 0},
}
DATASETS = {"d": {"name": "D", "domain": "natural"}}


def make_records(tmp_path):
    paths = []
    for backbone, accuracy in (("a", 0.9), ("b", 0.5)):
        correct = np.r_[np.ones(int(100 * accuracy)), np.zeros(100 - int(100 * accuracy))]
        path = tmp_path / f"{backbone}.json"
        write_record(
            str(path), task_name="linear_probe", backbone=backbone, dataset="d", features_info=INFO,
            protocol_params={"chosen_c": 1.0}, sizes={"train": 10, "val": 5, "test": 100},
            metrics=[metric_entry("top1", correct, {"n_boot": 100, "level": 0.95}, seed=0, primary=True)],
            seed=0, started=time.perf_counter(),
        )
        paths.append(path)
    return paths


def test_records_flatten_into_the_tidy_table(tmp_path):
    frame = collect_results(make_records(tmp_path), BACKBONES, DATASETS)
    assert list(frame.columns) == COLUMNS
    assert frame["value"].tolist() == [0.9, 0.5]
    assert (frame["ci_low"] < frame["value"]).all() and (frame["value"] < frame["ci_high"]).all()
    assert frame.loc[0, "task"] == "classification" and frame.loc[0, "protocol"] == "linear_probe"
    assert json.loads(frame.loc[0, "protocol_params"]) == {"chosen_c": 1.0}
    assert frame.loc[1, "backbone_name"] == "B" and frame.loc[1, "n_test"] == 100
    write_results(frame, tmp_path / "r.csv", tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(read_results(tmp_path / "r.parquet"), frame)
    assert read_results(tmp_path / "r.csv").shape == frame.shape


def test_a_record_must_carry_the_tasks_primary_metric(tmp_path):
    import pytest

    with pytest.raises(ValueError, match=r"exactly one primary metric, one of \['top1'\]"):
        write_record(
            str(tmp_path / "x.json"), task_name="knn", backbone="a", dataset="d", features_info=INFO,
            protocol_params={}, sizes={}, metrics=[metric_entry("map", np.ones(3), {"n_boot": 10, "level": 0.9}, 0, True)],
            seed=0, started=time.perf_counter(),
        )
