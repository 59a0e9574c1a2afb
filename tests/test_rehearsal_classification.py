"""Stand-ins of the classification and OOD-classification datasets: written in each dataset's real layout,
prepared by the real ``prepare_dataset`` through the stand-in manifest, at the rehearsal's caps (8 images
per split) and at the registry's own sizes (``all`` and fractions kept, counts capped)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from bobench.config import dataset_entry
from bobench.datasets import DataUnavailableError, load_prepared, prepare_dataset
from bobench.datasets.images import ImageFiles
from bobench.datasets.paper_sources import CHEXPERT_FINDINGS, imagenet_synsets
from bobench.io import sha256_file
from bobench.rehearsal.caps import cap_splits
from bobench.rehearsal.manifest import StandinError, apply_manifest, read_manifest
from bobench.rehearsal.standin_classification import (
    CHEXPERT_PROBES,
    CLASSIFICATION_MAKERS,
    IMAGENET_CMYK,
    IMAGENET_PNG,
    archive_bytes,
    mat_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
CAP = yaml.safe_load((ROOT / "config" / "rehearsal.yaml").read_text())["rehearsal"]["max_images_per_split"]
SEED = 0
IMAGENET_FAMILY = ("imagenet", "imagenet_1pct", "imagenet_10pct")
UNREACHABLE = "file:///nonexistent/bobench-standin-test"

EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]
VISDA = ["aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person", "plant", "skateboard", "train",
         "truck"]


def _timm(name: str) -> list[str]:
    from importlib import resources

    return resources.files("timm.data._info").joinpath(name).read_text().split()


def _check_cifar(names: list[str]) -> bool:
    assert len(names) == 100 and names[0] == "apple" and names[-1] == "worm" and names == sorted(names)
    return {"aquarium_fish", "maple_tree", "sweet_pepper", "lawn_mower", "pickup_truck"} <= set(names)


def _check_aircraft(names: list[str]) -> bool:
    assert len(names) == len(set(names)) == 100 and names[0] == "707-320" and names[-1] == "Yak-42"
    return {"F/A-18", "F-16A/B", "BAE 146-200", "Embraer Legacy 600", "Model B200"} <= set(names)


def _equals(expected):
    return lambda names: names == list(expected())


#: Whether a prepared dataset's class names are the real ones.
CLASSES = {
    **{d: _equals(imagenet_synsets) for d in ("imagenet", "imagenet_1pct", "imagenet_10pct", "imagenet_sketch", "imagenet_v2")},
    "imagenet_a": _equals(lambda: sorted(_timm("imagenet_a_synsets.txt"))),
    "imagenet_r": _equals(lambda: sorted(_timm("imagenet_r_synsets.txt"))),
    "cifar100": _check_cifar, "fgvc_aircraft": _check_aircraft,
    "flowers102": _equals(lambda: [f"flower_{i:03d}" for i in range(1, 103)]),
    "eurosat": _equals(lambda: EUROSAT), "visda2017_synthetic": _equals(lambda: VISDA),
    "visda2017_real": _equals(lambda: VISDA), "chexpert": _equals(lambda: CHEXPERT_FINDINGS),
}
#: Decoded (height, width) each dataset's images must have: what its maker writes.
SIZES = {
    "imagenet": lambda h, w: 300 <= min(h, w) and max(h, w) <= 640,
    "imagenet_v2": lambda h, w: 300 <= min(h, w) and max(h, w) <= 500,
    "imagenet_sketch": lambda h, w: 200 <= min(h, w) and max(h, w) <= 500,
    "imagenet_a": lambda h, w: 240 <= h <= 560 and 300 <= w <= 640,
    "imagenet_r": lambda h, w: 250 <= min(h, w) and max(h, w) <= 600,
    "flowers102": lambda h, w: min(h, w) == 500 and max(h, w) <= 750,
    "fgvc_aircraft": lambda h, w: 620 <= h <= 760 and 960 <= w <= 1100,
    "eurosat": lambda h, w: (h, w) == (64, 64),
    "chexpert": lambda h, w: h == 320 and 320 <= w <= 390,
    "visda2017_synthetic": lambda h, w: (h, w) == (216, 384),
    "visda2017_real": lambda h, w: 80 <= h <= 480 and 80 <= w <= 560,
    "cifar100": lambda h, w: (h, w) == (32, 32),
}
SIZES["imagenet_1pct"] = SIZES["imagenet_10pct"] = SIZES["imagenet"]


@pytest.fixture(scope="module")
def registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())


def _standin_entry(entry: dict, raw: Path) -> dict:
    """``apply_manifest`` on the stand-in's manifest, as the rehearsal's prepare job does."""
    return apply_manifest(entry, read_manifest(raw))


def _registry_sizes(splits: dict) -> dict:
    """The registry's split sizes with counts capped: ``all``, fractions and 0 kept."""
    return {s: min(v, CAP) if isinstance(v, int) and not isinstance(v, bool) and v else v for s, v in splits.items()}


