"""One interface for every backbone: ``create_backbone(backbone_id, entry)``.

A registry entry (``config/backbones.yaml``) names an architecture and where
its weights come from; this module builds the model, loads the weights
strictly and returns a :class:`Backbone` with its eval transform and its
parameter count (computed, never typed into the registry).

The features are the pooled output without the pretraining classifier, unless
the entry says ``features: {output: head, dim: D}``: then the pretraining head
is part of the feature extractor and its D outputs are the features (the CLIP
ResNets: timm builds CLIP's attention pool with its output projection as the
classifier; docs/protocol.md §2.2).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bobench.backbones.transforms import EvalTransform, resolve_transform
from bobench.backbones.weights import load_converted, read_checkpoint, standin_root, timm_hub_standin


@dataclass
class Backbone:
    backbone_id: str
    model: nn.Module  # maps a normalised (N, 3, S, S) batch to pooled features (N, D)
    transform: EvalTransform
    feature_dim: int
    n_params: int  # parameters of the feature extractor, classifier head excluded
    provenance: dict[str, Any] = field(default_factory=dict)

    # --- Multi-scale interface (detection), from timm's feature_info. -------------------------

    def stage_indices(self) -> list[int]:
        """Indices into ``feature_info`` of the backbone's stages.

        Hierarchical models (CNNs, Swin): the levels at stride 4 and coarser, i.e.
        the four stages an FPN takes. Plain ViTs (one stride throughout): every
        block. So ``len(stage_indices())`` is BoB's ``frozen_stages`` for a fully
        frozen backbone: 4 for ResNet/ConvNeXt/Swin, 12 for ViT-B, 24 for ViT-L.
        """
        info = getattr(self.model, "feature_info", None)
        if info is None:
            raise NotImplementedError(f"{self.backbone_id}: the model exposes no feature_info (stages)")
        reductions = [level["reduction"] for level in info]
        if len(set(reductions)) == 1:
            return list(range(len(info)))
        return [i for i, reduction in enumerate(reductions) if reduction >= 4]

    def is_plain(self) -> bool:
        return len({level["reduction"] for level in self.model.feature_info}) == 1

    def feature_map_info(self) -> list[dict[str, Any]]:
        """Channels and stride of each map :meth:`feature_maps` returns."""
        indices = self.stage_indices()[-1:] if self.is_plain() else self.stage_indices()
        return [{"channels": self.model.feature_info[i]["num_chs"], "stride": self.model.feature_info[i]["reduction"]} for i in indices]

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """NCHW maps of the stages (hierarchical), or of the last block (plain ViTs,
        from which ViTDet builds its simple pyramid)."""
        indices = self.stage_indices()[-1:] if self.is_plain() else self.stage_indices()
        return self.model.forward_intermediates(x, indices=indices, intermediates_only=True)

    def parameter_stages(self) -> dict[str, int | None]:
        """Stage of every parameter: the stage whose module contains it, else the next
        stage in module order (so the stem goes with stage 0). Parameters after the
        last stage (a final norm) belong to none."""
        stage_modules = [self.model.feature_info[i]["module"] for i in self.stage_indices()]
        order = {name: i for i, (name, _) in enumerate(self.model.named_modules())}
        stages: dict[str, int | None] = {}
        for name, _ in self.model.named_parameters():
            inside = [j for j, module in enumerate(stage_modules) if name.startswith(module + ".")]
            owner = order[name.rsplit(".", 1)[0]] if "." in name else 0
            later = [j for j, module in enumerate(stage_modules) if order[module] > owner]
            stages[name] = inside[0] if inside else (later[0] if later else None)
        return stages

    def frozen_parameter_names(self, frozen_stages: int) -> list[str]:
        """Parameters that ``frozen_stages`` frozen stages freeze; freezing every stage
        freezes the whole backbone (BoB's "frozen" setting)."""
        n_stages = len(self.stage_indices())
        if not 0 <= frozen_stages <= n_stages:
            raise ValueError(f"{self.backbone_id}: frozen_stages must be in [0, {n_stages}], got {frozen_stages}")
        return [
            name for name, stage in self.parameter_stages().items()
            if frozen_stages == n_stages or (stage is not None and stage < frozen_stages)
        ]

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


def head_feature_dim(entry: dict[str, Any]) -> int | None:
    """D when the entry's features are its pretraining head's D outputs (``features.output: head``), else None."""
    features = entry.get("features") or {"output": "pooled"}
    if features["output"] == "pooled":
        return None
    if features["output"] != "head" or int(features.get("dim", 0)) < 1:
        raise ValueError(f"features {features!r}: expected {{output: pooled}} or {{output: head, dim: <outputs of the head>}}")
    return int(features["dim"])


def build_architecture(entry: dict[str, Any], num_classes: int = 0) -> nn.Module:
    """The bare architecture of an entry, randomly initialised (no download).

    ``library: timm`` builds a timm model by name; ``library: python`` calls a
    ``module:function`` entry point (any importable code) with ``kwargs``.
    An entry whose features come from its head is built with that head, whatever ``num_classes`` says
    when it says 0 (the head is part of the feature extractor).
    """
    arch = entry["architecture"]
    head_dim = head_feature_dim(entry)
    if head_dim is not None:
        if num_classes not in (0, head_dim):
            raise ValueError(f"features.dim is {head_dim} but the checkpoint's head has {num_classes} outputs")
        num_classes = head_dim
    if arch["library"] == "timm":
        import timm

        kwargs = arch.get("kwargs", {})
        if any(value is None for value in kwargs.values()):
            # timm.create_model drops None-valued kwargs as "not given"; a registry null means None (ConvNeXt's
            # ls_init_value: null builds no layer scale), so the model's registered entry point is called directly.
            return timm.models.model_entrypoint(arch["name"])(pretrained=False, num_classes=num_classes, **kwargs)
        return timm.create_model(arch["name"], pretrained=False, num_classes=num_classes, **kwargs)
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


def _from_timm_hub(entry: dict[str, Any], cache_dir: Path | None = None) -> nn.Module:
    """timm's own pretrained weights: a tag of a timm model, or a ``hf-hub:org/repo`` id.

    The classifier is left at the checkpoint's size: timm then loads strictly
    (it relaxes strictness only to drop or adapt a head or stem that differs).
    ``cache_dir``: the Hugging Face cache timm reads (a stand-in's; default: the user's).
    """
    import timm

    arch, weights = entry["architecture"], entry["weights"]
    name = f"{arch['name']}.{weights['tag']}" if weights.get("tag") else arch["name"]
    kwargs = dict(arch.get("kwargs", {}))
    if weights.get("revision"):  # a commit of the hub repository, which timm reads after an @
        if name.startswith("hf-hub:"):
            name = f"{name}@{weights['revision']}"
        else:
            hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
            kwargs["pretrained_cfg_overlay"] = {"hf_hub_id": f"{hub_id}@{weights['revision']}"}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    return timm.create_model(name, pretrained=True, **kwargs)


def create_backbone(
    backbone_id: str, entry: dict[str, Any], image_size: int | None = None, keep_head: bool = False
) -> Backbone:
    """Build the backbone an entry describes, weights loaded strictly.

    ``keep_head=True`` keeps the pretraining classifier (when the checkpoint
    has one) so the model returns logits; the default returns the features
    (pooled, or the head's outputs for ``features.output: head``).
    """
    weights = entry["weights"]
    head_dim = head_feature_dim(entry)
    source = weights["source"]
    if source == "random":
        # A fixed seed makes the random-init baseline the same network every run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(weights.get("seed", 0)))
            model = build_architecture(entry, num_classes=0)
        provenance = {"weights": "random", "seed": int(weights.get("seed", 0))}
    elif source == "timm":
        standin: dict[str, Any] = {}
        if standin_root(weights) is None:
            model = _from_timm_hub(entry)
        else:  # the rehearsal: timm's own loader on a verified stand-in, offline
            model, standin = timm_hub_standin(weights, backbone_id, lambda cache_dir: _from_timm_hub(entry, cache_dir))
        provenance = {"weights": f"timm:{model.pretrained_cfg.get('hf_hub_id') or entry['architecture']['name']}"}
        if weights.get("revision"):
            provenance["revision"] = weights["revision"]
        provenance.update(standin)
    elif source == "builtin":
        model = build_architecture(entry)  # the entry point loads its own weights
        provenance = {"weights": f"builtin:{entry['architecture']['entry_point']}"}
    else:
        raw, provenance = read_checkpoint(weights, backbone_id)  # fetched first: fail before building
        model = build_architecture(entry, num_classes=int(weights.get("num_classes", 0)))
        load_converted(model, raw, provenance, backbone_id)
    model.eval()
    feature_model = model
    if head_dim is None and hasattr(model, "reset_classifier"):
        if keep_head:
            feature_model = copy.deepcopy(model)
        feature_model.reset_classifier(0)
    if not keep_head:
        model = feature_model
    transform = resolve_transform(getattr(model, "pretrained_cfg", None) or {}, entry.get("input"), image_size)
    feature_dim = _feature_dim(feature_model, transform.size, head_output=head_dim is not None)
    if head_dim is not None and feature_dim != head_dim:
        raise ValueError(f"backbone {backbone_id!r}: features.dim is {head_dim} but its head gives {feature_dim} outputs")
    return Backbone(
        backbone_id=backbone_id,
        model=model,
        transform=transform,
        feature_dim=feature_dim,
        n_params=count_parameters(feature_model),
        provenance=provenance,
    )


def _feature_dim(model: nn.Module, size: int, head_output: bool = False) -> int:
    """timm models declare ``num_features`` (pooled) and ``num_classes`` (the head's outputs);
    for other code, look at one output."""
    declared = "num_classes" if head_output else "num_features"
    if getattr(model, declared, 0):
        return int(getattr(model, declared))
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, size, size))
    if out.ndim != 2:
        raise ValueError(f"a backbone must return pooled features (N, D); this one returns shape {tuple(out.shape)}")
    return int(out.shape[1])
