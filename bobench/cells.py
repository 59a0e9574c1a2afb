"""One result record per evaluated cell (task × backbone × dataset).

A record carries the metrics with their confidence intervals, every protocol
choice, and provenance, so that a row of the results table says exactly how
its number was made (torchgeo-bench style). ``collect`` flattens records into
the tidy table.

The job functions (:mod:`bobench.jobs`) return :class:`CellRecord` objects; which metric of a cell is
primary is decided here, from the task table :data:`bobench.config.TASKS`, by
:func:`classification_metrics`, :func:`retrieval_metrics` and :func:`detection_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from bobench.config import INSTANCE_SEGMENTATION, TASKS, TaskSpec
from bobench.io import write_json
from bobench.provenance import canonical_hash, provenance_record
from bobench.stats import bootstrap_means, bootstrap_statistic_values, percentile_interval


def task_spec(task_name: str) -> TaskSpec:
    """A config task's spec, or that of the mask rows of a detection job (``instance_segmentation``)."""
    return TASKS[task_name] if task_name in TASKS else {INSTANCE_SEGMENTATION.name: INSTANCE_SEGMENTATION}[task_name]


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


def auroc_entries(scores: np.ndarray, targets: np.ndarray, class_names: list[str], bootstrap: dict[str, Any], seed: int,
                  primary: str) -> list[dict[str, Any]]:
    """Multi-label results: mean AUROC over classes (``mean_auroc``; BoB's CheXpert metric) and each class's
    AUROC, with bootstrap CIs (resamples in which a class has one label value only are skipped); the entry
    named ``primary`` is the primary one."""
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
                              primary=name == primary))
    return entries


def coco_entries(metrics: dict[str, tuple[float, np.ndarray]], level: float, primary: str) -> list[dict[str, Any]]:
    """COCOeval's summary numbers, each ``(value, bootstrap replicates over test images)``, as metric entries."""
    return [_entry(name, value, replicates, level, primary=name == primary) for name, (value, replicates) in metrics.items()]


def classification_metrics(
    task: str,
    labels: np.ndarray,
    *,
    bootstrap: Mapping[str, Any],
    seed: int,
    probs: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    correct: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The metric entries of a classification cell; the primary metric is the task's (:data:`TASKS`): its
    multi-label metric for multi-label labels (2-D, 0/1: mean AUROC, with each class's AUROC), else its
    primary metric (top-1).

    ``probs``: class probabilities (softmax; sigmoids for multi-label data): single-label cells also get
    calibration metrics (NLL, ECE). ``scores``: per-class scores that are no probabilities (logits): no
    calibration. ``correct``: per-sample correctness where the task computed it itself (kNN votes; the
    probe on its device); otherwise it is the arg-max of ``probs`` (or ``scores``) against ``labels``.
    """
    spec = TASKS[task]
    labels = np.asarray(labels)
    ranked = probs if probs is not None else scores
    if labels.ndim == 2:
        if spec.multilabel_metric is None:
            raise ValueError(f"{task}: multi-label labels, but the task has no multi-label metric")
        if ranked is None:
            raise ValueError(f"{task}: multi-label metrics need probabilities or scores")
        return auroc_entries(ranked, labels, list(class_names), dict(bootstrap), seed, primary=spec.multilabel_metric)
    if correct is None:
        if ranked is None:
            raise ValueError(f"{task}: top-1 needs per-sample correctness, probabilities or scores")
        correct = (ranked.argmax(axis=1) == labels).astype(np.float64)
    entries = [metric_entry(spec.primary_metric, correct, dict(bootstrap), seed, primary=True)]
    if probs is not None:
        entries += calibration_entries(probs, labels, dict(bootstrap), seed)
    return entries


def retrieval_metrics(results: Mapping[str, Any], primary_protocol: str, bootstrap: Mapping[str, Any],
                      seed: int) -> list[dict[str, Any]]:
    """Every per-query metric of every protocol (``results``: protocol → :class:`bobench.retrieval.metrics.
    RetrievalResult`): the primary protocol's keep their names, the others (revisited Easy, Hard) get the
    protocol as a suffix; the task's primary metric (mAP) of the primary protocol is primary."""
    primary = TASKS["retrieval"].primary_metric
    return [
        metric_entry(name if protocol == primary_protocol else f"{name}_{protocol}", result.per_query[name],
                     dict(bootstrap), seed, primary=(protocol == primary_protocol and name == primary))
        for protocol, result in results.items() for name in result.per_query
    ]


def detection_metrics(task: str, metrics: dict[str, tuple[float, np.ndarray]], level: float) -> list[dict[str, Any]]:
    """COCOeval's summary numbers of a detection row (task ``detection``, ``ood_detection`` or
    ``instance_segmentation``), the task's primary metric (AP; AP50 for OOD detection) primary."""
    return coco_entries(metrics, level, task_spec(task).primary_metric)


def _check_primary(task_name: str, metrics: list[dict[str, Any]]) -> TaskSpec:
    spec = task_spec(task_name)
    primary = [m["metric"] for m in metrics if m["primary"]]
    allowed = [spec.primary_metric, *([spec.multilabel_metric] if spec.multilabel_metric else [])]
    if len(primary) != 1 or primary[0] not in allowed:
        raise ValueError(f"{task_name}: exactly one primary metric, one of {allowed}, expected; got {primary}")
    return spec


@dataclass
class CellRecord:
    """A cell's result before it is written: the fields of :func:`build_record`. The record (and its wall
    time, from ``started``) is built when it is written."""

    task_name: str
    backbone: str
    dataset: str
    features_info: dict[str, Any]
    protocol_params: dict[str, Any]
    metrics: list[dict[str, Any]]
    sizes: dict[str, int]
    seed: int
    started: float
    protocol: str | None = None

    def __post_init__(self) -> None:
        _check_primary(self.task_name, self.metrics)

    def _fields(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def metric(self, name: str) -> dict[str, Any]:
        """The metric entry named ``name``."""
        matches = [m for m in self.metrics if m["metric"] == name]
        if not matches:
            raise KeyError(f"{self.task_name} record has no metric {name!r} ({[m['metric'] for m in self.metrics]})")
        return matches[0]

    @property
    def primary(self) -> dict[str, Any]:
        return next(m for m in self.metrics if m["primary"])

    def as_dict(self) -> dict[str, Any]:
        return build_record(**self._fields())

    def write(self, path: str) -> dict[str, Any]:
        return write_record(path, **self._fields())


def write_records(path: str, records: Sequence[CellRecord]) -> list[dict[str, Any]]:
    """Several records of one job (one per OOD set; a detector's box and mask rows) as one JSON list."""
    built = [record.as_dict() for record in records]
    write_json(path, built)
    return built


def write_record(path: str, **fields: Any) -> dict[str, Any]:
    """Build a cell's record (see :func:`build_record`) and write it atomically to ``path``."""
    record = build_record(**fields)
    write_json(path, record)
    return record


#: What a training job reports about how its run went, not what it was asked to do: left out of ``config_hash``,
#: which must be the same for the same job however it ran (interrupted and resumed, or with its micro-batch
#: halved on out-of-memory; a history's seconds are never the same twice).
RUN_OUTCOME_KEYS = ("history", "resumed_from_epoch", "micro_batch_used")


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
    spec = _check_primary(task_name, metrics)
    choices = {key: value for key, value in protocol_params.items() if key not in RUN_OUTCOME_KEYS}
    config_hash = canonical_hash({"features": features_info["fingerprint"], "task": task_name, "protocol": choices, "seed": seed})
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
