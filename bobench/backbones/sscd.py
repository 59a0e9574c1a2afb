"""SSCD's copy-detection descriptor (Pizzi et al., CVPR 2022) on a timm ResNet trunk.

SSCD's model (``sscd/models/model.py``, ``sscd/models/gem_pooling.py`` of
facebookresearch/sscd-copy-detection): a ResNe(X)t trunk without its classifier, generalised-mean
(GeM) pooling with a fixed exponent p = 3 (``x.clamp(min=1e-6).pow(p)``, mean over the positions,
``.pow(1/p)``), a linear projection of the 2,048 pooled channels to the descriptor size, and L2
normalisation. BoB's retrieval (``main_ret.py``) loaded two of SSCD's TorchScript releases and took
their output as the descriptor: ``sscd_imagenet_mixup`` (ResNet-50, 512-d) and ``sscd_disc_large``
(ResNeXt-101 32x4d, 1,024-d; BoB called it ``resnet50_disc``). Here the same computation is built from
timm's ResNet-50 / ResNeXt-101 32x4d (the Classy Vision trunks SSCD trained have the same layers) and
the release's parameters are mapped onto it by the ``sscd_classy`` converter (docs/protocol.md §2.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeMPool(nn.Module):
    """SSCD's ``GlobalGeMPool2d``: (N, C, H, W) → (N, C), a fixed exponent (not learned)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = float(p), float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).clamp(min=self.eps).pow(self.p).mean(dim=2).pow(1.0 / self.p)


class SSCDDescriptor(nn.Module):
    """trunk → GeM → linear projection → L2 normalisation: SSCD's descriptor, (N, 3, S, S) → (N, dim)."""

    def __init__(self, trunk: nn.Module, dim: int, gem_p: float = 3.0):
        super().__init__()
        self.trunk = trunk
        self.pool = GeMPool(gem_p)
        self.fc = nn.Linear(int(trunk.num_features), int(dim))
        self.num_features = int(dim)  # what create_backbone reports as the feature dimension

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.pool(self.trunk.forward_features(x))))


def sscd_descriptor(trunk: str = "resnet50", dim: int = 512, gem_p: float = 3.0) -> SSCDDescriptor:
    """The registry's entry point: a timm trunk (``resnet50``, ``resnext101_32x4d``) without its
    classifier, randomly initialised (the weights come from the converter)."""
    import timm

    if not trunk.startswith(("resnet", "resnext")):
        raise ValueError(f"SSCD descriptor: trunk {trunk!r} is not a timm ResNet or ResNeXt")
    return SSCDDescriptor(timm.create_model(trunk, pretrained=False, num_classes=0), dim, gem_p)
