"""Jobs finetune and frozen_probe: one backbone trained on one dataset, resumable.

finetune: end to end, BoB's recipe (§3.2). frozen_probe: BatchNorm + linear head (linear alone for
ResNets, BoB's rule) on the frozen backbone, LARS, BoB's input and MAE's schedule (§3.3): the fixed parts of
its recipe are :data:`bobench.tasks.finetune.FROZEN_PROBE_RECIPE`. Same
engine, same survival (:mod:`bobench.tasks.finetune`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bobench.backbones.probe_head import probe_head
from bobench.cells import CellRecord, classification_metrics
from bobench.datasets import PreparedDataset, load_prepared
from bobench.datasets.input_cache import load_input_cache, short_side_of
from bobench.errors import ConfigError
from bobench.features import device_name, pick_device, resolve_channels_last
from bobench.io import atomic_path
from bobench.options import options_from_config, take
from bobench.provenance import job_fingerprint
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions, build_classifier, finetune
from bobench.tasks.probe_input import PROBE_INPUTS, bob_probe_eval_transform, bob_probe_train_transform

log = logging.getLogger(__name__)

TRAINING_TASKS = ("finetune", "frozen_probe")


def finetune_recipe(section: Mapping[str, Any], task: str) -> tuple[FinetuneOptions, int | None]:
    """A training recipe as the rule passes it (config section ``finetune`` with the backbone's and the
    dataset's overrides applied, or section ``frozen_probe``) → (options, input size). ``image_size`` (null:
    the backbone's own) is the backbone's to apply; the frozen probe's fixed recipe is not configurable."""
    if task not in TRAINING_TASKS:
        raise ValueError(f"a training recipe is one of {TRAINING_TASKS}, not {task!r}")
    taken, rest = take(section, ["image_size"], where=task)
    fixed = FROZEN_PROBE_RECIPE if task == "frozen_probe" else {}
    options = options_from_config(FinetuneOptions, rest, where=task, **fixed)
    if task == "frozen_probe":
        if options.head not in (*PROBE_HEAD_CHOICES, None) or options.input not in (*PROBE_INPUTS, None):
            raise ConfigError(f"config keys 'frozen_probe.head' ({options.head!r}) and 'frozen_probe.input' "
                              f"({options.input!r}): expected one of {PROBE_HEAD_CHOICES} and {PROBE_INPUTS}")
        options = dataclasses.replace(options, head=options.head or "bob", input=options.input or "bob")
    return options, taken["image_size"]


#: ``frozen_probe.head``: BoB's rule per backbone (the registry's ``probe_head``), or one head for all.
PROBE_HEAD_CHOICES = ("bob", "batchnorm", "linear")


def resolved_probe_head(choice: str, spec: Mapping[str, Any]) -> str:
    """The head a frozen probe of this backbone gets: ``bob`` → the registry's (BoB's rule), else the choice."""
    return probe_head(dict(spec)) if choice == "bob" else choice


@dataclass
class TrainedClassifier:
    """A training job's products: its record and the selected epoch's weights (the fine-tuned classifier,
    which OOD evaluation loads; the frozen probe's head alone)."""

    record: CellRecord
    state: dict[str, torch.Tensor]
    checkpoint: Path

    def write(self, record_path: str, weights_path: str) -> None:
        """The weights first, the record last (a record marks a finished job); then the resume checkpoint,
        with its optimiser state, has served its purpose."""
        with atomic_path(weights_path) as tmp:
            torch.save(self.state, tmp)
        self.record.write(record_path)
        self.checkpoint.unlink(missing_ok=True)


def train_classifier(
    backbone_id: str,
    spec: Mapping[str, Any],
    dataset_dir: str | Path,
    options: FinetuneOptions,
    image_size: int | None,
    *,
    task: str,
    dataset: str,
    checkpoint: str | Path,
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
    input_cache: str | Path | None = None,
    eval_crops_max_gb: float = 0.0,
) -> TrainedClassifier:
    """Train on the prepared dataset in ``dataset_dir`` (resuming from ``checkpoint``), pick the epoch on
    val, score it on test: top-1 with calibration, or mean AUROC on multi-label data (CheXpert).

    ``input_cache``: the folder of the dataset's training input cache this job reads, at its own short side
    or a larger shared one (:func:`cached_splits`), val and test then cropped once within
    ``eval_crops_max_gb`` of scratch disk a split; None reads every image from its file at every epoch."""
    if task not in TRAINING_TASKS:
        raise ValueError(f"a training task is one of {TRAINING_TASKS}, not {task!r}")
    started = time.perf_counter()
    spec = dict(spec)
    prepared = load_prepared(dataset_dir, verify=True)
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    head = resolved_probe_head(options.head or "bob", spec) if options.freeze_backbone else None
    model, backbone = build_classifier(
        backbone_id, spec, prepared.num_classes, image_size, options.freeze_backbone, options.drop_path, seed,
        probe_head=head or "batchnorm",
    )
    augmentation = None
    if options.freeze_backbone and options.input in (None, "bob"):  # BoB's transforms at the size the backbone runs at
        augmentation = bob_probe_train_transform(backbone.transform.size)
        backbone.transform = bob_probe_eval_transform(backbone.transform.size)
    device = device or pick_device()
    channels_last = resolve_channels_last("auto", spec["family"])
    with tempfile.TemporaryDirectory(prefix="bobench-eval-crops-") as scratch:
        job_splits = splits if input_cache is None else cached_splits(
            splits, prepared, input_cache, backbone.transform, scratch, options, int(eval_crops_max_gb * 1e9)
        )
        result = finetune(
            model, job_splits, prepared.num_classes, backbone.transform, options, checkpoint,
            seed=seed, device=device, channels_last=channels_last, augmentation=augmentation,
        )
    # Training from the cache changes what the augmentation draws from: the fingerprint says so.
    used_cache = input_cache is not None and prepared.meta["storage"] == "files"
    cache_protocol = {"input_cache_short_side": short_side_of(input_cache)} if used_cache else {}
    metrics = classification_metrics(
        task, result.test_labels, probs=result.test_probs, class_names=prepared.class_names, bootstrap=bootstrap, seed=seed
    )
    log.info("test %s %.4f at epoch %d (best val %.4f)", metrics[0]["metric"], metrics[0]["value"], result.best_epoch + 1,
             result.best_val_score)
    info = {
        **backbone.describe(),
        "device": device_name(device),
        "precision": result.precision,
        "channels_last": channels_last,
        "test_split": prepared.meta["test_split"],
        **cache_protocol,
        "fingerprint": job_fingerprint(
            spec, prepared.meta["manifest"],
            {"image_size": image_size, **dataclasses.asdict(options), "seed": seed, **cache_protocol},
        ),
    }
    record = CellRecord(
        task_name=task,
        backbone=backbone_id,
        dataset=dataset,
        features_info=info,
        protocol_params={
            **dataclasses.asdict(options),
            "image_size": backbone.transform.size,
            **({"probe_head": head} if head else {}),  # the head this backbone got (frozen probe)
            "selection": f"val {'mean AUROC' if prepared.multilabel else 'top-1'} over epochs",
            "best_epoch": result.best_epoch,
            "micro_batch_used": result.micro_batch,
            "resumed_from_epoch": result.resumed_from_epoch,
            "history": result.history,
        },
        metrics=metrics,
        sizes={split: int(len(labels)) for split, (_, labels) in splits.items()},
        seed=seed,
        started=started,
    )
    return TrainedClassifier(record, result.best_state, Path(checkpoint))


def cached_splits(splits: dict[str, tuple[Any, Any]], prepared: PreparedDataset, cache_dir: str | Path,
                  transform: Any, scratch: str | Path, options: FinetuneOptions, max_bytes: int) -> dict[str, tuple[Any, Any]]:
    """The splits a training job reads when the input cache is on: train from the cache (decoded once, by
    the rule ``prepare_input_cache``), val and test as crops stored once in ``scratch``
    (:func:`bobench.eval_crops.crop_once`: the tensors of the file path, bit for bit), each within
    ``max_bytes``. A dataset of pixel arrays is returned as it is."""
    from bobench.eval_crops import crop_once

    # Cheap checks (made from this preparation, index and arrays agree, files unchanged since made): hashing
    # a cache of hundreds of GB would cost each job minutes; a file changed since is hashed again.
    cached = load_input_cache(cache_dir, prepared)
    if cached is None:
        return splits
    out = {"train": (cached, splits["train"][1])}
    for name in ("val", "test"):
        images, labels = splits[name]
        out[name] = (crop_once(images, transform, scratch, name, max_bytes, options.eval_batch_size, options.num_workers), labels)
    return out
