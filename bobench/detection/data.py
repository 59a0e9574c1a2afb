"""COCO-format instance datasets and BoB's detection augmentations (torchvision transforms v2).

A detection dataset is a COCO ``instances`` JSON and the folder its ``file_name``s
are relative to. Categories are matched by name across datasets (a detector
trained on Sim10k's ``car`` is evaluated on Cityscapes' ``car``); the model's
labels are ``1…K`` in the order of the training set's category names.

Augmentations (docs/protocol.md §4), every size times ``scale`` (1 for the paper; smaller
for the CPU demo's small canvases):

* hierarchical backbones, BoB's DETR-style AutoAugment: flip, then either a
  shorter side of 480…800 (step 32, longer side ≤ 1333), or a shorter side of
  400/500/600, a random 384…600 crop and a shorter side of 480…800;
* plain ViTs, large-scale jitter: resize to 1024 × a factor in [0.1, 2.0],
  random crop to 1024, pad to 1024 (torchvision's ``ScaleJitter``);
* Stable Diffusion, one scale: flip, and resize to fit in 512 × 512, aspect
  ratio kept (mmdet's ``Resize(img_scale=(512, 512), keep_ratio=True)``), for
  training and test alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2


def load_coco(annotation_file: str | Path) -> Any:
    """pycocotools' COCO index, without its progress prints."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


class CocoInstances(torch.utils.data.Dataset):
    """Images with boxes, labels and (optionally) masks; crowd annotations are left out, as in mmdet."""

    def __init__(self, annotation_file: str | Path, image_root: str | Path, class_names: list[str],
                 transform: Callable | None = None, masks: bool = True):
        self.coco = load_coco(annotation_file)
        self.image_root = Path(image_root)
        self.image_ids = sorted(self.coco.imgs)
        names = {cat["name"]: cat_id for cat_id, cat in self.coco.cats.items()}
        # A category the model does not know (not among class_names) is not a target.
        self.label_of = {names[name]: i + 1 for i, name in enumerate(class_names) if name in names}
        self.transform, self.masks = transform, masks

    def __len__(self) -> int:
        return len(self.image_ids)

    def image(self, index: int) -> tv_tensors.Image:
        info = self.coco.imgs[self.image_ids[index]]
        return tv_tensors.Image(decode_image(str(self.image_root / info["file_name"]), mode=ImageReadMode.RGB))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image_id = self.image_ids[index]
        image = self.image(index)
        height, width = image.shape[-2:]
        annotations = [
            a for a in self.coco.imgToAnns.get(image_id, [])
            if not a.get("iscrowd", 0) and a["category_id"] in self.label_of and a["bbox"][2] > 1 and a["bbox"][3] > 1
        ]
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYWH", canvas_size=(height, width)),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in annotations], dtype=torch.int64),
            "image_id": image_id,
        }
        if self.masks:
            target["masks"] = tv_tensors.Mask(
                np.stack([self.coco.annToMask(a) for a in annotations]) if annotations
                else np.zeros((0, height, width), dtype=np.uint8)
            )
        target["boxes"] = v2.functional.convert_bounding_box_format(target["boxes"], new_format="XYXY")
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


def _sizes(low: int, high: int, step: int, scale: float) -> list[int]:
    return [round(size * scale) for size in range(low, high + 1, step)]


class RandomSizeCrop(v2.Transform):
    """A random crop whose height and width are each drawn from ``[low, high]`` (mmdet's absolute_range crop)."""

    def __init__(self, low: int, high: int):
        super().__init__()
        self.low, self.high = low, high

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        from torchvision.transforms.v2._utils import query_size

        height, width = query_size(flat_inputs)
        crop_h = min(height, int(torch.randint(self.low, self.high + 1, ()).item()))
        crop_w = min(width, int(torch.randint(self.low, self.high + 1, ()).item()))
        top = int(torch.randint(0, height - crop_h + 1, ()).item())
        left = int(torch.randint(0, width - crop_w + 1, ()).item())
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return v2.functional.crop(inpt, **params)


#: Training augmentations (``detection.augmentation`` resolves to one of them per backbone).
AUGMENTATIONS = ("lsj", "multi_scale", "single_scale")


def train_transform(augmentation: str, scale: float = 1.0, single_scale_size: int = 512) -> Callable:
    """BoB's large-scale jitter (plain ViTs; every backbone in OOD detection), its AutoAugment (hierarchical
    backbones) or its single scale (Stable Diffusion: fit in ``single_scale_size`` squared)."""
    if augmentation == "lsj":
        size = round(1024 * scale)
        geometry = [
            v2.RandomHorizontalFlip(),
            v2.ScaleJitter((size, size), scale_range=(0.1, 2.0), antialias=True),
            v2.RandomCrop(size, pad_if_needed=True),
        ]
    elif augmentation == "multi_scale":
        max_size = round(1333 * scale)
        multi_scale = v2.RandomShortestSize(_sizes(480, 800, 32, scale), max_size=max_size, antialias=True)
        geometry = [
            v2.RandomHorizontalFlip(),
            v2.RandomChoice([
                multi_scale,
                v2.Compose([
                    v2.RandomShortestSize(_sizes(400, 600, 100, scale), max_size=max_size, antialias=True),
                    RandomSizeCrop(round(384 * scale), round(600 * scale)),
                    multi_scale,
                ]),
            ]),
        ]
    elif augmentation == "single_scale":
        size = round(single_scale_size * scale)
        # Shorter side to size, unless the longer side would pass size: the image fits in size × size.
        geometry = [v2.RandomHorizontalFlip(), v2.RandomShortestSize((size,), max_size=size, antialias=True)]
    else:
        raise ValueError(f"detection augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    return v2.Compose([*geometry, v2.ToDtype(torch.float32, scale=True), v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes()])


def eval_transform() -> Callable:
    """Test images go in as they are (float in [0, 1]); the detector resizes them (see build_detector)."""
    return v2.ToDtype(torch.float32, scale=True)


def evaluation_sizes(augmentation: str, scale: float = 1.0, single_scale_size: int = 512) -> tuple[int, int]:
    """(shorter side, longest side) of test images: longest side 1024 (LSJ, as ViTDet), 800/1333 (AutoAugment),
    or fit in the single scale's square (torchvision then resizes by the smaller of the two ratios)."""
    if augmentation == "lsj":
        return (round(1024 * scale),) * 2
    if augmentation == "multi_scale":
        return round(800 * scale), round(1333 * scale)
    if augmentation == "single_scale":
        return (round(single_scale_size * scale),) * 2
    raise ValueError(f"detection augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    images, targets = zip(*batch)
    return list(images), [{k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
                          for t in targets]