def _make(dataset_id: str, registry: dict, raw_root: Path, seed: int = SEED, images_per_class: int = 1) -> Path:
    return CLASSIFICATION_MAKERS[dataset_id](dataset_id, registry[dataset_id], raw_root / dataset_id, seed=seed,
                                             images_per_class=images_per_class)


@pytest.fixture(scope="module")
def imagenet_root(registry, tmp_path_factory) -> Path:
    """ImageNet's stand-in (archives, unpacked by torchvision's parser) and its 1% / 10% subset lists."""
    root = tmp_path_factory.mktemp("imagenet_standins")
    for dataset_id in IMAGENET_FAMILY:  # the subsets' lists need only the seed, not ImageNet's files
        _make(dataset_id, registry, root)
    raw = root / "imagenet"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz", "train", "val",
         "meta.bin", "STANDIN.json", "STANDIN.owner"])
    # Without the unpacked folders the loader hands the archives to torchvision's parser, which checks
    # them against md5 sums hard-coded in torchvision (ARCHIVE_META): no stand-in can pass that.
    hidden = {name: raw / f"{name}.hidden" for name in ("train", "val", "meta.bin")}
    for name, away in hidden.items():
        (raw / name).rename(away)
    entry = _standin_entry({**registry["imagenet"], "splits": cap_splits(registry["imagenet"]["splits"], CAP)}, raw)
    with pytest.raises(RuntimeError, match="is not present in the root directory or is corrupted"):
        prepare_dataset("imagenet", entry, root / "refused", raw)
    for name, away in hidden.items():
        away.rename(raw / name)
    return root


def _check_prepared(dataset_id: str, out: Path, sizes: dict, raw: Path) -> None:
    dataset = load_prepared(out, verify=True)
    assert CLASSES[dataset_id](dataset.class_names)
    assert dataset.num_classes == len(dataset.class_names)
    for split, requested in sizes.items():
        images, labels = dataset.split(split)
        if requested == 0:
            assert len(labels) == 0
            continue
        assert len(labels) == requested if isinstance(requested, int) else len(labels) > 0
        upper = 2 if dataset.multilabel else dataset.num_classes
        assert labels.min() >= 0 and labels.max() < upper
        for index in (0, len(labels) - 1):
            pixels = np.asarray(images[index])
            assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3 and SIZES[dataset_id](*pixels.shape[:2]), pixels.shape
        if isinstance(images, ImageFiles):
            assert all((images.root / p).is_file() for p in images.paths)
            assert images.root == raw.resolve()


