"""Atomic file writing: a crash never leaves a file that looks complete.

Every writer goes to a temporary name in the destination's folder and is
renamed into place only after it was fully written (``os.replace`` is atomic
on one filesystem).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix (``x.partial-abc.npy``) so that
    libraries which look at extensions (numpy, pyarrow, matplotlib) behave.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of an earlier writer of this same file that was killed hard.
    for stale in path.parent.glob(f".{path.stem}{PARTIAL_SUFFIX}-*{path.suffix}"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}{PARTIAL_SUFFIX}-", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates files owner-only; give the result the usual umask-based mode.
        os.chmod(tmp, 0o666 & ~_current_umask())
        _pause_before_rename(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: Test-only (tests/test_crashes.py): glob patterns, separated by os.pathsep, of destinations at whose
#: write a job stops with the temporary file complete and not yet renamed (the worst moment for a crash);
#: it then writes the destination into a new file in BOBENCH_PAUSE_DIR and sleeps until it is killed.
PAUSE_ENV, PAUSE_DIR_ENV = "BOBENCH_PAUSE_BEFORE_RENAME", "BOBENCH_PAUSE_DIR"
PAUSE_SECONDS = 600  # then it goes on: a forgotten variable costs minutes, not a hung run


def _pause_before_rename(path: Path) -> None:
    patterns = os.environ.get(PAUSE_ENV)
    if not patterns or not any(fnmatch.fnmatch(str(path), p) for p in patterns.split(os.pathsep)):
        return
    pause_dir = os.environ[PAUSE_DIR_ENV]
    fd, tmp = tempfile.mkstemp(prefix=".", dir=pause_dir)
    os.write(fd, str(path).encode())
    os.close(fd)
    os.replace(tmp, os.path.join(pause_dir, str(os.getpid())))
    time.sleep(PAUSE_SECONDS)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_table(path: str | os.PathLike) -> Any:
    """A table file as a pandas DataFrame: parquet by its suffix, else CSV."""
    import pandas as pd

    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array, allow_pickle=False)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
