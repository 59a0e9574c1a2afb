"""What every dataset registry entry shares, whatever its kind: its keys, its kind, and their check.

An entry is one of three kinds (the table of kinds is :mod:`bobench.datasets.kinds`): a retrieval
benchmark (``tasks: [retrieval]``, with its own queries and database), a detection dataset (a task
among :data:`DETECTION_TASKS`), or else a classification dataset. Each kind's module checks the rest of
its entries after :func:`check_shared_keys`. Standard library only, and no project import: every
kind's module imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

REQUIRED_KEYS: tuple[str, ...] = ("name", "domain", "licence", "source", "splits", "seed", "tasks")
#: ``standin`` is set by a rehearsal (bobench.rehearsal.manifest), never in the registry.
OPTIONAL_KEYS: tuple[str, ...] = ("description", "homepage", "multilabel", "standin")
#: Tasks of detection datasets (COCO-format; prepared by bobench.detection.sources).
DETECTION_TASKS: tuple[str, ...] = ("detection", "ood_detection")

#: ``fail(key, value, problem)`` raises a ValueError naming the dataset, the key, the value and the problem.
Fail = Callable[[str, Any, str], NoReturn]


def is_retrieval_benchmark(entry: Mapping[str, Any]) -> bool:
    """A registry entry whose only task is retrieval: a benchmark with its own queries and database."""
    return list(entry.get("tasks") or []) == ["retrieval"]


def kind_of(entry: Any) -> str:
    """``detection``, ``retrieval`` (a retrieval benchmark) or ``classification``: the entry's kind, which
    decides its loaders, its check and its preparation (:data:`bobench.datasets.kinds.KINDS`)."""
    tasks = entry.get("tasks") if isinstance(entry, Mapping) else None
    if isinstance(tasks, list) and set(tasks) & set(DETECTION_TASKS):
        return "detection"
    if isinstance(tasks, list) and is_retrieval_benchmark(entry):
        return "retrieval"
    return "classification"


def failure(dataset_id: str) -> Fail:
    """The ``fail`` of one entry's check."""

    def fail(key: str, value: Any, problem: str) -> NoReturn:
        raise ValueError(f"dataset {dataset_id!r}: {key} = {value!r} {problem}")

    return fail


def check_shared_keys(dataset_id: str, entry: Any) -> Fail:
    """The check every kind shares: a mapping with the required keys (a retrieval benchmark has no
    ``splits`` or ``seed``), no unknown key, a non-empty name, domain and licence. Returns the entry's
    ``fail`` for its kind's own checks."""
    fail = failure(dataset_id)
    if not isinstance(entry, Mapping):
        fail("entry", entry, "must be a mapping")
    benchmark = kind_of(entry) == "retrieval"
    missing = [key for key in REQUIRED_KEYS if key not in entry and not (benchmark and key in ("splits", "seed"))]
    if missing:
        raise ValueError(
            f"dataset {dataset_id!r}: missing required key(s) {', '.join(missing)} "
            f"(required: {', '.join(REQUIRED_KEYS)})"
        )
    for key in entry:
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            fail(
                key,
                entry[key],
                f"is not a known key; valid keys: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}",
            )
    for key in ("name", "domain", "licence"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            fail(key, entry[key], "must be a non-empty string")
    return fail
