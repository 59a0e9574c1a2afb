"""Backbones at input sizes other than their native one.

timm's transformers check the input size against the one they were built for; built with their
dynamic-size switch (ViT, SwinV2: ``dynamic_img_size``; some others: ``dynamic_size``) they
interpolate their position embeddings (and SwinV2 its windows) to the input instead. No parameter
changes, so loading stays strict. CNNs take any size as they are. Detection needs this for every
transformer (multi-scale training); classification when a dataset asks for its own resolution
(BoB's CheXpert at 256 px for 224-px ViTs, 384-px SwinV2s and 1,024-px SAM).

A size that is not a multiple of a ViT's patch (256 px for CLIP's ViT-L/14) is padded to the next
multiple (``dynamic_img_pad``: 266 px, a 19 × 19 grid); BoB's timm 0.6.12 built the model at that size
and its patch convolution dropped the remainder (252 px seen, 18 × 18). At sizes that are multiples
the padding is a no-op (docs/protocol.md §3.4).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

DYNAMIC_SIZE_KWARGS = ("dynamic_img_size", "dynamic_size")


def any_input_size_spec(spec: dict[str, Any], drop_path: float | None = None) -> dict[str, Any]:
    """A registry entry whose timm architecture accepts any input size (and, if given, BoB's drop path)."""
    architecture = spec["architecture"]
    if architecture["library"] != "timm":
        return spec
    kwargs = dict(architecture.get("kwargs", {}))
    accepted = constructor_arguments(architecture["name"], kwargs)
    for name in DYNAMIC_SIZE_KWARGS:
        if name in accepted:
            kwargs[name] = True
            break
    if "dynamic_img_pad" in accepted:
        kwargs["dynamic_img_pad"] = True
    if drop_path and "drop_path_rate" in accepted:
        kwargs["drop_path_rate"] = drop_path
    return {**spec, "architecture": {**architecture, "kwargs": kwargs}}


def constructor_arguments(model_name: str, kwargs: dict[str, Any]) -> set[str]:
    """Keyword arguments the timm model's class accepts (built on the meta device: no memory, no weights)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    return set(inspect.signature(type(model).__init__).parameters)
