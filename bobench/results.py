"""The tidy results table: one row per backbone × task × dataset × protocol × metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from bobench.io import atomic_path, read_json, read_table

COLUMNS = [
    # what was evaluated
    "backbone", "backbone_name", "family", "method", "pretrain_data", "pretrain_size", "n_params",
    "task", "dataset", "dataset_name", "domain", "protocol",
    # the number
    "metric", "value", "ci_low", "ci_high", "primary",
    # how it was made
    "protocol_params", "n_train", "n_test", "test_split", "input_size", "precision", "device", "feature_dim", "weights",
    # a rehearsal's rows: what was a stand-in ("data", "weights", "data+weights"; empty for a real run)
    "standin",
    # provenance
    "config_hash", "git_commit", "packages", "lock_sha256", "seed", "wall_time_s", "host",
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
        "standin": standin_label(bool(dataset_meta.get("standin")), bool((features.get("weights") or {}).get("standin"))),
        **record["provenance"],
    }
    return [{**base, **metric} for metric in record["metrics"]]


def standin_label(data: bool, weights: bool) -> str:
    """What of a row was a rehearsal's stand-in."""
    return "+".join(kind for kind, flag in (("data", data), ("weights", weights)) if flag)


REPLICATE_COLUMNS = ["backbone", "task", "dataset", "protocol", "metric", "n_test", "protocol_params", "replicates"]


def _read_records(record_paths: Iterable[str | Path]) -> Iterable[dict[str, Any]]:
    for path in record_paths:
        content = read_json(path)
        # A job that evaluates several datasets at once (ood, detectors) writes a list of records.
        yield from content if isinstance(content, list) else [content]


def collect(
    record_paths: Iterable[str | Path], backbones: dict[str, dict[str, Any]], datasets: dict[str, dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy results table, and the bootstrap replicates of each primary metric (one row per record
    that kept them; see :func:`bobench.cells.metric_entry`), from the cell records in one pass."""
    rows, replicates = [], []
    for record in _read_records(record_paths):
        rows += record_rows(record, backbones[record["backbone"]], datasets[record["dataset"]])
        replicates += replicate_rows(record)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values(["task", "dataset", "protocol", "backbone", "metric"], kind="stable")
    replicates = pd.DataFrame(replicates, columns=REPLICATE_COLUMNS)
    replicates = replicates.sort_values(["task", "dataset", "protocol", "backbone"], kind="stable")
    return frame.reset_index(drop=True), replicates.reset_index(drop=True)


def collect_results(
    record_paths: Iterable[str | Path], backbones: dict[str, dict[str, Any]], datasets: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    return collect(record_paths, backbones, datasets)[0]


def replicate_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The primary metric's replicates of one record (none for records written without them)."""
    sizes = record["sizes"]
    return [
        {
            "backbone": record["backbone"], "task": record["task"], "dataset": record["dataset"],
            "protocol": record["protocol"], "metric": metric["metric"],
            "n_test": sizes.get("test", sizes.get("queries")),
            "protocol_params": json.dumps(record["protocol_params"], sort_keys=True),
            "replicates": [float("nan") if r is None else r for r in metric["replicates"]],
        }
        for metric in record["metrics"]
        if metric["primary"] and metric.get("replicates")
    ]


def write_replicates(replicates: pd.DataFrame, parquet_path: str | Path) -> None:
    with atomic_path(parquet_path) as tmp:
        replicates.to_parquet(tmp, index=False)


def import_results(table_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An existing results table (redraw mode) as :func:`collect` would return it, with the replicates of the
    ``replicates.parquet`` next to it when there is one (else none: the ranking then resamples settings only).

    The columns the ranking and the figures read must be there; any other column of :data:`COLUMNS` that is
    missing is added empty, so a table assembled elsewhere can be ranked and drawn too."""
    from bobench.ranking import REQUIRED_COLUMNS

    table_path = Path(table_path)
    frame = read_results(table_path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results table {table_path}: missing column(s) {', '.join(missing)}; "
                         f"expected the columns of results.csv ({', '.join(COLUMNS)})")
    frame = frame.reindex(columns=[*COLUMNS, *(c for c in frame.columns if c not in COLUMNS)])
    sibling = table_path.with_name("replicates.parquet")
    replicates = pd.read_parquet(sibling) if sibling.exists() else pd.DataFrame(columns=REPLICATE_COLUMNS)
    return frame, replicates


def write_results(frame: pd.DataFrame, csv_path: str | Path, parquet_path: str | Path) -> None:
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(parquet_path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_results(path: str | Path) -> pd.DataFrame:
    return read_table(path)
