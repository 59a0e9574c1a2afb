"""Raw files of the paper-scale datasets: found or downloaded, checked once, extracted once.

A registry entry lists its raw files under ``source.files``::

    files:
      - name: imagenet-r.tar                  # file name in data/raw/<dataset>/
        url: https://…/imagenet-r.tar         # omitted for manual datasets (ImageNet, CheXpert)
        sha256: 18c6bf49…                     # or "unpinned" where no source publishes one
        md5: a6131213…                        # optional: checked by the download, and on a file already
                                              # present when its sha256 is unpinned
        extract: true                         # unpack into data/raw/<dataset>/<name>.d/

A file that is missing and has no URL (or whose download fails) stops the job
with a message saying where to get it and where to put it. A verified hash is
remembered in ``<name>.sha256`` next to the file (with its size and mtime), so
a 150 GB archive is hashed once, not at every preparation. Extraction goes to a
temporary folder renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bobench.datasets.downloads as downloads
from bobench.datasets.downloads import ChecksumError, DataUnavailableError, DownloadError, check_sha256
from bobench.io import read_json, write_json

UNPINNED = "unpinned"


def obtain_files(
    files: Sequence[Mapping[str, Any]], raw_dir: Path, log: logging.Logger, how_to_get: str
) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Every file of ``files`` present and verified; extracted ones as their folder.

    Returns ``(paths, provenance)``: name → the file (or its extracted folder),
    and one provenance entry per file (name, url, sha256, pinned).
    """
    paths, provenance = {}, []
    for spec in files:
        name = spec["name"]
        path = raw_dir / name
        if not path.is_file():
            _download_or_explain(spec, path, log, how_to_get)
        digest = verified_sha256(path, spec.get("sha256", UNPINNED), log, md5=spec.get("md5"))
        paths[name] = extract_once(path, log) if spec.get("extract") else path
        provenance.append(
            {"name": name, "url": spec.get("url"), "sha256": digest, "pinned": spec.get("sha256", UNPINNED) != UNPINNED}
        )
    return paths, provenance


def _download_or_explain(spec: Mapping[str, Any], path: Path, log: logging.Logger, how_to_get: str) -> None:
    url = spec.get("url")
    problem = "it has no download URL (manual dataset)"
    if url:
        try:
            pinned = spec.get("sha256")
            downloads.fetch_url(url, path, md5=spec.get("md5"), sha256=None if pinned in (None, UNPINNED) else pinned, log=log)
            return
        except DownloadError as exc:
            problem = f"the download failed ({exc})"
    raise DataUnavailableError(
        f"{path} is missing and {problem}.\n{how_to_get.strip()}\nPut the file at {path}"
        + (f" (sha256 {spec['sha256']})" if spec.get("sha256", UNPINNED) != UNPINNED else "")
        + "; a symbolic link to an existing copy works too."
    )


def verified_sha256(path: Path, expected: str, log: logging.Logger, md5: str | None = None) -> str:
    """The file's sha256, checked against ``expected`` unless that is "unpinned"; cached next to the file.

    Where the sha256 is unpinned but a published ``md5`` is known, the md5 is checked instead (both
    digests come from one read, and are cached alike).
    """
    stamp = path.with_name(path.name + ".sha256")
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    check_md5 = md5 is not None and expected == UNPINNED
    cached = read_json(stamp) if stamp.is_file() else None
    if cached and {k: cached.get(k) for k in key} == key and (not check_md5 or "md5" in cached):
        digests = {k: cached[k] for k in ("sha256", "md5") if k in cached}
    else:
        log.info("hashing %s (%.1f GB, once)", path, stat.st_size / 1e9)
        digests = file_digests(path, md5=check_md5)
    if check_md5 and digests["md5"] != md5:
        raise ChecksumError(f"{path}: md5 {digests['md5']} differs from the published {md5}; the file is corrupt or another version")
    if expected == UNPINNED:
        log.warning("%s: no published sha256 to check against%s; its sha256 is %s (recorded)",
                    path, " (its published md5 matches)" if check_md5 else "", digests["sha256"])
    else:
        check_sha256(digests["sha256"], expected, str(path))
    write_json(stamp, {**key, **digests})
    return digests["sha256"]


def file_digests(path: Path, md5: bool = False, chunk_size: int = 1 << 20) -> dict[str, str]:
    """sha256 (and md5) of a file in one read."""
    hashes = {"sha256": hashlib.sha256(), **({"md5": hashlib.md5()} if md5 else {})}
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def extract_once(archive: Path, log: logging.Logger) -> Path:
    """``<archive>.d/``: the archive's content, extracted by torchvision's ``extract_archive``."""
    from torchvision.datasets.utils import extract_archive

    target = archive.with_name(archive.name + ".d")
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=archive.parent))
    try:
        log.info("extracting %s", archive)
        extract_archive(str(archive), str(tmp))
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def require_dir(path: Path, what: str, how_to_get: str) -> Path:
    """``path`` if it is a folder; else a message naming the layout that was expected."""
    if not path.is_dir():
        raise DataUnavailableError(f"{what}: expected the folder {path}, which is missing.\n{how_to_get.strip()}")
    return path
