"""SSCD's released model in its own module layout, for the stand-in TorchScript archives.

SSCD's TorchScript files (facebookresearch/sscd-copy-detection) are its ``Model`` scripted: a Classy
Vision ResNe(X)t trunk as ``backbone`` (``classy_vision/models/resnext.py``: ``initial_block._module``
with the 7×7 stem, ``blocks.<stage>.block<stage>-<index>`` with a ``convolutional_block`` of 1×1, 3×3
(grouped for ResNeXt) and 1×1 convolutions, the final ``bn`` and a ``downsample`` where the shape
changes) and ``embeddings`` = GeM pooling, a linear projection and L2 normalisation. This module
rebuilds that layout and forward from those definitions, so that a stand-in is a TorchScript archive
with SSCD's key names and SSCD's computation, which ``bobench.backbones.sscd`` must reproduce after
the ``sscd_classy`` converter (tests/test_sscd_vicregl.py).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: timm trunk name → (blocks per stage, (width per group, groups)) of Classy Vision's model of that name.
CLASSY_TRUNKS = {
    "resnet50": ([3, 4, 6, 3], None),
    "resnext101_32x4d": ([3, 4, 23, 3], (4, 32)),
}


class ClassyBottleneck(nn.Module):
    """Classy Vision's ``GenericLayer`` with a ``BottleneckLayer`` block (stride on the 3×3 conv)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, mid_planes: int, groups: int):
        super().__init__()
        self.convolutional_block = nn.Sequential(
            nn.Conv2d(in_planes, mid_planes, 1, bias=False),
            nn.BatchNorm2d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_planes, mid_planes, 3, stride=stride, padding=1, groups=groups, bias=False),
            nn.BatchNorm2d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_planes, out_planes, 1, bias=False),
        )
        self.bn = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None  # a None attribute: each scripted block knows statically whether it has one
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn(self.convolutional_block(x))
        out += residual
        return self.relu(out)


class ClassyInitialBlock(nn.Module):
    def __init__(self, planes: int = 64):
        super().__init__()
        self._module = nn.Sequential(
            nn.Conv2d(3, planes, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._module(x)


class ClassyResNeXt(nn.Module):
    """Classy Vision's ResNeXt (init planes 64, reduction 4; mid planes = width·2^stage·groups)."""

    def __init__(self, trunk: str):
        super().__init__()
        if trunk not in CLASSY_TRUNKS:
            raise ValueError(f"no Classy Vision layout for trunk {trunk!r}; known: {sorted(CLASSY_TRUNKS)}")
        num_blocks, width_and_groups = CLASSY_TRUNKS[trunk]
        self.initial_block = ClassyInitialBlock(64)
        out_planes = [64 * 2**i * 4 for i in range(4)]
        in_planes = [64, *out_planes[:-1]]
        stages = []
        for stage, count in enumerate(num_blocks):
            if width_and_groups is None:
                mid, groups = out_planes[stage] // 4, 1
            else:
                mid, groups = width_and_groups[0] * 2**stage * width_and_groups[1], width_and_groups[1]
            blocks = OrderedDict(
                (
                    f"block{stage}-{index}",
                    ClassyBottleneck(
                        in_planes[stage] if index == 0 else out_planes[stage],
                        out_planes[stage],
                        (1 if stage == 0 else 2) if index == 0 else 1,
                        mid,
                        groups,
                    ),
                )
                for index in range(count)
            )
            stages.append(nn.Sequential(blocks))
        self.blocks = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.initial_block(x))


class GlobalGeMPool2d(nn.Module):
    """``sscd/models/gem_pooling.py``."""

    def __init__(self, pooling_param: float):
        super().__init__()
        self.pooling_param = pooling_param

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        mean = x.reshape(n, c, h * w).clamp(min=1e-6).pow(self.pooling_param).mean(dim=2)
        return mean.pow(1.0 / self.pooling_param)


class L2Norm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x)


class SSCDModel(nn.Module):
    """``sscd/models/model.py``'s ``Model`` with a Classy Vision trunk (``CV_RESNET50``, ``CV_RESNEXT101``)."""

    def __init__(self, trunk: str, dims: int, pool_param: float = 3.0):
        super().__init__()
        self.backbone = ClassyResNeXt(trunk)
        self.embeddings = nn.Sequential(GlobalGeMPool2d(pool_param), nn.Linear(2048, dims), L2Norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embeddings(self.backbone(x))
