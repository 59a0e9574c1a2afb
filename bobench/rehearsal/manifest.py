"""Stand-in manifests: what a stand-in maker wrote, and the only registry values it may replace.

A stand-in dataset is written in the real published layout, where the real downloader looks
(``<data_dir>/raw/<id>/``), and is read by the real loader. Two kinds of registry values cannot
hold for it: the pinned checksums of the real files, and the image counts a manual dataset's
layout check expects. The maker records replacements for exactly those in ``STANDIN.json``
(written last, atomically); :func:`apply_manifest` puts them into the entry and refuses anything
else, so a stand-in can never change which loader runs or how it reads.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bobench.io import read_json, write_json

MANIFEST_NAME = "STANDIN.json"
#: Left in a raw folder by the first stand-in maker that writes there, and never removed: the folder's
#: files are stand-ins, so a later maker (a rerun, another seed) may replace them. A folder without it
#: that holds the files may be the real dataset, which no maker ever overwrites.
OWNER_NAME = "STANDIN.owner"
#: Keys whose values a stand-in may replace: checksums, and the counts of a layout check (``expect``,
#: ``expect_<what>``).
REPLACEABLE_LEAVES = ("sha256", "md5")
REPLACEABLE_SUBTREES = ("expect",)


class StandinError(ValueError):
    """A stand-in manifest is missing, or tries to change more than pins and expected counts."""


def claim_for_standin(raw_dir: str | Path, targets: Iterable[str]) -> Path:
    """Get ``raw_dir`` ready for a stand-in that writes ``targets`` (names relative to it).

    Refused where the folder holds one of them but was never a stand-in's (it may be the real data).
    Otherwise the folder is marked as a stand-in's, the manifest goes first (a half-written stand-in never
    looks complete), and an earlier stand-in's files, their extracted ``<name>.d/`` folders and cached
    ``<name>.sha256`` stamps are removed, so that nothing of another seed survives.
    """
    raw_dir = Path(raw_dir)
    leftovers = [raw_dir / f"{name}{suffix}" for name in targets for suffix in ("", ".d", ".sha256")]
    present = [path for path in leftovers if path.exists() or path.is_symlink()]
    if present and not (raw_dir / OWNER_NAME).is_file():
        raise StandinError(
            f"{raw_dir} holds {present[0].relative_to(raw_dir)} but was not written by a stand-in maker: it may be the "
            "real dataset, which a stand-in never overwrites (rehearse in another data_dir, or remove it)"
        )
    raw_dir.mkdir(parents=True, exist_ok=True)
    (raw_dir / OWNER_NAME).write_text("this folder's files are a rehearsal's stand-ins (bobench.rehearsal)\n")
    manifest_path(raw_dir).unlink(missing_ok=True)
    for path in present:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return raw_dir


def manifest_path(raw_dir: str | Path) -> Path:
    return Path(raw_dir) / MANIFEST_NAME


def write_manifest(raw_dir: str | Path, dataset_id: str, source_overrides: Mapping[str, Any], **facts: Any) -> Path:
    """Record a finished stand-in (call it last: the manifest marks the stand-in complete)."""
    path = manifest_path(raw_dir)
    write_json(path, {"dataset": dataset_id, "standin": True, "source": dict(source_overrides), **facts})
    return path


def read_manifest(raw_dir: str | Path) -> dict[str, Any]:
    path = manifest_path(raw_dir)
    if not path.is_file():
        raise StandinError(f"{path} is missing: the stand-in of this dataset was not made (rule make_standin_data)")
    return read_json(path)


def _replaceable(key: str) -> bool:
    return key in REPLACEABLE_LEAVES or key.endswith(tuple(f"_{k}" for k in REPLACEABLE_LEAVES))


def _merge(original: Any, override: Any, where: str) -> Any:
    if isinstance(original, Mapping) and isinstance(override, Mapping):
        merged = dict(original)
        for key, value in override.items():
            here = f"{where}.{key}"
            if key in REPLACEABLE_SUBTREES or key.startswith("expect_") or (_replaceable(key) and not isinstance(value, (Mapping, list))):
                merged[key] = copy.deepcopy(value)
            elif key in original:
                merged[key] = _merge(original[key], value, here)
            else:
                raise StandinError(f"stand-in manifest: {here} is not in the registry entry; a stand-in may only replace "
                                   f"checksums ({', '.join(REPLACEABLE_LEAVES)}) and expected counts")
        return merged
    if isinstance(original, list) and isinstance(override, list):
        if len(original) != len(override):
            raise StandinError(f"stand-in manifest: {where} has {len(override)} items, the registry {len(original)}")
        return [_merge(o, v, f"{where}[{i}]") for i, (o, v) in enumerate(zip(original, override))]
    if original == override:
        return original
    raise StandinError(f"stand-in manifest: {where} = {override!r} would change the registry's {original!r}; a stand-in "
                       f"may only replace checksums ({', '.join(REPLACEABLE_LEAVES)}) and expected counts")


def apply_manifest(entry: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The registry entry with the stand-in's checksums and counts, marked ``standin``."""
    out = copy.deepcopy(dict(entry))
    out["source"] = _merge(entry["source"], manifest.get("source") or {}, "source")
    out["standin"] = True
    return out
