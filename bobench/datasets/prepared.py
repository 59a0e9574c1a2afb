"""The prepared dataset format and the split policy that produces it.

Every dataset, whatever its origin, ends up as one folder of plain ``.npy``
files (memory-mappable, no pickles) plus ``meta.json``::

    {train,val,test}_images.npy   storage "pixels": uint8 (N, H, W, C), C in {1, 3}
                                  storage "files":  unicode (N,), image paths relative to
                                                    meta.json's image_root (large or
                                                    variable-size datasets: ImageNet ...)
    {train,val,test}_labels.npy   int64 (N,) class indices, or (N, C) 0/1 for multi-label
                                  datasets (label_type "multilabel": CheXpert)
    meta.json                     written last; holds a sha256 manifest of the rest

A split may be empty (N = 0) only in a dataset used purely as an OOD test set.

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

from bobench.data_faults import RERUN, unseal
from bobench.datasets.images import ImageFiles
from bobench.io import read_json, save_npy, sha256_file, write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
META_FILENAME = "meta.json"
FORMAT_VERSION = 2

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

    @property
    def multilabel(self) -> bool:
        return self.meta["label_type"] == "multilabel"

    def split(self, name: str) -> tuple[np.ndarray | ImageFiles, np.ndarray]:
        """Return ``(images, labels)``; pixel images stay a read-only memmap, files an :class:`ImageFiles`."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        labels = np.load(self.root / f"{name}_labels.npy", allow_pickle=False)
        if self.meta["storage"] == "files":
            paths = np.load(self.root / f"{name}_images.npy", allow_pickle=False)
            return ImageFiles(self.meta["image_root"], paths), labels
        images = np.load(self.root / f"{name}_images.npy", mmap_mode="r", allow_pickle=False)
        return images, labels