def _check_chexpert(out: Path, raw: Path) -> None:
    dataset = load_prepared(out)
    labelled = {}
    for split in ("train", "val"):
        images, labels = dataset.split(split)
        labelled.update(zip(images.paths, labels.tolist()))
    test_paths = dataset.split("test")[0].paths
    assert all(p.endswith("_frontal.jpg") for p in [*labelled, *test_paths])
    assert all("/valid/" in p for p in test_paths) and all("/train/" in p for p in labelled)
    # U-Ones for Edema and Atelectasis, U-Zeros for the rest, blank -> 0, on the stand-in's known rows ...
    expected = {
        "patient00001": [0, 1, 0, 1, 0],  # all five uncertain
        "patient00002": [0, 0, 0, 0, 0],  # all blank
        "patient00003": [1, 1, 1, 1, 1],  # all positive
        "patient00004": [0, 1, 1, 0, 0],  # 0, -1, 1, blank, -1
    }
    table = pd.read_csv(raw / "CheXpert-v1.0-small" / "train.csv")
    for path in CHEXPERT_PROBES:
        row = table[table["Path"] == path]
        assert len(row) == 1 and row["Frontal/Lateral"].item() == "Frontal"
        assert labelled[path] == expected[path.split("/")[2]], path
    # ... and on every row that reached the prepared splits (policy written out independently here).
    assert set(table["Frontal/Lateral"]) == {"Frontal", "Lateral"} and table[list(CHEXPERT_FINDINGS)].isna().any().any()
    assert set(table[list(CHEXPERT_FINDINGS)].stack().dropna().unique()) == {-1.0, 0.0, 1.0}
    by_path = table.set_index("Path")
    for path, labels in labelled.items():
        row = by_path.loc[path, list(CHEXPERT_FINDINGS)]
        want = [int(v == 1 or (v == -1 and name in ("Edema", "Atelectasis"))) for name, v in row.items()]
        assert labels == want, path
    valid = pd.read_csv(raw / "CheXpert-v1.0-small" / "valid.csv")
    assert list(valid.columns) == list(table.columns) and len(table.columns) == 19
    assert set(np.unique(valid[list(CHEXPERT_FINDINGS)].to_numpy())) <= {0.0, 1.0}


@pytest.mark.parametrize("dataset_id", list(CLASSIFICATION_MAKERS))
def test_standin_is_prepared_by_the_real_loader(dataset_id, registry, request, tmp_path):
    if dataset_id in IMAGENET_FAMILY:
        raw_root = request.getfixturevalue("imagenet_root")
    else:
        raw_root = tmp_path / "raw"
        _make(dataset_id, registry, raw_root)
    raw = raw_root / dataset_id
    entry = registry[dataset_id]
    manifest = read_manifest(raw)
    assert manifest["dataset"] == dataset_id and manifest["standin"] is True

    variants = {
        # The rehearsal's own path: dataset_entry with the caps of config/rehearsal.yaml (every split <= 8).
        "rehearsal": dataset_entry({"rehearsal": {"enabled": True, "max_images_per_split": CAP}}, registry, dataset_id),
        # The registry's sizes: `all` and fractions as they are, counts capped.
        "registry": {**entry, "splits": _registry_sizes(entry["splits"])},
    }
    if dataset_id == "chexpert":  # the paper's override (config/paper.yaml): BoB fine-tuned on 10% of the rows
        variants["paper"] = {**entry, "splits": {**_registry_sizes(entry["splits"]), "train": 0.1}}
    if "bob_test_split" in entry["source"]:  # BoB's switch: the official val split is the test split
        variants["bob"] = dataset_entry({"bob_validation_as_test": True}, registry, dataset_id)
        variants["bob"]["splits"] = _registry_sizes(entry["splits"])
    for name, variant in variants.items():
        out = tmp_path / name
        meta = prepare_dataset(dataset_id, _standin_entry(variant, raw), out, raw)
        _check_prepared(dataset_id, out, variant["splits"], raw)
        if name == "rehearsal":
            assert meta["splits"]["test"]["size"] == CAP
            assert all(meta["splits"][s]["size"] in (0, CAP) for s in ("train", "val"))
        if name == "bob":
            bob = load_prepared(out)
            assert meta["test_split"] == "official val"
            assert np.array_equal(bob.split("test")[0].paths, bob.split("val")[0].paths)

    counts = manifest["counts"]
    registry_meta = load_prepared(tmp_path / "registry").meta
    sizes = {s: registry_meta["splits"][s]["size"] for s in ("train", "val", "test")}
    if dataset_id == "chexpert":
        _check_chexpert(tmp_path / "registry", raw)
        assert sizes["test"] == counts["valid_frontal"] and counts["train_lateral"] > 0
    elif dataset_id in ("imagenet_1pct", "imagenet_10pct"):
        listed = (raw / entry["source"]["subset"]["file"]["name"]).read_text().split()
        dataset = load_prepared(tmp_path / "registry")
        kept = [Path(p).name for s in ("train", "val") for p in dataset.split(s)[0].paths]
        assert sorted(kept) == sorted(listed) and len(listed) == counts["listed"]
        assert all(p.startswith("../imagenet/train/") for p in dataset.split("train")[0].paths)
        assert sizes["test"] == read_manifest(raw_root / "imagenet")["counts"]["test"]
    elif dataset_id == "cifar100":
        assert registry_meta["storage"] == "pixels" and registry_meta["image_size"] == [32, 32]
        assert sizes["train"] + sizes["val"] == counts["train"] and sizes["test"] == counts["test"]
    elif dataset_id == "imagenet":
        assert sizes == {"train": counts["train"] - CAP, "val": CAP, "test": counts["test"]}
        # The real training set's odd files (a PNG named .JPEG, CMYK JPEGs) decode like the rest.
        odd = [f"train/{name.split('_')[0]}/{name}" for name in (IMAGENET_PNG, *IMAGENET_CMYK)]
        with Image.open(raw / odd[0]) as png, Image.open(raw / odd[1]) as cmyk:
            assert png.format == "PNG" and cmyk.mode == "CMYK"
        assert all(ImageFiles(raw, np.array(odd))[i].shape[-1] == 3 for i in range(len(odd)))
    elif set(counts) == {"all"}:  # no official split: test and val carved out of everything
        assert sum(sizes.values()) == counts["all"]
    else:
        for split, size in sizes.items():
            if entry["splits"][split] == "all":
                assert size == counts[split]


