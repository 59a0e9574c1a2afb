"""Provenance recorded with every result: what ran, from which code, where."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = ("bobench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas", "snakemake")


def canonical_hash(obj: Any) -> str:
    """A stable short hash of a JSON-able object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = platform.python_version()
    return versions


@lru_cache(maxsize=4)
def git_commit(repo_dir: str = ".") -> str:
    """HEAD commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


#: Options that choose how images are loaded (processes decoding them), never what a job computes.
LOADER_KEYS = ("num_workers",)


def job_fingerprint(backbone: Mapping[str, Any], data: Any, protocol: Mapping[str, Any]) -> str:
    """What a job's outputs depend on, hashed: the one fingerprint policy of every job that computes from
    images (features, a trained classifier, its OOD scores, a detector).

    * ``backbone``: the registry fields that change features (:func:`bobench.config.feature_spec`), never
      display fields (name, method);
    * ``data``: what identifies the images read, by content: a prepared dataset's sha256 manifest, a
      retrieval split's hash, a detection split's manifest entry, and for an evaluation of a trained model
      the model file's sha256 as well;
    * ``protocol``: every choice of the job that can change its outputs (its options, the input size, the
      seed where the job draws random numbers), never the loader processes (:data:`LOADER_KEYS`), which
      change how fast images arrive, not what is computed from them.

    Jobs downstream of features (probe, kNN, retrieval scoring) cite the features' fingerprint; every
    record hashes its fingerprint with its task, protocol parameters and seed into ``config_hash``
    (:func:`bobench.cells.build_record`).
    """
    kept = {key: value for key, value in protocol.items() if key not in LOADER_KEYS}
    return canonical_hash({"backbone": backbone, "data": data, "protocol": kept})


# The checkout this code runs from (the run's working directory may be elsewhere).
SOURCE_DIR = Path(__file__).resolve().parents[1]
#: The whole Python stack, pinned with hashes (setup.sh installs from it; README "The locked stack").
LOCK_FILE = SOURCE_DIR / "requirements.lock"


@lru_cache(maxsize=4)
def lock_sha256(path: str = str(LOCK_FILE)) -> str:
    """sha256 of the lock file the stack was installed from; ``unknown`` where the checkout has none
    (bobench installed without its source tree)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "unknown"


def provenance_record(config_hash: str, seed: int, wall_time_s: float) -> dict[str, Any]:
    return {
        "config_hash": config_hash,
        "git_commit": git_commit(str(SOURCE_DIR)),
        "packages": json.dumps(package_versions(), sort_keys=True),
        "lock_sha256": lock_sha256(),
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "host": platform.node(),
    }