def write_prepared(
    out_dir: str | Path,
    splits: Mapping[str, tuple[np.ndarray | ImageFiles, np.ndarray]],
    class_names: Sequence[str],
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the prepared form of ``splits`` and return its metadata.

    Images are pixel arrays or :class:`ImageFiles` (all splits the same kind;
    files keep their root, which goes into ``meta.json``). ``info`` (dataset id,
    name, source, split policy, ...) is copied into
    ``meta.json``; the structural fields (shapes, counts, manifest) are derived
    from the arrays here so they cannot disagree with them. An existing
    ``meta.json`` is deleted first: a crash mid-rewrite must not leave the old
    metadata vouching for half-new arrays.
    """
    out_dir = Path(out_dir)
    num_classes = len(class_names)
    if len(set(class_names)) != num_classes:
        raise ValueError(f"class names must be unique, got {list(class_names)}")
    storage, label_type = _check_splits(splits, num_classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILENAME).unlink(missing_ok=True)

    manifest: dict[str, str] = {}
    split_meta: dict[str, Any] = {}
    for split in SPLITS:
        images, labels = splits[split]
        stored = images.paths if storage == "files" else np.ascontiguousarray(images)
        for kind, array in (("images", stored), ("labels", labels)):
            filename = f"{split}_{kind}.npy"
            save_npy(out_dir / filename, array)
            manifest[filename] = sha256_file(out_dir / filename)
        # Multi-label: positives per class.
        counts = labels.sum(axis=0) if label_type == "multilabel" else np.bincount(labels, minlength=num_classes)
        split_meta[split] = {
            "size": len(labels),
            "class_counts": {name: int(c) for name, c in zip(class_names, counts, strict=True)},
        }

    layout: dict[str, Any]
    if storage == "files":
        layout = {"image_root": str(Path(splits["train"][0].root).resolve()), "channels": 3, "image_size": None}
    else:
        _, height, width, channels = splits["train"][0].shape
        layout = {"channels": int(channels), "image_size": [int(height), int(width)]}
    meta = {
        **info,
        "format_version": FORMAT_VERSION,
        "storage": storage,
        "label_type": label_type,
        "class_names": list(class_names),
        "num_classes": num_classes,
        **layout,
        "splits": split_meta,
        "manifest": manifest,
    }
    write_json(out_dir / META_FILENAME, meta)
    return meta


def _check_splits(splits: Mapping[str, tuple[np.ndarray | ImageFiles, np.ndarray]], num_classes: int) -> tuple[str, str]:
    """Validate the arrays; return their storage ("pixels"/"files") and label type ("single"/"multilabel")."""
    if set(splits) != set(SPLITS):
        raise ValueError(f"expected splits {list(SPLITS)}, got {sorted(splits)}")
    storages = {"files" if isinstance(images, ImageFiles) else "pixels" for images, _ in splits.values()}
    label_types = {"multilabel" if labels.ndim == 2 else "single" for _, labels in splits.values()}
    if len(storages) != 1 or len(label_types) != 1:
        raise ValueError("splits mix pixel arrays and image files, or single and multi-label labels")
    storage, label_type = storages.pop(), label_types.pop()
    shapes, roots = set(), set()
    for split, (images, labels) in splits.items():
        if storage == "files":
            roots.add(str(images.root))
        elif images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"{split} images must be uint8 (N, H, W, C) with C in (1, 3), "
                f"got {images.dtype} {images.shape}"
            )
        else:
            shapes.add(images.shape[1:])
        expected = (len(images), num_classes) if label_type == "multilabel" else (len(images),)
        if labels.dtype != np.int64 or labels.shape != expected:
            raise ValueError(f"{split} labels must be int64 {expected}, got {labels.dtype} {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= (2 if label_type == "multilabel" else num_classes)):
            raise ValueError(
                f"{split} labels fall outside "
                + ("0/1 (multi-label)" if label_type == "multilabel" else f"0..{num_classes - 1}")
            )
    if len(shapes) > 1:
        raise ValueError(f"splits disagree on the image shape: {sorted(shapes)}")
    if len(roots) > 1:
        raise ValueError(f"splits' image files lie under different roots: {sorted(roots)}")
    if not len(splits["test"][1]):
        raise ValueError("test split is empty")
    return storage, label_type


def load_prepared(out_dir: str | Path, verify: bool = False) -> PreparedDataset:
    """Open a prepared folder; ``verify=True`` also re-checks every sha256 in the manifest.

    Without ``verify`` only cheap checks run (files present, array headers match
    the metadata), so opening a dataset costs no full read. A job reads its dataset
    with ``verify=True``: a folder that fails a check is then unsealed (its ``meta.json``
    removed, see :mod:`bobench.data_faults`), so that no other job reads it and the
    next run prepares it again.
    """
    root = Path(out_dir)
    meta_path = root / META_FILENAME

    def fault(problem: str) -> PreparedDataError:
        if not verify:
            return PreparedDataError(f"{problem}; prepare it again (rule prepare_dataset)")
        return PreparedDataError(unseal(meta_path, "prepare_dataset", f"prepared dataset {root}: {problem}"))

    if not meta_path.is_file():
        raise PreparedDataError(
            f"{meta_path} is missing: {root} was never prepared or its preparation did not finish; "
            f"{RERUN} to prepare it (rule prepare_dataset)"
        )
    try:
        meta = read_json(meta_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fault(f"{meta_path} is not valid JSON ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise fault(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    manifest: dict[str, str] = meta.get("manifest", {})
    expected_files = prepared_filenames()[:-1]
    if sorted(manifest) != sorted(expected_files):
        raise fault(f"{meta_path}: manifest lists {sorted(manifest)}, expected {sorted(expected_files)}")
    for filename, expected in manifest.items():
        path = root / filename
        if not path.is_file():
            raise fault(f"{path} is missing (listed in the manifest of {meta_path})")
        if verify:
            actual = sha256_file(path)
            if actual != expected:
                raise fault(f"{path} fails its checksum: manifest sha256 {expected}, file has {actual}")

    dataset = PreparedDataset(root=root, meta=meta)
    for split in SPLITS:
        try:
            images, labels = dataset.split(split)
        except ValueError as exc:  # a header numpy cannot read
            raise fault(f"{root / split}_*.npy cannot be read ({exc})") from exc
        size = meta["splits"][split]["size"]
        if meta["storage"] == "files":
            checks = [("images", images.paths, images.paths.dtype, (size,))]
            # A cheap spot check (first and last file), not a walk over a million files.
            absent = [p for p in {*images.paths[:1], *images.paths[-1:]} if not (images.root / p).is_file()]
            if absent:
                raise PreparedDataError(
                    f"{meta_path}: {images.root / absent[0]} is missing; the raw images must stay under "
                    f"image_root {meta['image_root']}, where the dataset was prepared (or prepare it again)"
                )
        else:
            height, width = meta["image_size"]
            checks = [("images", images, np.uint8, (size, height, width, meta["channels"]))]
        label_shape = (size, meta["num_classes"]) if meta["label_type"] == "multilabel" else (size,)
        for kind, array, dtype, shape in [*checks, ("labels", labels, np.int64, label_shape)]:
            if array.dtype != dtype or array.shape != shape:
                raise fault(
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


def plan_splits(pool_sizes: Mapping[str, int], sizes: Mapping[str, SplitSize]) -> dict[str, tuple[str | None, int]]:
    """Per split, the official pool it is drawn from and how many samples (see :data:`SPLIT_METHOD`), from
    the sizes of the loader's official splits alone: :func:`make_splits` draws this plan, and the config
    check runs it on the known sizes of a dataset before any job. Raises ValueError for a size the pool
    cannot give."""
    base = "all" if "all" in pool_sizes else "train"
    left = dict(pool_sizes)
    plan: dict[str, tuple[str | None, int]] = {}
    for split in ("test", "val", "train"):
        pool = split if split in pool_sizes else base
        request = sizes.get(split)
        if request == 0:
            plan[split] = (None, 0)
            continue
        if request is None or request == "all":
            if pool != split and split != "train":
                raise ValueError(
                    f"splits.{split} = {request!r} is ambiguous: {split} is carved out of the "
                    f"official {pool!r} split, so give a count or a fraction"
                )
            n = left[pool]
        elif isinstance(request, float):
            n = round(request * pool_sizes[pool])
        else:
            n = int(request)
        if not 0 < n <= left[pool]:
            raise ValueError(
                f"splits.{split} = {request!r} asks for {n} samples but the {pool!r} pool has "
                f"{left[pool]} left (of {pool_sizes[pool]})"
            )
        left[pool] -= n
        plan[split] = (pool, n)
    return plan


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
    carved = [s for s in SPLITS if s not in official and sizes.get(s) != 0]
    if carved and base not in official:
        raise ValueError(
            f"a loader without an official 'train' split must return 'all', got {sorted(official)}"
        )

    plan = plan_splits({name: len(labels) for name, (_, labels) in official.items()}, sizes)
    remaining = {name: np.arange(len(labels)) for name, (_, labels) in official.items()}
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    info: dict[str, Any] = {}
    for split in ("test", "val", "train"):
        pool, n = plan[split]
        request = sizes.get(split)
        if pool is None:  # only in OOD-only datasets (checked by the registry validation)
            images, labels = official["test"]
            arrays[split] = (images[np.arange(0)], labels[:0])
            info[split] = {"pool": None, "requested": 0, "size": 0}
            continue
        images, labels = official[pool]
        available = remaining[pool]
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        # Multi-label datasets are stratified by label combination.
        strata = np.unique(labels, axis=0, return_inverse=True)[1].ravel() if labels.ndim == 2 else labels
        chosen = stratified_sample(strata, available, n, rng)
        remaining[pool] = np.setdiff1d(available, chosen, assume_unique=True)
        arrays[split] = (images[chosen], labels[chosen])
        info[split] = {"pool": pool, "requested": request, "size": n}
    return arrays, info
