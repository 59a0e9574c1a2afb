"""One interface for every backbone: ``create_backbone(backbone_id, entry)``.

A registry entry (``config/backbones.yaml``) names an architecture and where
its weights come from; this module builds the model, loads the weights
strictly and returns a :class:`Backbone` with its eval transform and its
parameter count (computed, never typed into the registry).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bobench.backbones.transforms import EvalTransform, resolve_transform
from bobench.backbones.weights import load_checkpoint_into


@dataclass
class Backbone:
    backbone_id: str
    model: nn.Module  # maps a normalised (N, 3, S, S) batch to pooled features (N, D)
    transform: EvalTransform
    feature_dim: int
    n_params: int  # parameters of the feature extractor, classifier head excluded
    provenance: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone_id,
            "feature_dim": self.feature_dim,
            "n_params": self.n_params,
            "transform": self.transform.as_dict(),
            "weights": self.provenance,
        }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_architecture(entry: dict[str, Any], num_classes: int = 0) -> nn.Module:
    """The bare architecture of an entry, randomly initialised (no download)."""
    arch = entry["architecture"]
    if arch["library"] != "timm":
        raise ValueError(f"architecture.library {arch['library']!r} is not supported; valid: ['timm']")
    import timm

    return timm.create_model(arch["name"], pretrained=False, num_classes=num_classes, **arch.get("kwargs", {}))


def create_backbone(
    backbone_id: str, entry: dict[str, Any], image_size: int | None = None, keep_head: bool = False
) -> Backbone:
    """Build the backbone an entry describes, weights loaded strictly.

    ``keep_head=True`` keeps the pretraining classifier (when the checkpoint
    has one) so the model returns logits; the default returns pooled features.
    """
    weights = entry["weights"]
    source = weights["source"]
    head_classes = int(weights.get("num_classes", 0)) if source != "random" else 0
    if source == "random":
        # A fixed seed makes the random-init baseline the same network every run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(weights.get("seed", 0)))
            model = build_architecture(entry, num_classes=0)
        provenance = {"weights": "random", "seed": int(weights.get("seed", 0))}
    elif source == "timm":
        import timm

        arch = entry["architecture"]
        # A pretrained tag is part of the name ("vit_small_patch16_224.augreg_in21k").
        name = f"{arch['name']}.{weights['tag']}" if weights.get("tag") else arch["name"]
        model = timm.create_model(name, pretrained=True, num_classes=head_classes, **arch.get("kwargs", {}))
        provenance = {"weights": f"timm:{name}"}
    else:
        model = build_architecture(entry, num_classes=head_classes)
        provenance = load_checkpoint_into(model, weights, backbone_id)
    if not keep_head and head_classes:
        model.reset_classifier(0)
    model.eval()
    transform = resolve_transform(model.pretrained_cfg, entry.get("input"), image_size)
    feature_model = model
    if keep_head:
        feature_model = copy.deepcopy(model)
        feature_model.reset_classifier(0)
    n_params = count_parameters(feature_model)
    return Backbone(
        backbone_id=backbone_id,
        model=model,
        transform=transform,
        feature_dim=int(feature_model.num_features),
        n_params=n_params,
        provenance=provenance,
    )
