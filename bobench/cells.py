"""One result record per evaluated cell (task × backbone × dataset).

A record carries the metrics with their confidence intervals, every protocol
choice, and provenance, so that a row of the results table says exactly how
its number was made (torchgeo-bench style). ``collect`` flattens records into
the tidy table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bobench.config import INSTANCE_SEGMENTATION, TASKS
from bobench.io import read_json, write_json
from bobench.provenance import canonical_hash, provenance_record
from bobench.stats import bootstrap_means, bootstrap_statistic_values, percentile_interval


def load_features(npz_path: str, info_path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(npz_path) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, read_json(info_path)


def _entry(name: str, value: float, replicates: np.ndarray, level: float, primary: bool) -> dict[str, Any]:
    """A metric with its percentile interval; the primary metric also keeps its bootstrap replicates.

    Every job resamples its test samples with the run's seed, so replicate ``b`` of every backbone
    scored on the same test set comes from the same drawn samples: the ranking's bootstrap recomputes
    each setting's z-scores per replicate from them (:mod:`bobench.ranking_uncertainty`).
    """
    low, high = percentile_interval(replicates, level)
    entry = {"metric": name, "value": float(value), "ci_low": low, "ci_high": high, "primary": primary}
    if primary:
        entry["replicates"] = [None if np.isnan(r) else round(float(r), 6) for r in replicates]  # short JSON
    return entry


def metric_entry(
    name: str, per_sample: np.ndarray, bootstrap: dict[str, Any], seed: int, primary: bool
) -> dict[str, Any]:
    """Mean of a per-sample score with a percentile-bootstrap CI."""
    per_sample = np.asarray(per_sample, dtype=np.float64)
    replicates = bootstrap_means(per_sample, n_boot=bootstrap["n_boot"], seed=seed)
    return _entry(name, per_sample.mean(), replicates, bootstrap["level"], primary)


def calibration_entries(probs: np.ndarray, labels: np.ndarray, bootstrap: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """NLL (a mean of per-sample scores) and ECE (a binned statistic), each with a bootstrap CI."""
    from bobench.calibration import expected_calibration_error, per_sample_nll

    labels = np.asarray(labels)
    replicates = bootstrap_statistic_values(
        lambda idx: expected_calibration_error(probs[idx], labels[idx]), len(labels), n_boot=bootstrap["n_boot"], seed=seed
    )
    return [
        metric_entry("nll", per_sample_nll(probs, labels), bootstrap, seed, primary=False),
        _entry("ece", expected_calibration_error(probs, labels), replicates, bootstrap["level"], primary=False),
    ]


def auroc_entries(scores: np.ndarray, targets: np.ndarray, class_names: list[str], bootstrap: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Multi-label results: mean AUROC over classes (primary; BoB's CheXpert metric) and each class's AUROC,
    with bootstrap CIs (resamples in which a class has one label value only are skipped)."""
    from sklearn.metrics import roc_auc_score

    def auroc(columns: slice | int) -> Any:
        def statistic(idx: np.ndarray) -> float:
            y = targets[idx][:, columns]
            if np.ndim(y) == 1 and len(np.unique(y)) < 2 or np.ndim(y) == 2 and any(len(np.unique(c)) < 2 for c in y.T):
                return float("nan")
            return float(roc_auc_score(y, scores[idx][:, columns], average="macro"))
        return statistic

    entries = []
    for name, columns in [("mean_auroc", slice(None)), *((f"auroc_{c}", i) for i, c in enumerate(class_names))]:
        statistic = auroc(columns)
        replicates = bootstrap_statistic_values(statistic, len(targets), n_boot=bootstrap["n_boot"], seed=seed)
        entries.append(_entry(name, statistic(np.arange(len(targets))), replicates, bootstrap["level"],
                              primary=name == "mean_auroc"))
    return entries


def coco_entries(metrics: dict[str, tuple[float, np.ndarray]], level: float, primary: str) -> list[dict[str, Any]]:
    """COCOeval's summary numbers, each ``(value, bootstrap replicates over test images)``, as metric entries."""
    return [_entry(name, value, replicates, level, primary=name == primary) for name, (value, replicates) in metrics.items()]


def write_record(path: str, **fields: Any) -> dict[str, Any]:
    """Build a cell's record (see :func:`build_record`) and write it atomically to ``path``."""
    record = build_record(**fields)
    write_json(path, record)
    return record


def build_record(
    *,
    task_name: str,
    backbone: str,
    dataset: str,
    features_info: dict[str, Any],
    protocol_params: dict[str, Any],
    metrics: list[dict[str, Any]],
    sizes: dict[str, int],
    seed: int,
    started: float,
    protocol: str | None = None,
) -> dict[str, Any]:
    """``protocol`` overrides the task's own (a detection job's setting: finetune or frozen)."""
    spec = TASKS[task_name] if task_name in TASKS else {INSTANCE_SEGMENTATION.name: INSTANCE_SEGMENTATION}[task_name]
    primary = [m["metric"] for m in metrics if m["primary"]]
    allowed = [spec.primary_metric, *([spec.multilabel_metric] if spec.multilabel_metric else [])]
    if len(primary) != 1 or primary[0] not in allowed:
        raise ValueError(f"{task_name}: exactly one primary metric, one of {allowed}, expected; got {primary}")
    config_hash = canonical_hash(
        {"features": features_info["fingerprint"], "task": task_name, "protocol": protocol_params, "seed": seed}
    )
    record = {
        "backbone": backbone,
        "dataset": dataset,
        "task": spec.task,
        "protocol": protocol or spec.protocol,
        "protocol_params": protocol_params,
        "sizes": sizes,
        "test_split": features_info.get("test_split"),
        "metrics": metrics,
        "features": {
            key: features_info[key]
            for key in ("n_params", "feature_dim", "transform", "precision", "device", "channels_last", "weights", "fingerprint")
            if key in features_info
        },
        "provenance": provenance_record(config_hash, seed, time.perf_counter() - started),
    }
    return record
