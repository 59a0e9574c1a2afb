"""The tidy results table: one row per backbone × task × dataset × protocol × metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bobench.io import atomic_path, read_json

COLUMNS = [
    # what was evaluated
    "backbone", "backbone_name", "family", "method", "pretrain_data", "pretrain_size", "n_params",
    "task", "dataset", "dataset_name", "domain", "protocol",
    # the number
    "metric", "value", "ci_low", "ci_high", "primary",
    # how it was made
    "protocol_params", "n_train", "n_test", "test_split", "input_size", "precision", "device", "feature_dim", "weights",
    # provenance
    "config_hash", "git_commit", "packages", "seed", "wall_time_s", "host",
]


def record_rows(record: dict[str, Any], backbone_meta: dict[str, Any], dataset_meta: dict[str, Any]) -> list[dict[str, Any]]:
    features, sizes = record["features"], record["sizes"]
    base = {
        "backbone": record["backbone"],
        "backbone_name": backbone_meta["name"],
        "family": backbone_meta["family"],
        "method": backbone_meta["method"],
        "pretrain_data": backbone_meta["pretrain_data"],
        "pretrain_size": backbone_meta["pretrain_size"],
        "n_params": features["n_params"],
        "task": record["task"],
        "dataset": record["dataset"],
        "dataset_name": dataset_meta["name"],
        "domain": dataset_meta["domain"],
        "protocol": record["protocol"],
        "protocol_params": json.dumps(record["protocol_params"], sort_keys=True),
        "n_train": sizes.get("train", sizes.get("bank", sizes.get("database"))),
        "n_test": sizes.get("test", sizes.get("queries")),
        "test_split": record.get("test_split"),
        "input_size": features["transform"]["size"],
        "precision": features["precision"],
        "device": features["device"],
        "feature_dim": features["feature_dim"],
        "weights": json.dumps(features.get("weights"), sort_keys=True),
        **record["provenance"],
    }
    return [{**base, **metric} for metric in record["metrics"]]


def collect_results(
    record_paths: Iterable[str | Path], backbones: dict[str, dict[str, Any]], datasets: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    rows = []
    for path in record_paths:
        content = read_json(path)
        # A job that evaluates several datasets at once (ood) writes a list of records.
        for record in content if isinstance(content, list) else [content]:
            rows += record_rows(record, backbones[record["backbone"]], datasets[record["dataset"]])
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values(["task", "dataset", "protocol", "backbone", "metric"], kind="stable")
    return frame.reset_index(drop=True)


def write_results(frame: pd.DataFrame, csv_path: str | Path, parquet_path: str | Path) -> None:
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(parquet_path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_results(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
