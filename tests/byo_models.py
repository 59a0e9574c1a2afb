"""A user's own backbone code, for the ``module:function`` registry route (tests/test_byo.py)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_convnet(width: int = 16, seed: int = 0) -> nn.Module:
    """A small CNN returning pooled features; it "loads its own weights" (a seeded init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
