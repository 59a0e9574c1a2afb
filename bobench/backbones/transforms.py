"""A backbone's evaluation transform, applied to whole uint8 batches at once.

It reproduces timm's eval pipeline (``Resize(floor(size / crop_pct))`` on the
shorter side → ``CenterCrop(size)`` → scale to [0, 1] → ``Normalize``) with
torchvision's tensor ops, so a batch is transformed in one call instead of
image by image through PIL. Grey images are repeated to three channels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class EvalTransform:
    size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def resize_to(self) -> int:
        return int(math.floor(self.size / self.crop_pct))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @property
    def geometry(self) -> tuple[int, int, str]:
        """What :meth:`crop` depends on: two transforms with the same geometry crop identically."""
        return self.size, self.resize_to, self.interpolation

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, C)`` with C in {1, 3} → normalised float ``(N, 3, size, size)``."""
        return self.normalize(self.crop(images))

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The first half of the transform: resize, center crop, scale to [0, 1] (float ``(N, 3, size, size)``).
        Kept apart so that a job can store the crops once and normalise them at every epoch
        (:mod:`bobench.eval_crops`): normalising is elementwise, so the result is bit for bit the same."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 images of shape (N, H, W, 1|3), got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = TF.resize(x, [self.resize_to], interpolation=INTERPOLATIONS[self.interpolation], antialias=True)
        x = TF.center_crop(x, [self.size, self.size])
        return x.clamp_(0.0, 255.0).div_(255.0)

    def normalize(self, crops: torch.Tensor) -> torch.Tensor:
        """The second half: ``(x - mean) / std`` per channel, on crops from :meth:`crop`."""
        return TF.normalize(crops, list(self.mean), list(self.std))


def resolve_transform(model_cfg: dict[str, Any], entry_input: dict[str, Any] | None, size_override: int | None) -> EvalTransform:
    """Registry ``input`` values win over the architecture's default config
    (timm's ``pretrained_cfg``); ``size_override`` (the run's
    ``extraction.image_size``) wins over both for the size."""
    entry_input = entry_input or {}
    merged = {
        "size": model_cfg["input_size"][-1] if model_cfg.get("input_size") else None,
        "crop_pct": model_cfg.get("crop_pct", 0.875),
        "interpolation": model_cfg.get("interpolation") or "bicubic",
        "mean": model_cfg.get("mean"),
        "std": model_cfg.get("std"),
        **entry_input,
    }
    missing = [key for key in ("size", "mean", "std") if merged[key] is None]
    if missing:
        raise ValueError(
            f"the backbone's eval transform needs input.{', input.'.join(missing)} in its registry entry "
            "(the architecture has no default config to take them from)"
        )
    return EvalTransform(
        size=int(size_override or merged["size"]),
        crop_pct=float(merged["crop_pct"]),
        interpolation=str(merged["interpolation"]),
        mean=tuple(float(v) for v in merged["mean"]),
        std=tuple(float(v) for v in merged["std"]),
    )
