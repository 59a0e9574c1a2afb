"""BoB's retrieval preprocessing (``main_ret.py``; docs/protocol.md §7) as a change to a backbone's eval transform.

``resize: native`` keeps each backbone's own eval transform (its timm config or
registry ``input``), the one every other task uses. ``resize: bob`` is
the original code's: bicubic Resize(256) → CenterCrop(224), Resize(400) →
384 for the 384-px models, Resize(460) → 448 for CLIP's RN50x64, and 256 → 256
for the 256-px models (SwinV2 w8/w16 and MiDaS-T: the branch of ``main_ret.py``
as uploaded, the one timm 0.6.12 can run; docs/protocol.md §7); other sizes get
the same 8/7 ratio.

``normalisation: imagenet`` reproduces the original code's bug: its CLIP branch
tested ``"clip" in args.arch``, which never matched, so CLIP backbones were
normalised with ImageNet's mean and std instead of CLIP's. The published May
2023 MRR table (the project's reference data) was made that way.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Snakefile calls transform_params, which must not import torch
    from bobench.backbones.transforms import EvalTransform

#: Input size → resize of the shorter side in BoB's retrieval code.
BOB_RESIZE = {224: 256, 256: 256, 384: 400, 448: 460}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def transform_params(entry: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    """What a backbone's retrieval features depend on beyond its registry entry (a rule's params)."""
    buggy = options.get("clip_imagenet_normalisation", False) and entry.get("algorithm") == "CLIP"
    return {"resize": options.get("resize", "native"), "normalisation": "imagenet" if buggy else "own"}


def retrieval_transform(native: EvalTransform, params: dict[str, str]) -> EvalTransform:
    transform = native
    if params["resize"] == "bob":
        resize_to = BOB_RESIZE.get(native.size, round(native.size * 8 / 7))
        transform = replace(transform, crop_pct=crop_pct_for(native.size, resize_to), interpolation="bicubic")
    elif params["resize"] != "native":
        raise ValueError(f"retrieval.resize {params['resize']!r} is not valid; choose native or bob")
    if params["normalisation"] == "imagenet":
        transform = replace(transform, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return transform


def crop_pct_for(size: int, resize_to: int) -> float:
    """The crop_pct whose ``floor(size / crop_pct)`` is exactly ``resize_to`` (float division can land just below)."""
    crop_pct = size / resize_to
    while math.floor(size / crop_pct) < resize_to:
        crop_pct = math.nextafter(crop_pct, 0.0)
    return crop_pct
