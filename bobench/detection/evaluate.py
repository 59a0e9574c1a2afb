"""Detections as COCO result records, scored by pycocotools' COCOeval (the reference COCO API).

Predictions are kept per image and per object (the raw results, saved by the
rule); metrics are computed from them, so they can be re-scored without the model.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bobench.stats import percentile_interval

# COCOeval.stats, in its order: AP at IoU .50:.95, .50, .75, then small / medium / large objects.
COCO_STATS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def to_coco_results(
    image_id: int, output: dict[str, torch.Tensor], category_ids: list[int], masks: bool
) -> list[dict[str, Any]]:
    """One image's torchvision detections → COCO result dicts (xywh boxes, RLE masks at threshold 0.5).

    ``category_ids[label - 1]`` is the evaluation set's category id of model label
    ``label``, or ``None`` where the evaluation set lacks that category (dropped).
    """
    from pycocotools import mask as mask_utils

    boxes = output["boxes"].float().cpu().numpy()
    scores = output["scores"].float().cpu().numpy()
    labels = output["labels"].cpu().numpy()
    binary = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8) if masks and "masks" in output else None
    results = []
    for i, (box, score, label) in enumerate(zip(boxes, scores, labels)):
        category = category_ids[int(label) - 1]
        if category is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        result = {"image_id": int(image_id), "category_id": int(category), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
        if binary is not None:
            rle = mask_utils.encode(np.asfortranarray(binary[i]))
            result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(result)
    return results


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: Any, category_ids: list[int], device: torch.device,
            autocast_dtype: torch.dtype | None, masks: bool, batch_size: int = 2, num_workers: int = 0) -> list[dict[str, Any]]:
    """COCO results of ``model`` on every image of ``dataset`` (a CocoInstances with the eval transform)."""
    from bobench.detection.data import collate

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=num_workers)
    results: list[dict[str, Any]] = []
    for images, targets in tqdm(loader, desc="evaluating", unit="batch", mininterval=5):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model([image.to(device) for image in images])
        for target, output in zip(targets, outputs):
            results += to_coco_results(target["image_id"], output, category_ids, masks)
    return results


def coco_metrics(ground_truth: Any, results: list[dict[str, Any]], iou_type: str,
                 category_ids: list[int] | None = None) -> dict[str, float]:
    """COCOeval's summary for ``iou_type`` ("bbox" or "segm"): AP, AP50, AP75, AP small/medium/large.

    ``ground_truth`` is a pycocotools COCO; ``category_ids`` restricts the evaluation
    (default: all of the ground truth's). No detections at all scores 0.
    """
    return {name: value for name, (value, _, _) in coco_metrics_with_ci(ground_truth, results, iou_type, category_ids).items()}


def coco_metrics_with_ci(ground_truth: Any, results: list[dict[str, Any]], iou_type: str,
                         category_ids: list[int] | None = None, n_boot: int = 0, level: float = 0.95,
                         seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """:func:`coco_metrics` as ``name → (value, ci_low, ci_high)``: a percentile bootstrap over test images
    (``n_boot=0`` gives NaN intervals)."""
    metrics = coco_metrics_with_replicates(ground_truth, results, iou_type, category_ids, n_boot, seed)
    return {name: (value, *percentile_interval(replicates, level)) for name, (value, replicates) in metrics.items()}


def coco_metrics_with_replicates(ground_truth: Any, results: list[dict[str, Any]], iou_type: str,
                                 category_ids: list[int] | None = None, n_boot: int = 0,
                                 seed: int = 0) -> dict[str, tuple[float, np.ndarray]]:
    """:func:`coco_metrics` as ``name → (value, replicates)``, the replicates being the metric on
    ``n_boot`` resamples of the test images (NaN where a resample has no ground truth of that kind).

    COCOeval matches detections to ground truth once per image; a resample re-runs only its
    accumulation over the drawn images (repeats included), so the replicates cost ``n_boot``
    accumulations, not evaluations. The draws depend only on the number of test images and
    ``seed``, so they are paired across backbones tested on the same images.
    """
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {name: (0.0, np.zeros(n_boot)) for name in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        detections = ground_truth.loadRes([dict(r) for r in results])  # loadRes adds fields in place
        evaluator = COCOeval(ground_truth, detections, iou_type)
        if category_ids is not None:
            evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    values = _ap_stats(evaluator.eval["precision"])
    samples = _bootstrap_ap_stats(evaluator, n_boot, seed) if n_boot else np.full((0, len(COCO_STATS)), np.nan)
    return {name: (values[j], samples[:, j]) for j, name in enumerate(COCO_STATS)}


def _ap_stats(precision: np.ndarray) -> list[float]:
    """COCOeval.summarize's six AP numbers from ``eval['precision']`` [IoU, recall, class, area, maxDets];
    NaN where no ground truth of that kind exists (COCOeval's -1)."""
    selections = [(slice(None), 0), (0, 0), (5, 0), (slice(None), 1), (slice(None), 2), (slice(None), 3)]
    stats = []
    for iou, area in selections:
        values = precision[iou, :, :, area, -1]  # the last maxDets: 100
        values = values[values > -1]
        stats.append(float(values.mean()) if values.size else float("nan"))
    return stats


def _bootstrap_ap_stats(evaluator: Any, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, 6) AP stats of image resamples, reusing the per-image matches of ``evaluator``."""
    params, evaluated = evaluator.params, evaluator._paramsEval
    image_ids, per_image, max_dets = list(evaluated.imgIds), evaluator.evalImgs, list(params.maxDets)
    # The stats read only the last maxDets (100): accumulating it alone gives the same precision there, 3x sooner.
    params.maxDets = evaluated.maxDets = max_dets[-1:]
    n_images, n_areas = len(image_ids), len(evaluated.areaRng)
    n_classes = len(evaluated.catIds) if evaluated.useCats else 1
    rng = np.random.default_rng(seed)
    samples = []
    try:
        for _ in range(n_boot):
            drawn = rng.integers(0, n_images, n_images)
            evaluator.evalImgs = [per_image[(k * n_areas + a) * n_images + i]
                                  for k in range(n_classes) for a in range(n_areas) for i in drawn]
            params.imgIds = evaluated.imgIds = [image_ids[i] for i in drawn]
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator.accumulate()
            samples.append(_ap_stats(evaluator.eval["precision"]))
    finally:
        evaluator.evalImgs, params.imgIds, evaluated.imgIds = per_image, image_ids, image_ids
        params.maxDets = evaluated.maxDets = max_dets
    return np.asarray(samples)


def category_map(class_names: list[str], coco: Any) -> list[int | None]:
    """Model label ``i + 1`` (class ``class_names[i]``) → the evaluation set's category id, matched by name."""
    by_name = {cat["name"]: cat_id for cat_id, cat in coco.cats.items()}
    return [by_name.get(name) for name in class_names]
