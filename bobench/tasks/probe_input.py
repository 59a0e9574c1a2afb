"""The frozen probe's input as BoB's ``linear_probe.py`` (MAE's recipe) feeds it (docs/protocol.md §3.3).

Training: MAE's ``RandomResizedCrop`` (``util/crop.py``: one draw of scale 0.08–1 and log-ratio 3/4–4/3,
the crop clamped to the image, no retries and no centre-crop fallback) to ``size``, bicubic, then a
horizontal flip; evaluation: ``Resize(int(size × 1.143))`` bicubic → ``CenterCrop(size)``; ImageNet mean
and std for every backbone. ``size`` is BoB's ``--img_size``: 224 unless given, and for a backbone built
for another size (SwinV2 and MiDaS at 256 or 384, timm 0.6.12 refuses other inputs) its own, which is the
only size BoB's code could run them at; so here it is the backbone's native size, or
``frozen_probe.image_size`` where the config sets one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision import transforms
from torchvision.transforms import functional as F

from bobench.backbones.transforms import EvalTransform

#: ``torchvision.transforms.Normalize`` constants of ``linear_probe.py``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Eval resize factor of ``linear_probe.py``: ``Resize(int(img_size * 1.143))`` (256 for 224).
EVAL_RESIZE_FACTOR = 1.143
#: The frozen probe's inputs: BoB's transforms, or the backbone's own (its eval transform; timm's training one).
PROBE_INPUTS = ("bob", "native")


class MaeRandomResizedCrop(transforms.RandomResizedCrop):
    """MAE's ``RandomResizedCrop`` (``util/crop.py``, after BYOL's TF code): one draw, clamped to the image."""

    @staticmethod
    def get_params(img: torch.Tensor, scale: list[float], ratio: list[float]) -> tuple[int, int, int, int]:
        _, height, width = F.get_dimensions(img)
        area = height * width
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        log_ratio = torch.log(torch.tensor(ratio))
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = min(int(round(math.sqrt(target_area * aspect_ratio))), width)
        h = min(int(round(math.sqrt(target_area / aspect_ratio))), height)
        i = torch.randint(0, height - h + 1, size=(1,)).item()
        j = torch.randint(0, width - w + 1, size=(1,)).item()
        return i, j, h, w


@dataclass(frozen=True)
class FixedResizeTransform(EvalTransform):
    """An eval transform whose resize is given in pixels (BoB's ``int(size × 1.143)``), not by ``crop_pct``."""

    resize: int = 0

    @property
    def resize_to(self) -> int:
        return self.resize


def bob_probe_eval_transform(size: int) -> FixedResizeTransform:
    resize = int(size * EVAL_RESIZE_FACTOR)
    return FixedResizeTransform(
        size=size, crop_pct=size / resize, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=resize
    )


def bob_probe_train_transform(size: int) -> Callable:
    """PIL image → normalised tensor, as ``linear_probe.py``'s ``transform_train``."""
    return transforms.Compose(
        [
            MaeRandomResizedCrop(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
