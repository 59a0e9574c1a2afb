"""The training input cache: a dataset's training images decoded once, for every epoch of every job.

A dataset kept as image files (ImageNet ...) is otherwise decoded from JPEG at every epoch of every
training job. The rule ``prepare_input_cache`` decodes its train split once per cache short side (the
config's ``input_cache.shared_short_sides``: :class:`bobench.plan.InputCaches`) into one memory-mapped
uint8 array::

    train_pixels.npy   uint8 (total,): the images one after the other, RGB, row-major (H, W, 3)
    train_index.npy    int64 (N, 3): offset into train_pixels, height, width of image i
    cache.json         written last: short side, the prepared split it was made from, sha256 manifest,
                       each file's size and mtime when made

Images whose shorter side exceeds ``short_side`` are resized to it (PIL bicubic, antialiased), the rest
are kept exactly as decoded. A training job needs a short side of :func:`cache_short_side` (its input size
× 8/7) and reads the smallest cache at least that large: the random-resized crop still draws its crop at
every epoch, from the cached image instead of the JPEG, the same share of it whatever the cache's size
(docs/protocol.md, deviations). :class:`CachedImages` reads it back in
:class:`~bobench.datasets.images.ImageFiles`' shape (``len``, ``[i]`` → uint8 ``(H, W, 3)``,
``[indices]`` → a subset), so the training Dataset and its transforms are unchanged.

Evaluation does not read this cache: the val and test splits are cropped once per job instead
(:mod:`bobench.eval_crops`), which gives the very tensors of the JPEG path. A dataset stored as pixel
arrays needs no cache: its cache.json says so and the job reads the prepared arrays. (No torch here:
the Snakefile imports the datasets package.)
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bobench.data_faults import RERUN, unseal
from bobench.datasets.images import ImageFiles
from bobench.datasets.prepared import PreparedDataError, PreparedDataset
from bobench.io import atomic_path, read_json, save_npy, sha256_file, write_json

CACHE_META = "cache.json"
CACHE_FILES = ("train_pixels.npy", "train_index.npy")
FORMAT_VERSION = 1
RESAMPLE = "PIL bicubic (antialiased) when the shorter side exceeds short_side, else as decoded"


class InputCacheError(PreparedDataError):
    """An input cache is incomplete, stale (made from another preparation) or fails its manifest."""


def cache_filenames() -> list[str]:
    """The files of a cache folder, ``cache.json`` last (Snakemake outputs)."""
    return [*CACHE_FILES, CACHE_META]


def cache_short_side(input_size: int, ratio: float) -> int:
    """The cached shorter side for backbones of ``input_size`` px: ``round(input_size × ratio)``
    (ratio 8/7: 256 px for 224-px backbones, the shorter side their eval transform resizes to)."""
    if ratio < 1:
        raise ValueError(f"input_cache.short_side_ratio must be at least 1, got {ratio}")
    return int(round(input_size * ratio))


def cached_shape(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` of an image once cached: the shorter side brought down to ``short_side``."""
    shorter = min(width, height)
    if shorter <= short_side:
        return height, width
    scale = short_side / shorter
    # The shorter side lands exactly on short_side; the longer one is rounded.
    return (short_side, max(1, round(width * scale))) if height == shorter else (max(1, round(height * scale)), short_side)


def _decode(job: tuple[str, int, int]) -> np.ndarray:
    path, height, width = job
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), Image.BICUBIC)
            return np.asarray(rgb)
    except OSError as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


