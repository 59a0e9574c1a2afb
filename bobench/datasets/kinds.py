"""The three kinds of dataset in one table: kind → its loaders, the check of its entries, its preparation.

A registry entry's kind (:func:`~bobench.datasets.entries.kind_of`) follows from its ``tasks``:

============== =========================================== ===================================
kind           loaders, check and preparation              prepared into (rule)
============== =========================================== ===================================
classification :mod:`bobench.datasets.sources` (and the    ``data/prepared/<id>/``
               paper's loaders, :mod:`~bobench.datasets.   (``prepare_dataset``)
               paper_sources`)
detection      :mod:`bobench.detection.sources`            ``data/detection/<id>/``
                                                           (``prepare_detection_dataset``)
retrieval      :mod:`bobench.retrieval.sources`            ``data/retrieval/<id>/``
                                                           (``prepare_retrieval_dataset``)
============== =========================================== ===================================

This module imports the three; none of them imports it (what they share is in the leaf
:mod:`bobench.datasets.entries`), so the import graph has no circle. The package ``bobench.datasets``
does not import it either: import it as ``bobench.datasets.kinds``.

The registry is read, and its structure checked by its schema (``config/schemas/datasets.schema.yaml``),
by :func:`bobench.config.load_registry`. :func:`validate_dataset_entry` adds what a schema cannot know
(the loader names in the code, the ``source`` keys each loader needs), on an entry as a run uses it: after
``dataset_splits`` and a rehearsal's caps (:func:`bobench.config.dataset_entry`), which the schema never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bobench.datasets.paper_sources  # noqa: F401  (registers BoB's classification loaders in LOADERS)
from bobench.datasets.entries import kind_of
from bobench.datasets.loader_registry import LoaderRegistry
from bobench.datasets.sources import LOADERS, prepare_dataset, validate_classification_entry
from bobench.detection.sources import DETECTION_LOADERS, prepare_detection_dataset, validate_detection_entry
from bobench.retrieval.sources import RETRIEVAL_LOADERS, prepare_retrieval_dataset, validate_retrieval_entry


@dataclass(frozen=True)
class DatasetKind:
    """One kind of dataset: its loaders (``source.loader`` → function), the check of its registry entries
    (``validate(dataset_id, entry)``, raising ValueError) and the function that prepares one (the rule of
    the same name calls it)."""

    name: str
    loaders: LoaderRegistry
    validate: Callable[[str, Mapping[str, Any]], None]
    prepare: Callable[..., dict[str, Any]]


KINDS: dict[str, DatasetKind] = {
    kind.name: kind
    for kind in (
        DatasetKind("classification", LOADERS, validate_classification_entry, prepare_dataset),
        DatasetKind("detection", DETECTION_LOADERS, validate_detection_entry, prepare_detection_dataset),
        DatasetKind("retrieval", RETRIEVAL_LOADERS, validate_retrieval_entry, prepare_retrieval_dataset),
    )
}


def dataset_kind(entry: Any) -> DatasetKind:
    """The row of :data:`KINDS` of a registry entry."""
    return KINDS[kind_of(entry)]


def validate_dataset_entry(dataset_id: str, entry: Any) -> None:
    """Check one registry entry, of any kind; raises ValueError naming id, key, value and choices."""
    dataset_kind(entry).validate(dataset_id, entry)