def test_subset_of_a_prepared_imagenet_before_its_own_raw_folder_exists(registry, imagenet_root, tmp_path):
    """A fresh paper run: data/raw/imagenet_1pct does not exist yet, and ImageNet's class folders are reached
    through it (../imagenet/train); only the list file may be reported missing."""
    entry = registry["imagenet_1pct"]
    subset = entry["source"]["subset"]
    entry = {**entry, "splits": cap_splits(entry["splits"], CAP),
             "source": {**entry["source"], "subset": {**subset, "file": {**subset["file"], "url": UNREACHABLE}}}}
    assert (imagenet_root / "imagenet" / "train").is_dir()  # ImageNet is there, unpacked
    fresh = imagenet_root / "imagenet_1pct_fresh"  # what data/raw/imagenet_1pct is in a fresh paper run
    # Wanted: the list file is the only thing missing (offline here: its download fails).
    with pytest.raises(DataUnavailableError, match="1percent.txt is missing and the download failed"):
        prepare_dataset("imagenet_1pct", entry, tmp_path / "prepared", fresh)


def test_manifest_round_trips(registry, tmp_path):
    """What a maker records is read back whole, and puts into the entry only pins and expected counts."""
    for dataset_id, images_per_class in (("eurosat", 4), ("cifar100", 1), ("visda2017_real", 1), ("imagenet_10pct", 1)):
        path = _make(dataset_id, registry, tmp_path, images_per_class=images_per_class)
        raw = tmp_path / dataset_id
        assert path == raw / "STANDIN.json" and (raw / "STANDIN.owner").is_file()
        manifest = read_manifest(raw)
        assert manifest == json.loads(path.read_text())
        assert (manifest["dataset"], manifest["standin"], manifest["seed"]) == (dataset_id, True, SEED)
        original = registry[dataset_id]["source"]
        source = apply_manifest(registry[dataset_id], manifest)["source"]
        assert {k: v for k, v in source.items() if k not in ("files", "expect", "subset")} == \
               {k: v for k, v in original.items() if k not in ("files", "expect", "subset")}
        for spec, pinned in zip(original.get("files") or [], source.get("files") or [], strict=True):
            digests = manifest["files"][spec["name"]]
            assert digests["sha256"] == sha256_file(raw / spec["name"])
            assert {k: v for k, v in pinned.items() if k not in ("sha256", "md5")} == \
                   {k: v for k, v in spec.items() if k not in ("sha256", "md5")}
            # A pinned sha256 becomes the stand-in's; "unpinned" stays unpinned; a published md5 becomes the stand-in's.
            assert pinned["sha256"] == (digests["sha256"] if spec["sha256"] != "unpinned" else "unpinned")
            assert pinned.get("md5") == (digests["md5"] if "md5" in spec else None)
        if "expect" in original:
            assert set(source["expect"]) == set(original["expect"]) and source["expect"] == {
                s: manifest["counts"][s] for s in original["expect"]}
    assert read_manifest(tmp_path / "eurosat")["counts"] == {"all": 40}
    subset = apply_manifest(registry["imagenet_10pct"], read_manifest(tmp_path / "imagenet_10pct"))["source"]["subset"]
    assert subset["file"]["sha256"] == sha256_file(tmp_path / "imagenet_10pct" / "10percent.txt")
    assert {k: v for k, v in subset["file"].items() if k != "sha256"} == \
           {k: v for k, v in registry["imagenet_10pct"]["source"]["subset"]["file"].items() if k != "sha256"}


