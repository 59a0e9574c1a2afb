"""The prepared dataset format and the split policy that produces it.

Every dataset, whatever its origin, ends up as one folder of plain ``.npy``
files (memory-mappable, no pickles) plus ``meta.json``::

    {train,val,test}_images.npy   uint8  (N, H, W, C), C in {1, 3}
    {train,val,test}_labels.npy   int64  (N,)
    meta.json                     written last; holds a sha256 manifest of the rest

Because ``meta.json`` is renamed into place only after every array was, a
folder with a ``meta.json`` is complete; :func:`load_prepared` refuses one
without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bobench.io import read_json, save_npy, sha256_file, write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
META_FILENAME = "meta.json"
FORMAT_VERSION = 1

#: How a split's size may be given in the registry: a count, a fraction of the
#: pool it is drawn from, or "all"/None (everything left in that pool).
SplitSize = int | float | str | None

SPLIT_METHOD = (
    "Each split is drawn from the loader's official split of the same name; a split "
    "the dataset lacks is carved out of the official train split (or the whole "
    "dataset when there is no official split), in the order test, val, train, so "
    "splits are disjoint. Draws are stratified: per-class quotas proportional to "
    "the class counts left in the pool (largest remainder), members chosen with "
    "numpy.random.default_rng([seed, split_index]). Integer = exact size, "
    "fraction = share of the pool's full size, 'all' = everything left in the pool."
)


class PreparedDataError(ValueError):
    """A prepared folder is incomplete, inconsistent or fails its manifest."""


def prepared_filenames() -> list[str]:
    """The files of a prepared folder, ``meta.json`` last (Snakemake outputs)."""
    arrays = [f"{split}_{kind}.npy" for split in SPLITS for kind in ("images", "labels")]
    return [*arrays, META_FILENAME]


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared folder opened for reading; arrays are memory-mapped on demand."""

    root: Path
    meta: dict[str, Any]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(images, labels)``; images stay a read-only memmap."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        images = np.load(self.root / f"{name}_images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(self.root / f"{name}_labels.npy", allow_pickle=False)
        return images, labels


