"""One interface for every backbone: ``create_backbone(backbone_id, entry)``.

A registry entry (``config/backbones.yaml``) names an architecture and where
its weights come from; this module builds the model, loads the weights
strictly and returns a :class:`Backbone` with its eval transform and its
parameter count (computed, never typed into the registry).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

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
    """The bare architecture of an entry, randomly initialised (no download).

    ``library: timm`` builds a timm model by name; ``library: python`` calls a
    ``module:function`` entry point (any importable code) with ``kwargs``.
    """
    arch = entry["architecture"]
    if arch["library"] == "timm":
        import timm

        return timm.create_model(arch["name"], pretrained=False, num_classes=num_classes, **arch.get("kwargs", {}))
    if arch["library"] == "python":
        return load_entry_point(arch["entry_point"])(**arch.get("kwargs", {}))
    raise ValueError(f"architecture.library {arch['library']!r} is not supported; valid: ['python', 'timm']")


def load_entry_point(spec: str) -> Callable[..., nn.Module]:
    """``"package.module:function"`` → the function (the module must be importable)."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"architecture.entry_point {spec!r}: cannot import {module_name!r} ({error})") from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise ValueError(f"architecture.entry_point {spec!r}: {module_name} has no {function_name!r}") from None


def _from_timm_hub(entry: dict[str, Any]) -> nn.Module:
    """timm's own pretrained weights: a tag of a timm model, or a ``hf-hub:org/repo`` id.

    The classifier is left at the checkpoint's size: timm then loads strictly
    (it relaxes strictness only to drop or adapt a head or stem that differs).
    """
    import timm

    arch, weights = entry["architecture"], entry["weights"]
    name = f"{arch['name']}.{weights['tag']}" if weights.get("tag") else arch["name"]
    return timm.create_model(name, pretrained=True, **arch.get("kwargs", {}))


def create_backbone(
    backbone_id: str, entry: dict[str, Any], image_size: int | None = None, keep_head: bool = False
) -> Backbone:
    """Build the backbone an entry describes, weights loaded strictly.

    ``keep_head=True`` keeps the pretraining classifier (when the checkpoint
    has one) so the model returns logits; the default returns pooled features.
    """
    weights = entry["weights"]
    source = weights["source"]
    if source == "random":
        # A fixed seed makes the random-init baseline the same network every run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(weights.get("seed", 0)))
            model = build_architecture(entry, num_classes=0)
        provenance = {"weights": "random", "seed": int(weights.get("seed", 0))}
    elif source == "timm":
        model = _from_timm_hub(entry)
        provenance = {"weights": f"timm:{model.pretrained_cfg.get('hf_hub_id') or entry['architecture']['name']}"}
    elif source == "builtin":
        model = build_architecture(entry)  # the entry point loads its own weights
        provenance = {"weights": f"builtin:{entry['architecture']['entry_point']}"}
    else:
        model = build_architecture(entry, num_classes=int(weights.get("num_classes", 0)))
        provenance = load_checkpoint_into(model, weights, backbone_id)
    model.eval()
    feature_model = model
    if hasattr(model, "reset_classifier"):
        if keep_head:
            feature_model = copy.deepcopy(model)
        feature_model.reset_classifier(0)
    if not keep_head:
        model = feature_model
    transform = resolve_transform(getattr(model, "pretrained_cfg", None) or {}, entry.get("input"), image_size)
    return Backbone(
        backbone_id=backbone_id,
        model=model,
        transform=transform,
        feature_dim=_feature_dim(feature_model, transform.size),
        n_params=count_parameters(feature_model),
        provenance=provenance,
    )


def _feature_dim(model: nn.Module, size: int) -> int:
    """timm models declare ``num_features``; for other code, look at one output."""
    if hasattr(model, "num_features"):
        return int(model.num_features)
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, size, size))
    if out.ndim != 2:
        raise ValueError(f"a backbone must return pooled features (N, D); this one returns shape {tuple(out.shape)}")
    return int(out.shape[1])