def test_makers_refuse_real_data_and_mismatched_imagenet(registry, tmp_path):
    raw = tmp_path / "eurosat"
    raw.mkdir()
    (raw / "EuroSAT.zip").write_bytes(b"the real thing")
    with pytest.raises(StandinError, match="may be the real dataset"):
        _make("eurosat", registry, tmp_path)
    assert (raw / "EuroSAT.zip").read_bytes() == b"the real thing"
    _make("imagenet_1pct", registry, tmp_path)  # ImageNet's stand-in not made yet: the list needs only the seed
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "STANDIN.json").write_text(json.dumps({"seed": SEED + 1, "images_per_class": 1}))
    with pytest.raises(StandinError, match="seed 1"):
        _make("imagenet_1pct", registry, tmp_path)


def test_same_seed_writes_identical_bytes(registry, tmp_path, monkeypatch):
    def written(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    cheap = ("cifar100", "eurosat", "chexpert", "visda2017_real", "imagenet_1pct")
    for dataset_id in cheap:
        _make(dataset_id, registry, tmp_path / "a", seed=5)
        _make(dataset_id, registry, tmp_path / "b", seed=5)
        _make(dataset_id, registry, tmp_path / "c", seed=6)
    first, again, other = (written(tmp_path / run) for run in "abc")
    assert first == again and len(first) > 100
    differs = [name for name in first if name in other and first[name] != other[name]]
    assert any(name.endswith(".zip") for name in differs) and any(name.endswith(".jpg") for name in differs)
    # Archives and MAT files carry no clock: the same members give the same bytes at any time.
    members = {"d/a.jpg": b"x" * 100, "d/e/b.txt": b"y"}
    times = iter(range(1_000_000_000, 2_000_000_000, 86_400))
    monkeypatch.setattr("time.time", lambda: float(next(times)))
    for name in ("x.tar", "x.tar.gz", "x.tgz", "x.zip"):
        assert archive_bytes(name, members) == archive_bytes(name, members)
    assert gzip.decompress(archive_bytes("x.tar.gz", members)) == archive_bytes("x.tar", members)
    monkeypatch.undo()
    mat = mat_bytes({"labels": np.arange(5, dtype=np.uint8)[None]})
    assert re.match(rb"MATLAB 5\.0 MAT-file, Platform: GLNXA64, Created on: Sun Jan  1 00:00:00 2012 +$", mat[:116])
