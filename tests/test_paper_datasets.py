"""BoB's classification datasets, on tiny copies the tests make in each dataset's real layout:
checksum and layout checks, manual-data messages, image files, multi-label CheXpert, the test-split switch."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from archives import write_tar
from bobench.backbones.transforms import EvalTransform
from bobench.config import dataset_entry
from bobench.datasets import ChecksumError, DataUnavailableError, load_prepared, prepare_dataset
from bobench.datasets.images import ImageFiles
from bobench.datasets.paper_sources import CHEXPERT_FINDINGS, chexpert_labels, imagenet_synsets
from bobench.datasets.prepared import PreparedDataError
from bobench.features import eval_batches
from bobench.io import sha256_file

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "file:///nonexistent/bobench-test-download"


@pytest.fixture(scope="module")
def registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())


def _image(seed: int, size: tuple[int, int] = (12, 10)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _png(seed: int, size=(12, 10)) -> bytes:
    buffer = io.BytesIO()
    _image(seed, size).save(buffer, "PNG")
    return buffer.getvalue()


def _ood_entry(archive: str, folder: str, sha256: str, **source) -> dict:
    return {
        "name": "tiny", "domain": "natural", "licence": "test", "seed": 0, "tasks": ["ood"],
        "splits": {"train": 0, "val": 0, "test": "all"},
        "source": {"loader": "image_folder", "folders": {"test": folder}, "how_to_get": "Get it from the moon.",
                   "files": [{"name": archive, "url": UNREACHABLE, "sha256": sha256, "extract": True}], **source},
    }


@pytest.fixture()
def imagenet_r_like(tmp_path):
    """An ImageNet-R-shaped archive: imagenet-r/<wnid>/*.png for three real ImageNet wnids."""
    wnids = imagenet_synsets()[5:8]
    raw = tmp_path / "raw"
    raw.mkdir()
    members = {f"imagenet-r/{w}/{i}.png": _png(10 * c + i) for c, w in enumerate(wnids) for i in range(4)}
    archive = write_tar(raw / "imagenet-r.tar", members)
    return raw, archive, wnids


def test_image_folder_archive_is_checked_extracted_and_kept_as_files(imagenet_r_like, tmp_path):
    raw, archive, wnids = imagenet_r_like
    entry = _ood_entry("imagenet-r.tar", "imagenet-r.tar.d/imagenet-r", sha256_file(archive), num_classes=3, expect={"test": 12})
    meta = prepare_dataset("tiny_r", entry, tmp_path / "prepared", raw)
    assert meta["storage"] == "files" and meta["class_names"] == wnids and meta["test_split"] == "official test"
    assert [meta["splits"][s]["size"] for s in ("train", "val", "test")] == [0, 0, 12]
    dataset = load_prepared(tmp_path / "prepared", verify=True)
    images, labels = dataset.split("test")
    assert isinstance(images, ImageFiles) and len(images) == 12 and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert np.array_equal(images[5], np.asarray(_image(11)))  # class 1, image 1
    assert meta["source"]["files"][0] == {"name": "imagenet-r.tar", "url": UNREACHABLE, "sha256": sha256_file(archive), "pinned": True}
    # The verified hash is remembered: a second preparation neither re-hashes nor re-extracts, and still records it.
    assert (raw / "imagenet-r.tar.sha256").is_file() and (raw / "imagenet-r.tar.d").is_dir()
    again = prepare_dataset("tiny_r", entry, tmp_path / "again", raw)
    assert again["source"]["files"] == meta["source"]["files"] and again["manifest"] == meta["manifest"]


def test_image_folder_refuses_a_tampered_archive(imagenet_r_like, tmp_path):
    raw, archive, _ = imagenet_r_like
    entry = _ood_entry("imagenet-r.tar", "imagenet-r.tar.d/imagenet-r", "0" * 64)
    with pytest.raises(ChecksumError, match="imagenet-r.tar"):
        prepare_dataset("tiny_r", entry, tmp_path / "prepared", raw)
    assert not (raw / "imagenet-r.tar.d").exists()  # nothing unpacked from an unverified file


def test_layout_check_and_missing_data_messages(imagenet_r_like, tmp_path):
    raw, archive, _ = imagenet_r_like
    entry = _ood_entry("imagenet-r.tar", "imagenet-r.tar.d/imagenet-r", sha256_file(archive), num_classes=200)
    with pytest.raises(DataUnavailableError, match=r"(?s)3 class folders, expected 200.*Get it from the moon"):
        prepare_dataset("tiny_r", entry, tmp_path / "p1", raw)
    entry = _ood_entry("imagenet-r.tar", "imagenet-r.tar.d/imagenet-r", sha256_file(archive), expect={"test": 30000})
    with pytest.raises(DataUnavailableError, match=r"(?s)12 images in split 'test', expected 30000"):
        prepare_dataset("tiny_r", entry, tmp_path / "p2", raw)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataUnavailableError, match=rf"(?s){empty / 'imagenet-r.tar'} is missing and the download failed.*moon.*symbolic link"):
        prepare_dataset("tiny_r", entry, tmp_path / "p3", empty)


def test_imagenet_v2_numbered_folders_are_named_by_imagenet_index(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    members = {f"v2/{c}/{i}.png": _png(c * 7 + i) for c in (0, 1, 2, 10) for i in range(2)}
    archive = write_tar(raw / "v2.tar.gz", members)
    entry = _ood_entry("v2.tar.gz", "v2.tar.gz.d/v2", sha256_file(archive), class_names="imagenet_index")
    meta = prepare_dataset("tiny_v2", entry, tmp_path / "prepared", raw)
    synsets = imagenet_synsets()
    assert meta["class_names"] == [synsets[0], synsets[1], synsets[2], synsets[10]]  # numeric, not text, order


def test_simclr_subset_keeps_only_listed_training_images(tmp_path):
    raw = tmp_path / "raw"
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            for i in range(5):
                path = raw / split / c / f"{c}_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                _image(i).save(path, "JPEG")
    listed = raw / "1percent.txt"
    listed.write_text("n01_0.JPEG\nn01_3.JPEG\nn02_4.JPEG\n")
    entry = {
        "name": "sub", "domain": "natural", "licence": "test", "seed": 0, "tasks": ["classification"],
        "splits": {"train": "all", "val": 0.5, "test": "all"},
        "source": {"loader": "image_folder", "folders": {"train": "train", "test": "val"}, "how_to_get": "x", "files": [],
                   "subset": {"split": "train", "file": {"name": "1percent.txt", "url": UNREACHABLE, "sha256": sha256_file(listed)}}},
    }
    # val (carved from the 3 listed images, rounded from 0.5 × 3) + train = the 3 listed images.
    meta = prepare_dataset("sub", entry, tmp_path / "prepared", raw)
    dataset = load_prepared(tmp_path / "prepared")
    kept = sorted(Path(p).name for s in ("train", "val") for p in dataset.split(s)[0].paths)
    assert kept == ["n01_0.JPEG", "n01_3.JPEG", "n02_4.JPEG"] and meta["splits"]["test"]["size"] == 10
    listed.write_text("n01_0.JPEG\n")
    with pytest.raises(ChecksumError, match="1percent.txt"):
        prepare_dataset("sub", entry, tmp_path / "prepared2", raw)


def _cifar_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def test_cifar100_parses_the_python_archive_with_the_numpy_only_unpickler(registry, tmp_path):
    rng = np.random.default_rng(0)
    data = {split: rng.integers(0, 256, (n, 3072), dtype=np.uint8) for split, n in (("train", 6), ("test", 4))}
    members = {
        "cifar-100-python/meta": _cifar_pickle({"fine_label_names": ["apple", "bee", "cup"], "coarse_label_names": ["x"]}),
        **{f"cifar-100-python/{s}": _cifar_pickle({"data": d, "fine_labels": [0, 1, 2] * (len(d) // 3) + [0] * (len(d) % 3)})
           for s, d in data.items()},
    }
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = write_tar(raw / "cifar-100-python.tar.gz", members)
    entry = {**registry["cifar100"], "splits": {"train": "all", "val": 3, "test": "all"}}
    entry["source"] = {**entry["source"], "files": [{**entry["source"]["files"][0], "url": UNREACHABLE, "sha256": sha256_file(archive)}]}
    meta = prepare_dataset("cifar100", entry, tmp_path / "prepared", raw)
    assert meta["storage"] == "pixels" and meta["class_names"] == ["apple", "bee", "cup"] and meta["image_size"] == [32, 32]
    images, _ = load_prepared(tmp_path / "prepared").split("test")
    assert np.array_equal(images[0], data["test"][0].reshape(3, 32, 32).transpose(1, 2, 0))  # CHW rows → HWC

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    members["cifar-100-python/meta"] = pickle.dumps({"fine_label_names": Evil()}, protocol=2)
    archive = write_tar(raw / "cifar-100-python.tar.gz", members)
    entry["source"]["files"][0]["sha256"] = sha256_file(archive)
    (raw / "cifar-100-python.tar.gz.sha256").unlink()
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global __builtin__.print"):
        prepare_dataset("cifar100", entry, tmp_path / "prepared", raw)


def test_flowers102_official_splits_and_the_bob_validation_switch(registry, tmp_path):
    from scipy.io import savemat

    raw = tmp_path / "raw"
    raw.mkdir()
    n = 12
    members = {}
    for i in range(1, n + 1):
        buffer = io.BytesIO()
        _image(i, (9 + i % 3, 11)).save(buffer, "JPEG")  # sizes differ, as in the real set
        members[f"jpg/image_{i:05d}.jpg"] = buffer.getvalue()
    write_tar(raw / "102flowers.tgz", members)
    labels = np.array([1, 2, 3] * 4)  # 1-based in the .mat
    savemat(raw / "imagelabels.mat", {"labels": labels[None]})
    savemat(raw / "setid.mat", {"trnid": np.array([[1, 2, 3, 4, 5, 6]]), "valid": np.array([[7, 8, 9]]), "tstid": np.array([[10, 11, 12]])})
    files = [{**spec, "url": UNREACHABLE, "sha256": sha256_file(raw / spec["name"])} for spec in registry["flowers102"]["source"]["files"]]
    base = {**registry["flowers102"], "source": {**registry["flowers102"]["source"], "files": files}}
    datasets = {"flowers102": base}
    entry = dataset_entry({"bob_validation_as_test": False}, datasets, "flowers102")
    meta = prepare_dataset("flowers102", entry, tmp_path / "official", raw)
    assert [meta["splits"][s]["size"] for s in ("train", "val", "test")] == [6, 3, 3] and meta["test_split"] == "official test"
    test_images, test_labels = load_prepared(tmp_path / "official").split("test")
    assert test_labels.tolist() == [0, 1, 2] and Path(test_images.paths[0]).name == "image_00010.jpg"
    assert len(meta["class_names"]) == 102
    entry = dataset_entry({"bob_validation_as_test": True}, datasets, "flowers102")
    meta = prepare_dataset("flowers102", entry, tmp_path / "bob", raw)
    assert meta["test_split"] == "official val"
    val_paths = load_prepared(tmp_path / "bob").split("val")[0].paths
    assert np.array_equal(load_prepared(tmp_path / "bob").split("test")[0].paths, val_paths)  # BoB selected on it too


def test_fgvc_aircraft_variant_lists(registry, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    root = "fgvc-aircraft-2013b/data"
    variants = ["707-320", "A300B4", "Tu-154"]
    members = {f"{root}/variants.txt": ("\n".join(variants) + "\n").encode()}
    ids = {"train": ["0001", "0002", "0003"], "val": ["0004", "0005", "0006"], "test": ["0007", "0008", "0009"]}
    for split, split_ids in ids.items():
        members[f"{root}/images_variant_{split}.txt"] = "".join(f"{i} {variants[k]}\n" for k, i in enumerate(split_ids)).encode()
        for i in split_ids:
            buffer = io.BytesIO()
            _image(int(i)).save(buffer, "JPEG")
            members[f"{root}/images/{i}.jpg"] = buffer.getvalue()
    archive = write_tar(raw / "fgvc-aircraft-2013b.tar.gz", members)
    spec = {**registry["fgvc_aircraft"]["source"]["files"][0], "url": UNREACHABLE, "sha256": sha256_file(archive)}
    entry = {**registry["fgvc_aircraft"], "source": {**registry["fgvc_aircraft"]["source"], "files": [spec]}}
    meta = prepare_dataset("fgvc_aircraft", entry, tmp_path / "prepared", raw)
    assert meta["class_names"] == variants and meta["splits"]["test"]["class_counts"] == {v: 1 for v in variants}
    assert load_prepared(tmp_path / "prepared").split("test")[1].tolist() == [0, 1, 2]


def test_chexpert_label_policy():
    """U-Ones for Edema and Atelectasis, U-Zeros for the rest, blank → 0."""
    table = pd.DataFrame({name: [1.0, 0.0, -1.0, np.nan] for name in CHEXPERT_FINDINGS})
    labels = chexpert_labels(table)
    assert labels.dtype == np.int64 and labels.shape == (4, 5)
    u_ones = [name in ("Edema", "Atelectasis") for name in CHEXPERT_FINDINGS]
    assert labels[0].tolist() == [1] * 5 and labels[1].tolist() == [0] * 5 and labels[3].tolist() == [0] * 5
    assert labels[2].tolist() == [int(u) for u in u_ones]
    with pytest.raises(ValueError, match="lacks the column"):
        chexpert_labels(table.drop(columns=["Edema"]))


def _chexpert_folder(raw: Path, n_train: int = 24) -> None:
    rng = np.random.default_rng(0)
    for split, csv, n in (("train", "train.csv", n_train), ("valid", "valid.csv", 8)):
        rows = []
        for i in range(n):
            for view in ("frontal", "lateral"):
                path = f"CheXpert-v1.0-small/{split}/patient{i:05d}/study1/view1_{view}.jpg"
                (raw / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8)).save(raw / path, "JPEG")
                findings = rng.choice([1.0, 0.0, -1.0, np.nan], size=5)
                rows.append({"Path": path, "Frontal/Lateral": view.capitalize(), **dict(zip(CHEXPERT_FINDINGS, findings))})
        pd.DataFrame(rows).to_csv(raw / "CheXpert-v1.0-small" / csv, index=False)


def test_chexpert_loader_keeps_frontal_views_as_multilabel(registry, tmp_path):
    raw = tmp_path / "raw"
    _chexpert_folder(raw)
    meta = prepare_dataset("chexpert", registry["chexpert"], tmp_path / "prepared", raw)
    assert meta["label_type"] == "multilabel" and meta["class_names"] == list(CHEXPERT_FINDINGS)
    assert meta["splits"]["test"]["size"] == 8 and meta["splits"]["train"]["size"] + meta["splits"]["val"]["size"] == 24
    dataset = load_prepared(tmp_path / "prepared", verify=True)
    images, labels = dataset.split("test")
    assert dataset.multilabel and labels.shape == (8, 5) and set(np.unique(labels)) <= {0, 1}
    assert all("frontal" in p for p in images.paths) and images[0].shape == (20, 16, 3)
    (raw / images.paths[3]).unlink()
    with pytest.raises(DataUnavailableError, match="(?s)1 image.*missing.*research-use agreement"):
        prepare_dataset("chexpert", registry["chexpert"], tmp_path / "again", raw)


def test_chexpert_without_data_says_where_to_get_it(registry, tmp_path):
    with pytest.raises(DataUnavailableError, match="(?s)CheXpert-v1.0-small.*stanfordmlgroup"):
        prepare_dataset("chexpert", registry["chexpert"], tmp_path / "prepared", tmp_path / "nothing")


def test_prepared_files_need_their_images(imagenet_r_like, tmp_path):
    raw, archive, _ = imagenet_r_like
    entry = _ood_entry("imagenet-r.tar", "imagenet-r.tar.d/imagenet-r", sha256_file(archive))
    prepare_dataset("tiny_r", entry, tmp_path / "prepared", raw)
    (raw / "imagenet-r.tar.d").rename(raw / "moved")
    with pytest.raises(PreparedDataError, match="is missing; the raw images must stay under image_root"):
        load_prepared(tmp_path / "prepared")


def test_eval_batches_give_the_same_images_from_files_and_pixels(tmp_path):
    """Files are decoded and transformed image by image in loader workers; pixels batch-wise on the device."""
    pixels = np.stack([np.asarray(_image(i, (20, 20))) for i in range(5)])
    paths = []
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
    files = ImageFiles(tmp_path, np.array(paths))
    transform = EvalTransform(size=16, crop_pct=0.875, interpolation="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)
    cpu = torch.device("cpu")
    from_pixels = list(eval_batches(pixels, transform, 2, cpu, pad_to_batch=True))
    from_files = list(eval_batches(files, transform, 2, cpu, num_workers=1, pad_to_batch=True))
    assert [n for _, n in from_files] == [n for _, n in from_pixels] == [2, 2, 1]
    assert all(a.shape == b.shape == (2, 3, 16, 16) for (a, _), (b, _) in zip(from_pixels, from_files))
    for (a, n), (b, _) in zip(from_pixels, from_files):
        torch.testing.assert_close(a[:n], b[:n])


def test_zip_archives_extract_too(tmp_path):
    """EuroSAT and ImageNet-Sketch come as zip files."""
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "EuroSAT.zip", "w") as archive:
        for c in ("Forest", "River"):
            for i in range(5):
                archive.writestr(f"2750/{c}/{c}_{i}.png", _png(i))
    entry = {
        "name": "e", "domain": "satellite", "licence": "MIT", "seed": 0, "tasks": ["classification"],
        "splits": {"train": "all", "val": 0.2, "test": 0.2},
        "source": {"loader": "image_folder", "folders": {"all": "EuroSAT.zip.d/2750"}, "how_to_get": "x", "num_classes": 2,
                   "files": [{"name": "EuroSAT.zip", "url": UNREACHABLE, "sha256": sha256_file(raw / "EuroSAT.zip"), "extract": True}]},
    }
    meta = prepare_dataset("eurosat", entry, tmp_path / "prepared", raw)
    assert [meta["splits"][s]["size"] for s in ("train", "val", "test")] == [6, 2, 2]
    assert meta["test_split"] == "held out of the data"
