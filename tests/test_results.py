"""Cell records → the tidy results table."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from bobench.cells import metric_entry, write_record
from bobench.results import (
    COLUMNS,
    REPLICATE_COLUMNS,
    collect,
    collect_results,
    import_results,
    read_results,
    write_replicates,
    write_results,
)

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
    with pytest.raises(ValueError, match=r"exactly one primary metric, one of \['top1'\]"):
        write_record(
            str(tmp_path / "x.json"), task_name="knn", backbone="a", dataset="d", features_info=INFO,
            protocol_params={}, sizes={}, metrics=[metric_entry("map", np.ones(3), {"n_boot": 10, "level": 0.9}, 0, True)],
            seed=0, started=time.perf_counter(),
        )


def test_primary_replicates_are_collected_paired_across_backbones(tmp_path):
    """Each record keeps its primary metric's bootstrap replicates; drawn with one seed on one test set, replicate
    b of every backbone comes from the same test samples (here: a's errors are a subset of b's, in every resample)."""
    frame, replicates = collect(make_records(tmp_path), BACKBONES, DATASETS)
    assert list(replicates.columns) == REPLICATE_COLUMNS and replicates["backbone"].tolist() == ["a", "b"]
    a, b = (np.asarray(r) for r in replicates["replicates"])
    assert len(a) == len(b) == 100 and (a >= b).all() and a.std() > 0
    # The replicates give the record's interval.
    low, high = np.quantile(a, [0.025, 0.975])
    assert frame.loc[0, ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high], abs=1e-6)
    write_replicates(replicates, tmp_path / "replicates.parquet")
    back = pd.read_parquet(tmp_path / "replicates.parquet")
    assert np.allclose(np.stack(back["replicates"]), np.stack([a, b]))


def test_an_existing_table_is_imported_with_its_replicates(tmp_path):
    """Redraw mode reads a results table from elsewhere: all columns kept, the replicates next to it found,
    and a table without the ranking's columns refused with their names."""
    frame, replicates = collect(make_records(tmp_path), BACKBONES, DATASETS)
    shared = tmp_path / "shared"
    shared.mkdir()
    write_results(frame, shared / "results.csv", shared / "results.parquet")
    imported, imported_replicates = import_results(shared / "results.csv")
    assert list(imported.columns) == COLUMNS and imported["value"].tolist() == [0.9, 0.5]
    assert imported_replicates.empty and list(imported_replicates.columns) == REPLICATE_COLUMNS
    write_replicates(replicates, shared / "replicates.parquet")
    assert len(import_results(shared / "results.parquet")[1]) == 2
    # A hand-made table with the ranking's columns only: the others come back empty.
    frame[["backbone", "backbone_name", "family", "method", "n_params", "pretrain_size", "task", "dataset",
           "protocol", "metric", "value", "primary"]].to_csv(tmp_path / "minimal.csv", index=False)
    minimal, _ = import_results(tmp_path / "minimal.csv")
    assert list(minimal.columns) == COLUMNS and minimal["ci_low"].isna().all()
    frame.drop(columns=["primary"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) primary"):
        import_results(tmp_path / "bad.csv")
