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
    from pycocotools.cocoeval import COCOeval

    if not results:
        return dict.fromkeys(COCO_STATS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        detections = ground_truth.loadRes([dict(r) for r in results])  # loadRes adds fields in place
        evaluator = COCOeval(ground_truth, detections, iou_type)
        if category_ids is not None:
            evaluator.params.catIds = list(category_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # -1 marks "no ground truth of that size": not a score.
    return {name: (float(value) if value >= 0 else float("nan")) for name, value in zip(COCO_STATS, evaluator.stats[:6])}


def category_map(class_names: list[str], coco: Any) -> list[int | None]:
    """Model label ``i + 1`` (class ``class_names[i]``) → the evaluation set's category id, matched by name."""
    by_name = {cat["name"]: cat_id for cat_id, cat in coco.cats.items()}
    return [by_name.get(name) for name in class_names]