def write_input_cache(prepared: PreparedDataset, out_dir: str | Path, short_side: int, *, workers: int = 1) -> dict[str, Any]:
    """Decode the train split of ``prepared`` into ``out_dir`` (see the module's docstring); returns cache.json.

    Every file goes in under a temporary name and is renamed into place, ``cache.json`` last, after the
    old one was deleted: a folder with a cache.json is complete. The checksums are read back from the
    files before cache.json vouches for them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CACHE_META).unlink(missing_ok=True)
    images, labels = prepared.split("train")
    files = isinstance(images, ImageFiles)
    if files and images.boxes is not None:
        raise ValueError(f"{prepared.root}: an input cache holds whole images; this split crops them to boxes")
    paths = [str(images.root / p) for p in images.paths] if files else []
    shapes = np.zeros((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):  # headers only: no pixel is decoded here
        try:
            with Image.open(path) as image:
                shapes[i] = cached_shape(*image.size, short_side)
        except OSError as exc:
            raise OSError(f"cannot read image {path}: {exc}") from exc
    sizes = shapes[:, 0] * shapes[:, 1] * 3
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    index = np.column_stack([offsets[:-1], shapes]).astype(np.int64).reshape(-1, 3)

    with atomic_path(out / "train_pixels.npy") as tmp:
        pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(offsets[-1]),))
        jobs = [(p, int(h), int(w)) for p, (h, w) in zip(paths, shapes, strict=True)]
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                decoded = pool.imap(_decode, jobs, chunksize=32)
                _fill(pixels, offsets, decoded)
        else:
            _fill(pixels, offsets, map(_decode, jobs))
        pixels.flush()
        del pixels
    save_npy(out / "train_index.npy", index)
    meta = {
        "format_version": FORMAT_VERSION,
        "dataset": prepared.root.name,
        "storage": prepared.meta["storage"],
        "short_side": int(short_side),
        "resample": RESAMPLE,
        "size": int(len(labels)),
        "bytes": int(offsets[-1]),
        # The prepared split it was made from: a re-prepared dataset makes this cache stale.
        "made_from": {name: prepared.meta["manifest"][name] for name in ("train_images.npy", "train_labels.npy")},
        "manifest": {name: sha256_file(out / name) for name in CACHE_FILES},
        # A file whose size or mtime changed since is hashed again by every job that reads it.
        "stat": {name: _stat(out / name) for name in CACHE_FILES},
    }
    write_json(out / CACHE_META, meta)
    return meta


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [int(stat.st_size), int(stat.st_mtime_ns)]


def _fill(pixels: np.ndarray, offsets: np.ndarray, decoded) -> None:
    for i, image in enumerate(decoded):
        pixels[offsets[i] : offsets[i + 1]] = image.reshape(-1)


class CachedImages:
    """The cached train split, in :class:`~bobench.datasets.images.ImageFiles`' shape: ``len``, ``[i]`` (a
    read-only uint8 ``(H, W, 3)`` view of the memory map), ``[indices]`` (a subset)."""

    def __init__(self, pixels: np.ndarray, index: np.ndarray):
        self.pixels, self.index = pixels, np.asarray(index, dtype=np.int64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            offset, height, width = (int(v) for v in self.index[index])
            return self.pixels[offset : offset + height * width * 3].reshape(height, width, 3)
        return CachedImages(self.pixels, self.index[index])

    def __repr__(self) -> str:
        return f"CachedImages({len(self)} images, {self.pixels.nbytes / 1e9:.2f} GB)"


def read_cache_meta(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / CACHE_META
    if not path.is_file():
        raise InputCacheError(f"{path} is missing: the input cache in {cache_dir} was never made or did not finish; "
                              f"{RERUN} to make it (rule prepare_input_cache)")
    try:
        meta = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputCacheError(unseal(path, "prepare_input_cache", f"input cache {cache_dir}: {path} is not valid JSON ({exc})")) from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputCacheError(unseal(path, "prepare_input_cache", f"input cache {cache_dir}: format_version "
                                     f"{meta.get('format_version')!r}, expected {FORMAT_VERSION}"))
    return meta


def load_input_cache(cache_dir: str | Path, prepared: PreparedDataset, verify: bool = False) -> CachedImages | None:
    """The cached train split of ``prepared`` (None for a dataset of pixel arrays, which needs none).

    Refuses a cache made from another preparation of the dataset, one whose arrays disagree with their
    index, and one whose files fail their sha256: hashed when ``verify``, or when a file's size or mtime
    differs from cache.json's record (a file changed since it was made), else trusted (hashing hundreds of
    GB costs each job minutes). A refused cache is unsealed (cache.json removed, see
    :mod:`bobench.data_faults`): no job reads it, and the next run makes it again."""
    root = Path(cache_dir)
    meta = read_cache_meta(root)

    def fault(problem: str) -> InputCacheError:
        return InputCacheError(unseal(root / CACHE_META, "prepare_input_cache", f"input cache {root}: {problem}"))

    made_from = {name: prepared.meta["manifest"][name] for name in ("train_images.npy", "train_labels.npy")}
    if meta["made_from"] != made_from:
        raise fault(f"made from another preparation of {prepared.root}")
    for name, expected in meta["manifest"].items():
        path = root / name
        if not path.is_file():
            raise fault(f"{path} is missing (listed in {root / CACHE_META})")
        changed = meta.get("stat", {}).get(name) != _stat(path)
        if (verify or changed) and sha256_file(path) != expected:
            raise fault(f"{path} fails its checksum (sha256 in {root / CACHE_META}: {expected})")
    if meta["storage"] != "files":
        return None
    try:
        pixels = np.load(root / "train_pixels.npy", mmap_mode="r", allow_pickle=False)
        index = np.load(root / "train_index.npy", allow_pickle=False)
    except ValueError as exc:
        raise fault(f"its arrays cannot be read ({exc})") from exc
    ends = index[:, 0] + index[:, 1] * index[:, 2] * 3
    if len(index) != meta["size"] or pixels.shape != (meta["bytes"],) or (len(index) and ends.max() > len(pixels)):
        raise fault(f"train_index.npy and train_pixels.npy disagree with {CACHE_META}")
    return CachedImages(pixels, index)


def short_side_of(cache_dir: str | Path) -> int:
    return int(read_cache_meta(cache_dir)["short_side"])