def write_prepared(
    out_dir: str | Path,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the prepared form of ``splits`` and return its metadata.

    ``info`` (dataset id, name, source, split policy, ...) is copied into
    ``meta.json``; the structural fields (shapes, counts, manifest) are derived
    from the arrays here so they cannot disagree with them. An existing
    ``meta.json`` is deleted first: a crash mid-rewrite must not leave the old
    metadata vouching for half-new arrays.
    """
    out_dir = Path(out_dir)
    num_classes = len(class_names)
    if len(set(class_names)) != num_classes:
        raise ValueError(f"class names must be unique, got {list(class_names)}")
    _check_splits(splits, num_classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILENAME).unlink(missing_ok=True)

    manifest: dict[str, str] = {}
    split_meta: dict[str, Any] = {}
    for split in SPLITS:
        images, labels = splits[split]
        for kind, array in (("images", images), ("labels", labels)):
            filename = f"{split}_{kind}.npy"
            save_npy(out_dir / filename, np.ascontiguousarray(array))
            manifest[filename] = sha256_file(out_dir / filename)
        counts = np.bincount(labels, minlength=num_classes)
        split_meta[split] = {
            "size": len(labels),
            "class_counts": {name: int(c) for name, c in zip(class_names, counts, strict=True)},
        }

    _, height, width, channels = splits["train"][0].shape
    meta = {
        **info,
        "format_version": FORMAT_VERSION,
        "class_names": list(class_names),
        "num_classes": num_classes,
        "channels": int(channels),
        "image_size": [int(height), int(width)],
        "splits": split_meta,
        "manifest": manifest,
    }
    write_json(out_dir / META_FILENAME, meta)
    return meta


def _check_splits(splits: Mapping[str, tuple[np.ndarray, np.ndarray]], num_classes: int) -> None:
    if set(splits) != set(SPLITS):
        raise ValueError(f"expected splits {list(SPLITS)}, got {sorted(splits)}")
    shapes = set()
    for split, (images, labels) in splits.items():
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"{split} images must be uint8 (N, H, W, C) with C in (1, 3), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise ValueError(
                f"{split} labels must be int64 ({len(images)},), got {labels.dtype} {labels.shape}"
            )
        if len(labels) == 0:
            raise ValueError(f"{split} split is empty")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{split} labels fall outside 0..{num_classes - 1}")
        shapes.add(images.shape[1:])
    if len(shapes) != 1:
        raise ValueError(f"splits disagree on the image shape: {sorted(shapes)}")


def load_prepared(out_dir: str | Path, verify: bool = False) -> PreparedDataset:
    """Open a prepared folder; ``verify=True`` also re-checks every sha256 in the manifest.

    Without ``verify`` only cheap checks run (files present, array headers match
    the metadata), so opening a dataset costs no full read.
    """
    root = Path(out_dir)
    meta_path = root / META_FILENAME
    if not meta_path.is_file():
        raise PreparedDataError(
            f"{meta_path} is missing: {root} was never prepared or its preparation did not finish"
        )
    try:
        meta = read_json(meta_path)
    except json.JSONDecodeError as exc:
        raise PreparedDataError(f"{meta_path} is not valid JSON: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise PreparedDataError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, "
            f"expected {FORMAT_VERSION}; re-prepare it"
        )
    manifest: dict[str, str] = meta.get("manifest", {})
    expected_files = prepared_filenames()[:-1]
    if sorted(manifest) != sorted(expected_files):
        raise PreparedDataError(
            f"{meta_path}: manifest lists {sorted(manifest)}, expected {sorted(expected_files)}"
        )
    for filename, expected in manifest.items():
        path = root / filename
        if not path.is_file():
            raise PreparedDataError(f"{path} is missing (listed in the manifest of {meta_path})")
        if verify:
            actual = sha256_file(path)
            if actual != expected:
                raise PreparedDataError(
                    f"{path} fails its checksum: manifest sha256 {expected}, file has {actual}"
                )

    dataset = PreparedDataset(root=root, meta=meta)
    height, width = meta["image_size"]
    for split in SPLITS:
        images, labels = dataset.split(split)
        expected_shape = (meta["splits"][split]["size"], height, width, meta["channels"])
        for kind, array, dtype, shape in (
            ("images", images, np.uint8, expected_shape),
            ("labels", labels, np.int64, expected_shape[:1]),
        ):
            if array.dtype != dtype or array.shape != shape:
                raise PreparedDataError(
                    f"{root / f'{split}_{kind}.npy'}: {array.dtype} {array.shape}, "
                    f"meta.json says {np.dtype(dtype)} {shape}"
                )
    return dataset


def stratified_sample(
    labels: np.ndarray, candidates: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``n`` of ``candidates`` (indices into ``labels``) keeping class proportions.

    Quotas use the largest-remainder method on integers (exact total, no float
    rounding drift); ties between equal remainders are broken by ``rng`` rather
    than by class order, so no class is systematically favoured. Returns the
    chosen indices sorted, so outputs keep the source order.
    """
    if not 0 < n <= len(candidates):
        raise ValueError(f"cannot draw {n} of {len(candidates)} candidates")
    candidate_labels = labels[candidates]
    classes, counts = np.unique(candidate_labels, return_counts=True)
    total = int(counts.sum())
    quotas = counts * n // total
    remainders = counts * n % total
    missing = n - int(quotas.sum())
    order = np.lexsort((rng.permutation(len(classes)), -remainders))
    quotas[order[:missing]] += 1
    chosen = [
        rng.choice(candidates[candidate_labels == cls], size=int(quota), replace=False)
        for cls, quota in zip(classes, quotas, strict=True)
        if quota
    ]
    return np.sort(np.concatenate(chosen))


def make_splits(
    official: Mapping[str, tuple[np.ndarray, np.ndarray]],
    sizes: Mapping[str, SplitSize],
    seed: int,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Apply the registry's split policy (see :data:`SPLIT_METHOD`) to a loader's official splits.

    ``official`` maps split names ("train", "val", "test", or "all" for a
    dataset without official splits) to ``(images, labels)``. Returns the
    train/val/test arrays and, per split, which pool it came from, what was
    requested and the resulting size (recorded in ``meta.json``).
    """
    unknown = set(official) - {*SPLITS, "all"}
    if unknown or not official or ("all" in official and len(official) > 1):
        raise ValueError(
            f"a loader must return official splits from {list(SPLITS)} or only 'all', "
            f"got {sorted(official)}"
        )
    base = "all" if "all" in official else "train"
    if base not in official:
        raise ValueError(
            f"a loader without an official 'train' split must return 'all', got {sorted(official)}"
        )

    remaining = {name: np.arange(len(labels)) for name, (_, labels) in official.items()}
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict[str, Any] = {}
    for split in ("test", "val", "train"):
        pool = split if split in official else base
        images, labels = official[pool]
        request = sizes.get(split)
        available = remaining[pool]
        if request is None or request == "all":
            if pool != split and split != "train":
                raise ValueError(
                    f"splits.{split} = {request!r} is ambiguous: {split} is carved out of the "
                    f"official {pool!r} split, so give a count or a fraction"
                )
            n = len(available)
        elif isinstance(request, float):
            n = round(request * len(labels))
        else:
            n = int(request)
        if not 0 < n <= len(available):
            raise ValueError(
                f"splits.{split} = {request!r} asks for {n} samples but the {pool!r} pool has "
                f"{len(available)} left (of {len(labels)})"
            )
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        chosen = stratified_sample(labels, available, n, rng)
        remaining[pool] = np.setdiff1d(available, chosen, assume_unique=True)
        arrays[split] = (images[chosen], labels[chosen])
        info[split] = {"pool": pool, "requested": request, "size": n}
    return arrays, info
