"""One detection job: a registry backbone, one setting and lr, trained on one dataset, scored on its test sets.

Settings (docs/protocol.md §4): ``finetune`` trains the whole backbone, less the stem and first
``frozen_stages`` stages (BoB's OOD ResNets: 1); ``frozen`` freezes every stage (BoB's ``frozen_stages`` = 4
for CNNs and Swin, = depth for ViTs), so only the pyramid and heads learn. Random-init backbones train
their BatchNorm statistics (mmdet's ``norm_eval=False`` in BoB's random-init COCO configs) unless
``norm_eval`` says otherwise.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bobench.config import DETECTION_SETTINGS
from bobench.detection.data import CocoInstances, eval_transform, evaluation_sizes, train_transform
from bobench.detection.evaluate import category_map, coco_metrics_with_replicates, predict
from bobench.detection.model import build_detector, detection_spec
from bobench.detection.train import DetectionOptions, DetectionResult, train_detector

log = logging.getLogger(__name__)


def build(backbone_id: str, spec: dict[str, Any], class_names: list[str], masks: bool, setting: str,
          options: DetectionOptions, seed: int) -> tuple[torch.nn.Module, Any]:
    """The detector and its backbone (which carries the eval transform and description).

    The neck and heads are initialised from ``seed``: torch seeds its default generator from the
    operating system in every new process, so without it every run would train a different detector.
    """
    from bobench.backbones.model import create_backbone

    if setting not in DETECTION_SETTINGS:
        raise ValueError(f"detection setting must be one of {DETECTION_SETTINGS}, got {setting!r}")
    finetune = setting == "finetune"
    backbone = create_backbone(backbone_id, detection_spec(
        spec, drop_path=options.drop_path if finetune else 0.0, window_size=options.window_size))
    short, longest = evaluation_sizes(augmentation_used(backbone, options), options.augment_scale, options.single_scale_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        detector = build_detector(
            backbone, len(class_names), detector=options.detector, masks=masks, frozen=setting == "frozen",
            norm_eval=norm_eval_used(spec, options), test_short_side=short, test_max_side=longest,
            rois_per_image=options.rois_per_image, proposals_per_image=options.proposals_per_image,
            train_proposals_per_image=options.train_proposals_per_image, roi_align_aligned=options.roi_align_aligned,
            frozen_stages=options.frozen_stages if finetune else 0,
        )
    return detector, backbone


def norm_eval_used(spec: dict[str, Any], options: DetectionOptions) -> bool:
    """mmdet's ``norm_eval`` for the backbone: ``auto`` is BoB's COCO rule (eval mode, except random-init
    backbones, whose BatchNorm statistics train); BoB's OOD ResNets set it for random-init too."""
    if options.norm_eval == "auto":
        return spec["weights"]["source"] != "random"
    if not isinstance(options.norm_eval, bool):
        raise ValueError(f"norm_eval must be auto, true or false, got {options.norm_eval!r}")
    return options.norm_eval


def augmentation_used(backbone: Any, options: DetectionOptions) -> str:
    """The training augmentation and test size (docs/protocol.md §4): ``auto`` is large-scale jitter for plain ViTs
    and the multi-scale AutoAugment for the rest; any other value is used for every backbone (OOD detection's
    LSJ, Stable Diffusion's single scale)."""
    if options.augmentation == "auto":
        return "lsj" if backbone.is_plain() else "multi_scale"
    return options.augmentation


def split_files(manifest: dict[str, Any], split: str) -> tuple[str, str]:
    if split not in manifest["splits"]:
        raise ValueError(f"detection dataset {manifest['dataset']!r} has no {split!r} split (it has {sorted(manifest['splits'])})")
    files = manifest["splits"][split]
    return files["annotations"], files["images"]


def train_on(detector: torch.nn.Module, augmentation: str, manifest: dict[str, Any], class_names: list[str], masks: bool,
             options: DetectionOptions, checkpoint: str | Path, seed: int, device: torch.device) -> DetectionResult:
    annotations, images = split_files(manifest, "train")
    transform = train_transform(augmentation, options.augment_scale, options.single_scale_size)
    train_set = CocoInstances(annotations, images, class_names, transform, masks=masks)
    return train_detector(detector, train_set, options, checkpoint, seed=seed, device=device)


def evaluate_on(detector: torch.nn.Module, manifest: dict[str, Any], class_names: list[str], masks: bool,
                options: DetectionOptions, device: torch.device, autocast_dtype: torch.dtype | None,
                n_boot: int = 0, seed: int = 0,
                ) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[float, np.ndarray]]], int]:
    """(COCO results, {"bbox": metrics, "segm": metrics}, number of test images) on a set's test split;
    each metric is (value, its ``n_boot`` bootstrap replicates over test images)."""
    annotations, images = split_files(manifest, "test")
    test_set = CocoInstances(annotations, images, class_names, eval_transform(), masks=False)
    category_ids = category_map(class_names, test_set.coco)
    evaluated = [c for c in category_ids if c is not None]
    if not evaluated:
        raise ValueError(f"{manifest['dataset']}: none of the detector's classes {class_names} is among its categories")
    started = time.perf_counter()
    results = predict(detector, test_set, category_ids, device, autocast_dtype, masks, num_workers=options.num_workers)
    predicted = time.perf_counter()
    iou_types = ["bbox", "segm"] if masks and manifest["masks"] else ["bbox"]
    metrics = {iou_type: coco_metrics_with_replicates(test_set.coco, results, iou_type, evaluated, n_boot, seed)
               for iou_type in iou_types}
    log.info("%s: %d test images predicted in %.1f s, scored (%s, %d bootstrap resamples) in %.1f s",
             manifest["dataset"], len(test_set), predicted - started, " + ".join(iou_types), n_boot,
             time.perf_counter() - predicted)
    return results, metrics, len(test_set)
