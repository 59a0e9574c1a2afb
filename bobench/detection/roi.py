"""BoB's RoI pooling: mmcv's ``RoIAlign(aligned=True)`` under mmdet's ``SingleRoIExtractor`` (docs/protocol.md §4).

torchvision's :class:`~torchvision.ops.MultiScaleRoIAlign` samples without the half-pixel offset
(``aligned=False``) and has no switch for it. This module is the same pooling built from torchvision's own
pieces, :func:`torchvision.ops.roi_align` with ``aligned=True`` and its
:class:`~torchvision.ops.poolers.LevelMapper`, set to mmdet's level rule:

* the levels are the pyramid's first four (BoB's configs: ``featmap_strides=[4, 8, 16, 32]``; Stable
  Diffusion's fifth map feeds the RPN only, as there);
* a box of scale ``s = √(w·h)`` goes to level ``⌊log2(s / 56)⌋`` counted from the finest, clamped to the
  levels (``finest_scale=56``). torchvision's ``LevelMapper`` computes ``⌊k0 + log2(s / s0)⌋`` on absolute
  levels; with ``s0 = 56`` and ``k0`` the finest level it is the same rule (its default, 224 at level 4, agrees
  only when the finest stride is 4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align
from torchvision.ops.poolers import LevelMapper

FINEST_SCALE = 56  # mmdet's SingleRoIExtractor default, in every BoB config
ROI_LEVELS = 4  # featmap_strides=[4, 8, 16, 32] in every BoB config


def mmdet_level_mapper(first_stride: int, n_levels: int) -> LevelMapper:
    """torchvision's level mapper set to mmdet's rule for a pyramid whose finest level has ``first_stride``."""
    finest = int(math.log2(first_stride))
    if 2**finest != first_stride:
        raise ValueError(f"the finest pyramid stride must be a power of 2, got {first_stride}")
    return LevelMapper(finest, finest + n_levels - 1, canonical_scale=FINEST_SCALE, canonical_level=finest)


class AlignedMultiScaleRoIAlign(nn.Module):
    """A drop-in for torchvision's ``MultiScaleRoIAlign`` (same call) that pools as BoB's mmdet did (module
    docstring): ``featmap_names`` and ``strides`` name the pyramid's levels, finest first."""

    def __init__(self, featmap_names: list[str], strides: list[int], output_size: int, sampling_ratio: int = 0):
        super().__init__()
        if len(featmap_names) != len(strides):
            raise ValueError(f"{len(featmap_names)} feature maps for {len(strides)} strides")
        self.featmap_names = list(featmap_names[:ROI_LEVELS])
        self.strides = list(strides[:ROI_LEVELS])
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio
        self.map_levels = mmdet_level_mapper(self.strides[0], len(self.strides))

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        levels = self.map_levels(boxes)
        first = features[0]
        result = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            index = torch.where(levels == level)[0]
            pooled = roi_align(
                feature,
                rois[index],
                self.output_size,
                spatial_scale=1.0 / stride,
                sampling_ratio=self.sampling_ratio,
                aligned=True,
            )
            result[index] = pooled.to(result.dtype)  # under autocast roi_align may answer in another dtype
        return result

    def extra_repr(self) -> str:
        return (
            f"featmap_names={self.featmap_names}, strides={self.strides}, output_size={self.output_size}, "
            f"sampling_ratio={self.sampling_ratio}, aligned=True"
        )
