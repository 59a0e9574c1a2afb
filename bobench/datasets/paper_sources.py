"""Loaders of BoB's classification datasets (docs/protocol.md §3.1, §3.4, §5).

Pixel arrays where the images are small and uniform (CIFAR-100); image files
everywhere else (ImageNet and its variants, Flowers-102, FGVC-Aircraft,
EuroSAT, VisDA-2017, CheXpert). Raw files come through
:func:`bobench.datasets.archives.obtain_files` (pinned checksums, manual-data
messages); the split policy and prepared format are shared with every dataset.

``test_split: val`` in a source (set by the config switch
``bob_validation_as_test``) reproduces the original code's evaluation on the
official validation split (Flowers-102, FGVC-Aircraft), which it also used to
pick the best epoch.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bobench.datasets.archives import obtain_files, require_dir
from bobench.datasets.downloads import DataUnavailableError, NumpyOnlyUnpickler
from bobench.datasets.images import ImageFiles
from bobench.datasets.sources import RawDataset, register_loader

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order (the list timm ships)."""
    return resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text().split()


def _relative(paths: list[Path], root: Path) -> np.ndarray:
    return np.array([str(p.relative_to(root)) for p in paths], dtype=str)


def _apply_test_split(splits: dict[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """``test_split: val`` (BoB's code): the official validation split is the test split *and* the
    model-selection split, as in the original (best epoch picked on the split it reports)."""
    if source.get("test_split", "test") == "val":
        return {"train": splits["train"], "val": splits["val"], "test": splits["val"]}
    return splits


# --------------------------------------------------------------------------- class folders


@register_loader("image_folder", source_keys=("files", "how_to_get", "folders"))
def load_image_folder(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """Class-per-folder layouts: ImageNet and its OOD variants, EuroSAT, VisDA-2017.

    ``folders`` maps official split names (train/val/test, or all) to folders
    under ``raw_dir`` holding one sub-folder per class. Options:
    ``class_names: imagenet_index`` (folders are numbered 0..999, as in
    ImageNet-V2, and named by ImageNet's wnids), ``num_classes`` and ``expect``
    (image counts per split: the layout check of a manual dataset),
    ``subset: {split, file: {name, url, sha256}}`` (keep only the images named
    in a list file: the SimCLR 1%/10% ImageNet subsets), ``imagenet_archives: true`` (turn the
    ILSVRC2012 archives into class folders with torchvision's ImageNet parser).
    """
    folders: Mapping[str, str] = source["folders"]
    # A path through a folder that does not exist is never a folder: ImageNet's subsets reach ImageNet's
    # class folders through their own raw folder (../imagenet/train), which nothing else creates.
    raw_dir.mkdir(parents=True, exist_ok=True)
    dirs = {split: raw_dir / folder for split, folder in folders.items()}
    provenance: list[dict[str, Any]] = []
    if not all(d.is_dir() for d in dirs.values()):
        _, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
        if source.get("imagenet_archives"):
            _parse_imagenet_archives(raw_dir, list(folders), log)
    else:  # already unpacked (or a manual copy): the archives that are here are still recorded (hashes cached)
        log.info("using the existing folders %s", ", ".join(map(str, dirs.values())))
        present = [spec for spec in source["files"] if (raw_dir / spec["name"]).is_file()]
        _, provenance = obtain_files(present, raw_dir, log, source["how_to_get"])
    splits, class_names = {}, None
    for split, folder in dirs.items():
        require_dir(folder, f"split {split!r}", source["how_to_get"])
        classes, images, labels = scan_class_folders(folder, raw_dir)
        if class_names is not None and classes != class_names:
            raise ValueError(f"{folder}: its class folders differ from the other splits'")
        class_names = classes
        splits[split] = (ImageFiles(raw_dir, images), labels)
    assert class_names is not None
    _check_layout(source, splits, class_names, dirs)
    if source.get("subset"):
        subset = source["subset"]
        listed, subset_provenance = obtain_files([subset["file"]], raw_dir, log, source["how_to_get"])
        provenance += subset_provenance
        names = set(listed[subset["file"]["name"]].read_text().split())
        images, labels = splits[subset["split"]]
        keep = np.array([Path(p).name in names for p in images.paths])
        if keep.sum() != len(names):
            raise ValueError(
                f"{subset['file']['name']} names {len(names)} images but {keep.sum()} of them are in {dirs[subset['split']]}"
            )
        splits[subset["split"]] = (images[np.flatnonzero(keep)], labels[keep])
    if source.get("class_names") == "imagenet_index":
        synsets = imagenet_synsets()
        class_names = [synsets[int(name)] for name in class_names]
    return RawDataset(
        splits=_apply_test_split(splits, source),
        class_names=class_names,
        provenance={"folders": {k: str(v) for k, v in dirs.items()}, "files": provenance, "test_split": source.get("test_split", "test")},
    )


def scan_class_folders(folder: Path, root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names (sorted; numerically when all are numbers) and the images of each, in a fixed order."""
    classes = sorted((d.name for d in folder.iterdir() if d.is_dir()), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        images += files
        labels += [index] * len(files)
    return classes, _relative(images, root), np.array(labels, dtype=np.int64)


def _check_layout(source: Mapping[str, Any], splits: Mapping[str, Any], class_names: list[str], dirs: Mapping[str, Path]) -> None:
    expected_classes = source.get("num_classes")
    if expected_classes is not None and len(class_names) != expected_classes:
        raise DataUnavailableError(
            f"{', '.join(map(str, dirs.values()))}: {len(class_names)} class folders, expected {expected_classes}.\n"
            f"{source['how_to_get'].strip()}"
        )
    for split, count in (source.get("expect") or {}).items():
        found = len(splits[split][1])
        if found != count:
            raise DataUnavailableError(
                f"{dirs.get(split, split)}: {found} images in split {split!r}, expected {count}.\n{source['how_to_get'].strip()}"
            )


def _parse_imagenet_archives(raw_dir: Path, splits: list[str], log: logging.Logger) -> None:
    """torchvision's ImageNet parser: ILSVRC2012 archives (md5-checked by it) → train/ and val/ class folders."""
    from torchvision.datasets import ImageNet

    for split in splits:
        log.info("unpacking the ILSVRC2012 %s archive into class folders (torchvision.datasets.ImageNet)", split)
        ImageNet(str(raw_dir), split={"test": "val"}.get(split, split))


# --------------------------------------------------------------------------- CIFAR-100


@register_loader("cifar100", source_keys=("files", "how_to_get"), pool_sizes={"train": 50000, "test": 10000})
def load_cifar100(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """CIFAR-100 (fine labels) from the official python archive, unpickled with the numpy-only unpickler."""
    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    with tarfile.open(next(iter(paths.values()))) as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> dict[str, Any]:
            if name not in members:
                raise ValueError(f"the CIFAR-100 archive lacks cifar-100-python/{name}")
            data = archive.extractfile(members[name]).read()
            return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()

        meta, train, test = read("meta"), read("train"), read("test")

    def arrays(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(images), np.asarray(batch["fine_labels"], dtype=np.int64)

    return RawDataset(
        splits={"train": arrays(train), "test": arrays(test)},
        class_names=list(meta["fine_label_names"]),
        provenance={"description": "CIFAR-100 python version (50,000 train / 10,000 test, 100 fine classes)", "files": provenance},
    )


# --------------------------------------------------------------------------- Flowers-102


@register_loader("flowers102", source_keys=("files", "how_to_get"))
def load_flowers102(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """Oxford Flowers-102: official train / val / test ids from ``setid.mat`` (1,020 / 1,020 / 6,149)."""
    from scipy.io import loadmat

    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    labels = loadmat(paths["imagelabels.mat"])["labels"].ravel().astype(np.int64) - 1
    setid = loadmat(paths["setid.mat"])
    image_dir = paths["102flowers.tgz"] / "jpg"
    require_dir(image_dir, "Flowers-102 images", source["how_to_get"])
    splits = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        ids = setid[key].ravel().astype(np.int64)
        files = [image_dir / f"image_{i:05d}.jpg" for i in ids]
        splits[split] = (ImageFiles(raw_dir, _relative(files, raw_dir)), labels[ids - 1])
    return RawDataset(
        splits=_apply_test_split(splits, source),
        class_names=[f"flower_{i:03d}" for i in range(1, 103)],
        provenance={"files": provenance, "test_split": source.get("test_split", "test")},
    )


# --------------------------------------------------------------------------- FGVC-Aircraft


@register_loader("fgvc_aircraft", source_keys=("files", "how_to_get"))
def load_fgvc_aircraft(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """FGVC-Aircraft 2013b, 100 variants: official train / val / test lists (3,334 / 3,333 / 3,333)."""
    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    data = require_dir(next(iter(paths.values())) / "fgvc-aircraft-2013b" / "data", "FGVC-Aircraft data", source["how_to_get"])
    class_names = [line.strip() for line in (data / "variants.txt").read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(class_names)}
    splits = {}
    for split in ("train", "val", "test"):
        rows = [line.split(" ", 1) for line in (data / f"images_variant_{split}.txt").read_text().splitlines() if line.strip()]
        files = [data / "images" / f"{image_id}.jpg" for image_id, _ in rows]
        labels = np.array([index[variant.strip()] for _, variant in rows], dtype=np.int64)
        splits[split] = (ImageFiles(raw_dir, _relative(files, raw_dir)), labels)
    return RawDataset(
        splits=_apply_test_split(splits, source),
        class_names=class_names,
        provenance={"files": provenance, "test_split": source.get("test_split", "test")},
    )


# --------------------------------------------------------------------------- CheXpert

#: BoB's CheXpert labels (docs/protocol.md §3.4, from medical_mae): uncertain (-1) → 1 for these two (U-Ones) …
CHEXPERT_U_ONES = ("Edema", "Atelectasis")
#: … and → 0 for the other three (U-Zeros); blank → 0.
CHEXPERT_FINDINGS = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")


def chexpert_labels(table) -> np.ndarray:
    """The (N, 5) 0/1 labels of BoB's policy from a CheXpert CSV's finding columns."""
    missing = [name for name in CHEXPERT_FINDINGS if name not in table.columns]
    if missing:
        raise ValueError(f"CheXpert CSV lacks the column(s) {', '.join(missing)}")
    out = np.zeros((len(table), len(CHEXPERT_FINDINGS)), dtype=np.int64)
    for j, name in enumerate(CHEXPERT_FINDINGS):
        values = table[name].fillna(0.0).to_numpy(dtype=float)
        uncertain = 1 if name in CHEXPERT_U_ONES else 0
        out[:, j] = np.where(values == -1, uncertain, values == 1)
    return out


@register_loader("chexpert", source_keys=("how_to_get", "folder"))
def load_chexpert(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """CheXpert-v1.0-small, frontal views: train.csv for training, valid.csv as the test split (as BoB)."""
    import pandas as pd

    root = require_dir(raw_dir / source["folder"], "CheXpert", source["how_to_get"])
    splits = {}
    for split, csv in (("train", "train.csv"), ("test", "valid.csv")):
        if not (root / csv).is_file():
            raise DataUnavailableError(f"{root / csv} is missing.\n{source['how_to_get'].strip()}")
        table = pd.read_csv(root / csv)
        table = table[table["Frontal/Lateral"] == "Frontal"]
        # Paths in the CSVs start with the dataset folder's own name.
        files = [raw_dir / Path(p) for p in table["Path"]]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise DataUnavailableError(
                f"{len(absent)} image(s) listed in {root / csv} are missing, e.g. {absent[0]}.\n{source['how_to_get'].strip()}"
            )
        splits[split] = (ImageFiles(raw_dir, _relative(files, raw_dir)), chexpert_labels(table))
    return RawDataset(
        splits=splits,
        class_names=list(CHEXPERT_FINDINGS),
        provenance={
            "folder": str(root),
            "label_policy": {"U-Ones": list(CHEXPERT_U_ONES), "U-Zeros": [f for f in CHEXPERT_FINDINGS if f not in CHEXPERT_U_ONES],
                             "blank": 0, "views": "frontal"},
        },
    )
