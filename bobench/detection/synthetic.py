"""A deterministic COCO-format detection set made from a prepared classification dataset.

Objects (e.g. Fashion-MNIST items, whose background is black) are cut out by
thresholding, scaled, tinted and pasted on canvases; later objects occlude
earlier ones, whose masks and boxes shrink accordingly (an object left with
less than a third of its area is dropped). Two background distributions make
an in-domain/OOD pair, as Sim10k → Cityscapes does for the paper:

* ``plain``: a smooth gradient between two light colours with faint noise;
* ``texture``: dark, high-contrast stripes at a random angle and frequency with
  strong noise.

Each split draws its objects from the same split of the source dataset, so the
test canvases show no object seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BACKGROUNDS = ("plain", "texture")
MIN_VISIBLE = 1 / 3  # share of an object's pasted area that must stay visible


def background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) float canvas in [0, 255]."""
    if kind == "plain":
        top, bottom = rng.uniform(150, 255, 3), rng.uniform(150, 255, 3)
        ramp = np.linspace(0, 1, size)[:, None, None]
        canvas = top * (1 - ramp) + bottom * ramp
        canvas = np.broadcast_to(canvas, (size, size, 3)) + rng.normal(0, 4, (size, size, 3))
    elif kind == "texture":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        y, x = np.mgrid[0:size, 0:size]
        stripes = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0)[..., None]
        dark, light = rng.uniform(0, 80, 3), rng.uniform(60, 160, 3)
        canvas = np.where(stripes, light, dark) + rng.normal(0, 12, (size, size, 3))
    else:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {kind!r}")
    return np.clip(canvas, 0, 255)


def make_canvases(
    objects: np.ndarray, labels: np.ndarray, n_images: int, canvas_size: int, objects_per_image: tuple[int, int],
    object_size: tuple[int, int], background_kind: str, seed: int,
) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
    """``n_images`` canvases: (uint8 HWC image, [{label, mask (bool HW)}]) each.

    ``objects`` are uint8 grey (N, h, w[, 1]) cut-outs on black; ``labels`` their category index.
    """
    rng = np.random.default_rng(seed)
    objects = objects[..., 0] if objects.ndim == 4 else objects
    out = []
    for _ in range(n_images):
        canvas = background(background_kind, canvas_size, rng)
        placed: list[dict[str, Any]] = []
        for _ in range(rng.integers(objects_per_image[0], objects_per_image[1] + 1)):
            index = int(rng.integers(len(objects)))
            side = int(rng.integers(object_size[0], object_size[1] + 1))
            grey = np.asarray(Image.fromarray(objects[index]).resize((side, side), Image.BILINEAR), dtype=np.float64) / 255
            shape = grey > 0.15
            if not shape.any():
                continue
            top, left = (int(rng.integers(0, canvas_size - side + 1)) for _ in range(2))
            mask = np.zeros((canvas_size, canvas_size), dtype=bool)
            mask[top : top + side, left : left + side] = shape
            colour = rng.uniform(0, 255, 3)
            shade = (0.35 + 0.65 * grey[..., None]) * colour  # keep the item's texture
            region = canvas[top : top + side, left : left + side]
            region[shape] = shade[shape]
            for earlier in placed:
                earlier["mask"] &= ~mask
            placed.append({"label": int(labels[index]), "mask": mask, "pasted_area": int(mask.sum())})
        visible = [p for p in placed if p["mask"].sum() >= MIN_VISIBLE * p["pasted_area"]]
        out.append((canvas.round().astype(np.uint8), [{"label": p["label"], "mask": p["mask"]} for p in visible]))
    return out


def coco_annotations(
    canvases: list[tuple[np.ndarray, list[dict[str, Any]]]], categories: list[str], file_prefix: str
) -> dict[str, Any]:
    """The COCO ``instances`` dict of ``canvases``: boxes, RLE masks and areas from the visible masks."""
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for image_id, (image, objects) in enumerate(canvases, start=1):
        height, width = image.shape[:2]
        images.append({"id": image_id, "file_name": f"{file_prefix}{image_id:06d}.png", "height": height, "width": width})
        for obj in objects:
            rle = mask_utils.encode(np.asfortranarray(obj["mask"].astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["label"] + 1,
                "bbox": [x, y, w, h], "area": float(mask_utils.area(rle)), "iscrowd": 0,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            })
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(categories)],
    }


def write_canvases(canvases: list[tuple[np.ndarray, list[dict[str, Any]]]], folder: Path, file_prefix: str) -> None:
    for image_id, (image, _) in enumerate(canvases, start=1):
        path = folder / f"{file_prefix}{image_id:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
