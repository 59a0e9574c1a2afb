"""Which stand-ins a rehearsal needs, and the one entry point that makes each.

Datasets: a maker per paper dataset id (``bobench.rehearsal.standin_classification``, ``…_detection``,
``…_retrieval``) writes the real published layout into the dataset's raw folder, where the real
loader looks, and leaves ``STANDIN.json`` (:mod:`bobench.rehearsal.manifest`). Datasets the project
makes itself (the demo's synthetic sets) and the offline real ones (Fashion-MNIST, Animal-MNIST,
digits) need none. Weights: every backbone fetched from the network (timm tags, release URLs, the
Hugging Face hub) gets a seeded checkpoint in its source's native layout
(``bobench.rehearsal.standin_weights``); installed or random weights need none.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from bobench.rehearsal.manifest import apply_manifest, read_manifest
from bobench.rehearsal.needs import NETWORK_WEIGHT_SOURCES, needs_standin_data, needs_standin_weights

__all__ = ["NETWORK_WEIGHT_SOURCES", "needs_standin_data", "needs_standin_weights"]


def dataset_makers() -> dict[str, Callable[..., Path]]:
    """Paper dataset id → its stand-in maker."""
    from bobench.rehearsal.standin_classification import CLASSIFICATION_MAKERS
    from bobench.rehearsal.standin_detection import DETECTION_MAKERS
    from bobench.rehearsal.standin_retrieval import RETRIEVAL_MAKERS

    return {**CLASSIFICATION_MAKERS, **DETECTION_MAKERS, **RETRIEVAL_MAKERS}


def make_standin_data(dataset_id: str, entry: dict[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """Write a dataset's stand-in into ``raw_dir``; returns its manifest."""
    makers = dataset_makers()
    if dataset_id not in makers:
        raise KeyError(
            f"dataset {dataset_id!r} has no stand-in maker (known: {', '.join(sorted(makers))}); a rehearsal "
            "can run only datasets the project can imitate, or ones already on disk"
        )
    return makers[dataset_id](dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class)


def standin_entry(entry: dict[str, Any], raw_dir: str | Path) -> dict[str, Any]:
    """The registry entry a rehearsal prepares with: the stand-in's checksums and counts, marked ``standin``."""
    return apply_manifest(entry, read_manifest(raw_dir))


def standin_weights_dir(root: str | Path, weights_task: str | None) -> Path:
    """Where the stand-ins of a weights choice lie: ``root`` for the registry entries' own weights,
    ``root/<task>`` for a task variant's (:func:`bobench.config.variant_weights_task`)."""
    return Path(root) if weights_task is None else Path(root) / weights_task


def with_standin_weights(backbones: dict[str, dict[str, Any]], root: str) -> dict[str, dict[str, Any]]:
    """The backbone registry with every network-fetched entry pointed at its stand-in under ``root``, and
    every task variant with weights of its own at its stand-in under ``root/<task>``."""
    from bobench.config import variant_weights_task

    out = copy.deepcopy(backbones)
    for backbone, entry in out.items():
        if needs_standin_weights(entry):
            entry["weights"]["standin_dir"] = str(root)
        for task, variant in (entry.get("task_variants") or {}).items():
            weights_task = variant_weights_task(backbones[backbone], task)  # decided on the registry as written
            if weights_task is not None and needs_standin_weights(variant):
                variant["weights"]["standin_dir"] = str(standin_weights_dir(root, weights_task))
    return out


def entry_for_preparation(entry: dict[str, Any], raw_dir: str | Path, standin_manifests: list[str]) -> dict[str, Any]:
    """What a prepare job prepares with: the registry entry, or in a rehearsal (a stand-in manifest
    among the job's inputs) the entry with the stand-in's checksums and counts."""
    return standin_entry(entry, raw_dir) if list(standin_manifests) else dict(entry)
