"""Classification datasets: loaders, the check of their registry entries, and the ``prepare`` step.

Adding a dataset = an entry in ``config/datasets.yaml`` plus, when no existing
loader fits, one function decorated with :func:`register_loader` that turns
the entry's ``source`` mapping into a :class:`RawDataset` (official splits,
class names, provenance). Everything after that (split policy, prepared
format, manifest) is shared.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import bobench
import bobench.datasets.downloads as downloads
from bobench.data_faults import RERUN, unseal
from bobench.datasets.downloads import (
    ChecksumError,
    DataUnavailableError,
    DownloadError,
    check_sha256,
    load_numpy_pickle,
    sha256_bytes,
)
from bobench.datasets.entries import check_shared_keys
from bobench.datasets.images import ImageFiles
from bobench.datasets.loader_registry import LoaderRegistry
from bobench.datasets.prepared import SPLIT_METHOD, SPLITS, make_splits, write_prepared
from bobench.names import TEST_SPLIT_IS_VAL

LOG = logging.getLogger("bobench.datasets")

#: Tasks of classification datasets (the other kinds: bobench.datasets.kinds).
VALID_TASKS: tuple[str, ...] = ("classification", "retrieval", "ood")


@dataclass(frozen=True)
class RawDataset:
    """What a loader hands over: official splits as arrays, class names, provenance.

    ``splits`` maps "train"/"val"/"test" (or only "all" for a dataset without
    official splits) to ``(images, labels)`` with images uint8 (N, H, W) or
    (N, H, W, C), or :class:`~bobench.datasets.images.ImageFiles`, and integer
    labels indexing ``class_names`` (or 0/1 labels (N, C) for a multi-label
    dataset). ``provenance`` goes verbatim into ``meta.json`` under ``source``.
    """

    splits: dict[str, tuple[np.ndarray | ImageFiles, np.ndarray]]
    class_names: list[str]
    provenance: dict[str, Any]



#: Registered loaders by name (the ``source.loader`` value in the registry).
LOADERS = LoaderRegistry("dataset")
register_loader = LOADERS.register


# --------------------------------------------------------------------------- registry


def validate_classification_entry(dataset_id: str, entry: Any) -> None:
    """Check of a classification dataset's entry (the keys every kind shares, then its loader, split sizes,
    seed and tasks); raises ValueError naming id, key, value and choices. Every kind's entry:
    :func:`bobench.datasets.kinds.validate_dataset_entry`."""
    fail = check_shared_keys(dataset_id, entry)
    source = entry["source"]
    if not isinstance(source, Mapping) or "loader" not in source:
        fail("source", source, "must be a mapping with a 'loader' key")
    loader = source["loader"]
    if loader not in LOADERS:
        fail(
            "source.loader",
            loader,
            f"is not a registered loader; valid loaders: {', '.join(sorted(LOADERS))}",
        )
    missing = LOADERS.missing_keys(loader, source)
    if missing:
        raise ValueError(
            f"dataset {dataset_id!r}: source is missing key(s) {', '.join(missing)} "
            f"required by loader {loader!r} (required: {', '.join(LOADERS.source_keys[loader])})"
        )

    splits = entry["splits"]
    if not isinstance(splits, Mapping) or set(splits) != set(SPLITS):
        fail("splits", splits, f"must be a mapping with exactly the keys {', '.join(SPLITS)}")
    ood_only = entry.get("tasks") == ["ood"]
    for split, value in splits.items():
        if value == 0 and not isinstance(value, bool) and split != "test" and ood_only:
            continue  # a pure OOD test set needs no training data
        if not _valid_split_size(value):
            fail(
                f"splits.{split}",
                value,
                "is not a valid size; valid: a positive integer (count), a float in (0, 1) "
                "(fraction of the pool), or 'all'/null (keep everything); 0 only for train/val "
                "of a dataset whose tasks are [ood]",
            )

    seed = entry["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("seed", seed, "must be a non-negative integer")

    tasks = entry["tasks"]
    if not isinstance(tasks, list) or not tasks:
        fail("tasks", tasks, f"must be a non-empty list; valid tasks: {', '.join(VALID_TASKS)}")
    for task in tasks:
        if task not in VALID_TASKS:
            fail("tasks", task, f"is not a known task; valid tasks: {', '.join(VALID_TASKS)}")


def raw_folders_shared_with(entry: Mapping[str, Any]) -> list[str]:
    """Datasets whose raw folders this entry reads (``folders: {train: ../imagenet/train}``: ImageNet's
    1% / 10% subsets read the class folders ImageNet's own preparation unpacks), so its preparation
    must come after theirs."""
    shared = []
    for folder in ((entry.get("source") or {}).get("folders") or {}).values():
        parts = Path(str(folder)).parts
        if len(parts) > 1 and parts[0] == ".." and parts[1] not in shared:
            shared.append(parts[1])
    return shared


def _valid_split_size(value: Any) -> bool:
    if value is None or value == "all":
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    if isinstance(value, float):
        return 0.0 < value < 1.0
    return False


# --------------------------------------------------------------------------- prepare


def prepare_dataset(
    dataset_id: str,
    entry: Mapping[str, Any],
    out_dir: str | Path,
    raw_dir: str | Path,
    log: logging.Logger = LOG,
) -> dict[str, Any]:
    """Load a registry entry's raw data, apply its split policy, write the prepared form.

    ``raw_dir`` is this dataset's download cache; ``out_dir`` receives the files
    of :func:`bobench.datasets.prepared.prepared_filenames`. Returns the metadata
    written to ``meta.json``.
    """
    validate_classification_entry(dataset_id, entry)
    source = entry["source"]
    try:
        raw = LOADERS[source["loader"]](source, Path(raw_dir), log)
    except ChecksumError as exc:
        if entry.get("standin"):  # a rehearsal's stand-in: its maker's seal (rehearsal.manifest.MANIFEST_NAME)
            raise ChecksumError(unseal(Path(raw_dir) / "STANDIN.json", "make_standin_data", f"stand-in data of {dataset_id!r}: {exc}")) from exc
        raise ChecksumError(f"{exc}. A file the workflow downloaded: delete it and {RERUN}, which downloads it again; "
                            "a file you put there: replace it with the version the registry pins") from exc
    official = {
        name: _normalise(dataset_id, name, images, labels, len(raw.class_names))
        for name, (images, labels) in raw.splits.items()
    }
    multilabel = {labels.ndim == 2 for _, labels in official.values()}
    if multilabel != {bool(entry.get("multilabel", False))}:
        raise ValueError(
            f"dataset {dataset_id!r}: the loader returned {'multi' if True in multilabel else 'single'}-label "
            f"labels but the registry entry says multilabel: {bool(entry.get('multilabel', False))}"
        )
    arrays, split_info = make_splits(official, entry["splits"], entry["seed"])
    info = {
        "dataset_id": dataset_id,
        "name": entry["name"],
        "domain": entry["domain"],
        "licence": entry["licence"],
        "tasks": list(entry["tasks"]),
        "source": {"loader": source["loader"], "licence": entry["licence"], **raw.provenance},
        "test_split": _test_split_name(raw.provenance.get("test_split", "test"), split_info["test"]["pool"]),
        "split_policy": {
            "sizes": dict(entry["splits"]),
            "seed": entry["seed"],
            "method": SPLIT_METHOD,
            "per_split": split_info,
        },
        "created_with": {"bobench": bobench.__version__, "numpy": np.__version__},
        "standin": bool(entry.get("standin")),  # a rehearsal's stand-in data (bobench.rehearsal)
    }
    meta = write_prepared(out_dir, arrays, raw.class_names, info)
    log.info(
        "prepared %s in %s: %s",
        dataset_id,
        out_dir,
        ", ".join(f"{split}={meta['splits'][split]['size']}" for split in SPLITS),
    )
    return meta


def _test_split_name(loader_choice: str, pool: str) -> str:
    """What a result's test images are, in words recorded with every result."""
    if loader_choice == "val":
        return TEST_SPLIT_IS_VAL
    return "official test" if pool == "test" else f"held out of {'the data' if pool == 'all' else 'official ' + pool}"


def _normalise(
    dataset_id: str, split: str, images: np.ndarray | ImageFiles, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray | ImageFiles, np.ndarray]:
    """Bring a loader's arrays to the prepared dtypes: uint8 NHWC images (or image files), int64 labels."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[..., np.newaxis]
    if isinstance(images, np.ndarray) and (images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3)):
        raise ValueError(
            f"dataset {dataset_id!r}: loader returned {split} images {images.dtype} "
            f"{images.shape}, expected uint8 (N, H, W) or (N, H, W, 1|3)"
        )
    multilabel = labels.ndim == 2
    expected = (len(images), num_classes) if multilabel else (len(images),)
    if labels.shape != expected or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"dataset {dataset_id!r}: loader returned {split} labels {labels.dtype} {labels.shape}, expected {expected}"
        )
    upper = 2 if multilabel else num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= upper):
        raise ValueError(f"dataset {dataset_id!r}: {split} labels fall outside 0..{upper - 1}")
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------------- Fashion-MNIST

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FASHION_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@register_loader("fashion_mnist", source_keys=("base_url", "debian_dir", "files"), pool_sizes={"train": 60000, "test": 10000})
def load_fashion_mnist(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` files, a cached copy, or a download.

    The pin is the sha256 of the *decompressed* IDX file: Debian re-gzipped the
    archives (no stored file name, new mtime), so its ``.gz`` bytes differ from
    Zalando's while the IDX content is identical. The official ``.gz`` md5 is
    still used to check downloads.
    """
    files: Mapping[str, Mapping[str, str]] = source["files"]
    needed = [name for pair in _FASHION_SPLIT_FILES.values() for name in pair]
    missing = [name for name in needed if name not in files]
    if missing:
        raise ValueError(f"fashion_mnist source.files lacks {', '.join(missing)}")
    provenance_files = []
    arrays: dict[str, np.ndarray] = {}
    for filename in needed:
        pins = files[filename]
        path, origin = _find_fashion_file(source, filename, raw_dir, log)
        gz_bytes = path.read_bytes()
        idx_bytes = gzip.decompress(gz_bytes)
        check_sha256(
            sha256_bytes(idx_bytes), pins["idx_sha256"], f"{path} (decompressed IDX content)"
        )
        arrays[filename] = parse_idx(idx_bytes, filename)
        provenance_files.append(
            {
                "name": filename,
                "origin": origin,
                "path": str(path),
                "gz_sha256": sha256_bytes(gz_bytes),
                "idx_sha256": pins["idx_sha256"],
            }
        )
    splits = {
        split: (arrays[images], arrays[labels])
        for split, (images, labels) in _FASHION_SPLIT_FILES.items()
    }
    return RawDataset(
        splits=splits,
        class_names=list(FASHION_CLASSES),
        provenance={
            "description": "Zalando Fashion-MNIST, official IDX files (60,000 train / 10,000 test)",
            "files": provenance_files,
        },
    )


def _find_fashion_file(
    source: Mapping[str, Any], filename: str, raw_dir: Path, log: logging.Logger
) -> tuple[Path, str]:
    """Debian copy first, then the raw cache, then a download into the raw cache."""
    debian = Path(source["debian_dir"]) / filename
    if debian.is_file():
        return debian, f"Debian package dataset-fashion-mnist ({debian})"
    url = source["base_url"].rstrip("/") + "/" + filename
    cached = raw_dir / filename
    if cached.is_file():
        return cached, f"{url} (cached)"
    try:
        downloads.fetch_url(url, cached, md5=source["files"][filename]["md5"], log=log)
    except DownloadError as exc:
        urls = "\n  ".join(
            source["base_url"].rstrip("/") + "/" + name for name in sorted(source["files"])
        )
        raise DataUnavailableError(
            f"Fashion-MNIST raw files are not available offline and the download failed ({exc}).\n"
            "Either install the Debian package (apt-get install dataset-fashion-mnist, which "
            f"provides {source['debian_dir']}/*.gz), or download these files into {raw_dir}:"
            f"\n  {urls}"
        ) from exc
    return cached, url


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes (the MNIST container format)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{what}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"{what}: IDX header says shape {shape} "
            f"but the file has {len(data) - header} data bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


# --------------------------------------------------------------------------- Animal-MNIST

#: Label order of animal_mnist 0.4 (labels 0..9; checked by eye on the images:
#: alphabetical, as in the package description).
ANIMAL_CLASSES = [
    "bear", "bird", "cat", "cow", "dog",
    "elephant", "giraffe", "horse", "sheep", "zebra",
]  # fmt: skip


@register_loader(
    "animal_mnist", source_keys=("package", "wheel_url", "wheel_sha256", "members"), pool_sizes={"all": 10000}
)
def load_animal_mnist(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> RawDataset:
    """Animal-MNIST from the ``animal-mnist`` wheel, read as a zip, never imported.

    The package itself imports tensorflow, so it is neither installed nor
    imported: an installed copy is located with ``find_spec`` (no import), else
    the pinned wheel is read from the raw cache or downloaded there. The data
    members are gzip-compressed pickles, unpickled with the numpy-only
    unpickler, and only after their sha256 matched the pin.
    """
    members: Mapping[str, Mapping[str, str]] = source["members"]
    if set(members) != {"images", "labels"}:
        raise ValueError(
            f"animal_mnist source.members must have keys images and labels, got {sorted(members)}"
        )

    package_dir = _installed_package_dir(source["package"])
    if package_dir is not None:
        site_dir = package_dir.parent
        blobs = {kind: (site_dir / pin["path"]).read_bytes() for kind, pin in members.items()}
        origin = f"installed package {source['package']} at {package_dir}"
        where = {kind: str(site_dir / pin["path"]) for kind, pin in members.items()}
        wheel_info: dict[str, Any] = {}
    else:
        wheel = _find_wheel(source, raw_dir, log)
        with zipfile.ZipFile(wheel) as archive:
            blobs = {kind: archive.read(pin["path"]) for kind, pin in members.items()}
        origin = source["wheel_url"]
        where = {kind: f"{wheel}!{pin['path']}" for kind, pin in members.items()}
        wheel_info = {
            "wheel": str(wheel),
            "wheel_url": source["wheel_url"],
            "wheel_sha256": source["wheel_sha256"],
        }

    arrays = {}
    for kind, pin in members.items():
        check_sha256(sha256_bytes(blobs[kind]), pin["sha256"], where[kind])
        arrays[kind] = load_numpy_pickle(gzip.decompress(blobs[kind]), where[kind])
    images, labels = arrays["images"], arrays["labels"]
    return RawDataset(
        splits={"all": (images, labels)},
        class_names=list(ANIMAL_CLASSES),
        provenance={
            "description": "Animal-MNIST 0.4 (PyPI animal-mnist): 28x28 animal silhouettes, "
            "no official split",
            "origin": origin,
            **wheel_info,
            "files": [
                {"name": pin["path"], "path": where[kind], "sha256": pin["sha256"]}
                for kind, pin in members.items()
            ],
        },
    )


def _installed_package_dir(package: str) -> Path | None:
    """Where ``package`` is installed, found without importing it (None if absent)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _find_wheel(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> Path:
    url = source["wheel_url"]
    wheel = raw_dir / url.rsplit("/", 1)[-1].split("#", 1)[0]
    if not wheel.is_file():
        try:
            downloads.fetch_url(url, wheel, sha256=source["wheel_sha256"], log=log)
        except DownloadError as exc:
            raise DataUnavailableError(
                f"Animal-MNIST is not available offline and the download failed ({exc}).\n"
                f"Put the wheel {wheel.name} (sha256 {source['wheel_sha256']}) into {raw_dir}, "
                "e.g. with\n"
                f"  pip download --no-deps animal-mnist==0.4 -d {raw_dir}\n"
                f"or download {url}"
            ) from exc
    downloads.verify_file_sha256(wheel, source["wheel_sha256"])
    return wheel


# --------------------------------------------------------------------------- scikit-learn digits


@register_loader("sklearn_digits", source_keys=("sha256",), pool_sizes={"all": 1797})
def load_sklearn_digits(
    source: Mapping[str, Any], raw_dir: Path, log: logging.Logger
) -> RawDataset:
    """The 1,797 8x8 UCI digits bundled with scikit-learn, scaled from 0..16 to 0..255.

    No download: the data ship inside scikit-learn. The bundled ``digits.csv.gz``
    is still pinned, so a scikit-learn release that changed it would be noticed.
    """
    import sklearn
    from sklearn.datasets import load_digits

    data_file = importlib.resources.files("sklearn.datasets.data") / "digits.csv.gz"
    check_sha256(sha256_bytes(data_file.read_bytes()), source["sha256"], str(data_file))
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return RawDataset(
        splits={"all": (images, digits.target)},
        class_names=[str(digit) for digit in range(10)],
        provenance={
            "description": "UCI optical recognition of handwritten digits (test set part), "
            f"as bundled with scikit-learn {sklearn.__version__}; "
            "pixel values 0..16 scaled by round(v*255/16)",
            "files": [
                {"name": "digits.csv.gz", "path": str(data_file), "sha256": source["sha256"]}
            ],
        },
    )
