"""Job train_detector: one backbone × setting × lr, trained on a detection dataset, resumable.

detection: ``detection.detector`` (BoB's Cascade Mask R-CNN, or Mask R-CNN), scored on the dataset's own test
split (box AP → task detection, mask AP → task instance_segmentation). ood_detection: boxes only
(``ood_detection.detector``: BoB's Cascade R-CNN, or Faster R-CNN), scored on the test splits of the training
set's OOD sets (AP50 primary, as for Sim10k → Cityscapes cars). The pieces are :mod:`bobench.detection.job`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bobench.cells import CellRecord, detection_metrics, write_records
from bobench.detection.heads import describe_roi_heads, detector_name
from bobench.detection.job import augmentation_used, build, evaluate_on, norm_eval_used, train_on
from bobench.detection.sources import read_manifest
from bobench.detection.train import DetectionOptions
from bobench.features import device_name, pick_device, resolve_precision
from bobench.io import write_json
from bobench.options import options_from_config, take
from bobench.provenance import job_fingerprint

log = logging.getLogger(__name__)

#: How a result row names the augmentation its detector trained with (bobench.detection.data.AUGMENTATIONS).
AUGMENTATION_NAMES = {
    "lsj": "large-scale jitter",
    "multi_scale": "multi-scale AutoAugment (BoB)",
    "single_scale": "single scale, fit in {size} px (BoB's SD)",
}

#: How a result row names its RoI pooling (``detection.roi_align_aligned``).
ROI_ALIGN_NAMES = {
    True: "RoIAlign aligned=True, mmdet's levels (BoB)",
    False: "torchvision MultiScaleRoIAlign (aligned=False)",
}

#: Keys of a detection recipe that are no detector option: the sweep the rule expands into jobs (each job
#: gets one setting and one lr as wildcards).
SWEEP_KEYS = ("settings", "lrs")


def detector_recipe(section: Mapping[str, Any], task: str, lr: float | str) -> tuple[DetectionOptions, int]:
    """A detection recipe as the rule passes it (:func:`bobench.config.detection_recipe`) and the job's lr
    (a wildcard) → (options, bootstrap resamples of AP)."""
    taken, rest = take(section, [*SWEEP_KEYS, "bootstrap_resamples"], where=task)
    return options_from_config(DetectionOptions, rest, where=task, lr=float(lr)), taken["bootstrap_resamples"]


@dataclass
class DetectorCells:
    """A detector's records (one per test set and row task) and its raw per-image detections (COCO results
    format, per test set)."""

    records: list[CellRecord]
    predictions: dict[str, list[dict[str, Any]]]
    checkpoint: Path

    def write(self, record_path: str, predictions_path: str) -> None:
        """Predictions first: a record file is the sign of a finished job; then the resume checkpoint goes."""
        write_json(predictions_path, self.predictions)
        write_records(record_path, self.records)
        self.checkpoint.unlink(missing_ok=True)


def detector_cells(
    backbone_id: str,
    spec: Mapping[str, Any],
    train_manifest: str | Path,
    test_manifests: Sequence[str | Path],
    options: DetectionOptions,
    *,
    task: str,
    setting: str,
    dataset: str,
    checkpoint: str | Path,
    bootstrap_resamples: int,
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
) -> DetectorCells:
    """Train a detector on the train split of ``train_manifest`` (resuming from ``checkpoint``) and score
    it on the test split of each of ``test_manifests``: COCO AP with ``bootstrap_resamples`` image
    resamples for intervals at ``bootstrap["level"]``."""
    started = time.perf_counter()
    spec = dict(spec)
    train = read_manifest(train_manifest)
    class_names = train["categories"]
    masks = task == "detection" and train["masks"]

    detector, backbone = build(backbone_id, spec, class_names, masks, setting, options, seed)
    device = device or pick_device()
    augmentation = augmentation_used(backbone, options)
    result = train_on(detector, augmentation, train, class_names, masks, options, checkpoint, seed, device)
    log.info("trained for %d iterations in %.1f s", result.iterations, time.perf_counter() - started)
    autocast_dtype = resolve_precision(options.precision, device)

    info = {
        **backbone.describe(),
        "device": device_name(device),
        "precision": result.precision,
        "channels_last": False,
    }
    # The results table's input size of a detector: the shorter side its test images are resized to.
    info["transform"] = {**info["transform"], "size": detector.transform.min_size[-1]}
    protocol_params = {
        **dataclasses.asdict(options),
        "detector_name": detector_name(options.detector, masks),
        "roi_heads": describe_roi_heads(options.detector, backbone.is_plain(), masks),
        "pyramid": "ViTDet simple pyramid + FPN (LayerNorm)" if backbone.is_plain() else "FPN",
        "augmentation_used": AUGMENTATION_NAMES[augmentation].format(size=options.single_scale_size),
        "train_proposals_used": detector.rpn._post_nms_top_n["training"],
        "roi_align_used": ROI_ALIGN_NAMES[options.roi_align_aligned],
        "frozen_stages_used": options.frozen_stages if setting == "finetune" else "all",
        "norm_eval_used": norm_eval_used(spec, options),
        "setting": setting,
        "trained_on": dataset,
        "selection": "last epoch (no selection on the test split)",
        "micro_batch_used": result.micro_batch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "iterations": result.iterations,
        "history": result.history,
    }
    protocol = {**dataclasses.asdict(options), "setting": setting, "seed": seed}
    records, predictions = [], {}
    for manifest_path in test_manifests:
        manifest = read_manifest(manifest_path)
        results, metrics, n_test = evaluate_on(detector, manifest, class_names, masks, options, device, autocast_dtype,
                                               n_boot=bootstrap_resamples, seed=seed)
        predictions[manifest["dataset"]] = results
        data = {"train": train["splits"]["train"], "test": manifest["splits"]["test"]}
        fingerprint = job_fingerprint(spec, data, protocol)
        rows = [(task, metrics["bbox"])]
        if "segm" in metrics:
            rows.append(("instance_segmentation", metrics["segm"]))
        for row_task, values in rows:
            log.info("%s on %s: %s", row_task, manifest["dataset"], ", ".join(f"{k} {value:.4f}" for k, (value, _) in values.items()))
            records.append(CellRecord(
                task_name=row_task, backbone=backbone_id, dataset=manifest["dataset"],
                features_info={**info, "fingerprint": fingerprint, "test_split": "test"}, protocol_params=protocol_params,
                metrics=detection_metrics(row_task, values, bootstrap["level"]), seed=seed, started=started,
                protocol=setting, sizes={"train": train["splits"]["train"]["n_images"], "test": n_test},
            ))
    return DetectorCells(records, predictions, Path(checkpoint))
