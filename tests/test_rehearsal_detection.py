"""The detection stand-ins (COCO 2017, Sim10k, Cityscapes cars): each written in its real published layout
and read by the real preparation (``prepare_detection_dataset``) through ``apply_manifest``, at the rehearsal's
split cap; the COCO files keep the real category ids and names, boxes, polygons and crowd RLEs; the same seed
writes the same bytes; a folder that may hold the real data is never overwritten."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bobench.detection.data import CocoInstances, load_coco
from bobench.detection.sources import prepare_detection_dataset
from bobench.rehearsal.manifest import StandinError, apply_manifest, read_manifest
from bobench.rehearsal.standin_detection import COCO_CATEGORIES, DETECTION_MAKERS

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
LOG = logging.getLogger("test_rehearsal_detection")
CAP = yaml.safe_load((ROOT / "config" / "rehearsal.yaml").read_text())["rehearsal"]["max_images_per_split"]


def _standin_entry(dataset_id: str, raw_dir: Path) -> dict:
    """The registry entry through the stand-in's manifest, every split capped as in a rehearsal."""
    entry = apply_manifest(REGISTRY[dataset_id], read_manifest(raw_dir))
    entry["splits"] = {split: 0 if size == 0 else CAP for split, size in entry["splits"].items()}
    return entry


def _make_and_prepare(dataset_id: str, tmp_path: Path, seed: int = 0) -> tuple[Path, dict, dict]:
    raw = tmp_path / "raw" / dataset_id
    path = DETECTION_MAKERS[dataset_id](dataset_id, REGISTRY[dataset_id], raw, seed=seed, images_per_class=1)
    assert path == raw / "STANDIN.json" and (raw / "STANDIN.owner").is_file()
    manifest = prepare_detection_dataset(dataset_id, _standin_entry(dataset_id, raw), raw, tmp_path / "out", {}, LOG)
    return raw, manifest, read_manifest(raw)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_coco2017_real_categories_boxes_polygons_and_crowds(tmp_path):
    raw, manifest, standin = _make_and_prepare("coco2017", tmp_path)
    # All 80 categories, with COCO's ids (1…90, ten unused) and names, in id order.
    assert manifest["categories"] == [name for _, name, _ in COCO_CATEGORIES] and len(manifest["categories"]) == 80
    assert manifest["masks"] is True and set(manifest["splits"]) == {"train", "test"}
    extracted = raw / "annotations_trainval2017.zip.d" / "annotations"
    with zipfile.ZipFile(raw / "annotations_trainval2017.zip") as archive:
        assert sorted(n for n in archive.namelist() if n.endswith(".json")) == [
            f"annotations/{kind}_{split}2017.json" for kind in ("captions", "instances", "person_keypoints")
            for split in ("train", "val")]
    for official, split in (("train2017", "train"), ("val2017", "test")):
        full = json.loads((extracted / f"instances_{official}.json").read_text())
        assert list(full) == ["info", "licenses", "images", "annotations", "categories"]
        ids = {c["id"] for c in full["categories"]}
        assert ids == {cat_id for cat_id, _, _ in COCO_CATEGORIES} and 12 not in ids and 90 in ids and max(ids) == 90
        assert {a["category_id"] for a in full["annotations"]} == ids  # every category has objects in each split
        assert len(full["images"]) == standin["counts"][official]["images"] > CAP  # so the cap draws
        crowds = [a for a in full["annotations"] if a["iscrowd"]]
        assert crowds and all(isinstance(a["segmentation"]["counts"], list) for a in crowds)
        polygons = [a for a in full["annotations"] if not a["iscrowd"]]
        assert all(isinstance(a["segmentation"], list) and len(a["segmentation"][0]) >= 6 for a in polygons)
        assert any(len(a["segmentation"]) == 2 for a in polygons)  # an object seen in two parts
        # The prepared split: capped at 8, read by pycocotools, boxes and masks agree with the polygons.
        files = manifest["splits"][split]
        assert files["n_images"] == CAP and Path(files["images"]) == raw / f"{official}.zip.d" / official
        coco = load_coco(files["annotations"])
        for annotation in coco.anns.values():
            mask = coco.annToMask(annotation)
            assert mask.sum() == pytest.approx(annotation["area"], rel=0.02, abs=4)
            x, y, w, h = annotation["bbox"]
            rows, cols = np.nonzero(mask)
            assert cols.min() >= np.floor(x) - 1 and cols.max() <= np.ceil(x + w) + 1 and rows.min() >= np.floor(y) - 1
        dataset = CocoInstances(files["annotations"], files["images"], manifest["categories"], masks=True)
        for index in range(len(dataset)):
            info = coco.imgs[dataset.image_ids[index]]
            image, target = dataset[index]
            assert tuple(image.shape) == (3, info["height"], info["width"])
            assert len(target["boxes"]) == len(target["masks"]) == len(target["labels"])
    keypoints = json.loads((extracted / "person_keypoints_val2017.json").read_text())
    assert keypoints["categories"][0]["name"] == "person" and len(keypoints["categories"][0]["keypoints"]) == 17
    assert all(len(a["keypoints"]) == 51 for a in keypoints["annotations"])


def test_sim10k_voc_cars_become_the_train_split(tmp_path):
    raw, manifest, standin = _make_and_prepare("sim10k", tmp_path)
    assert manifest["categories"] == ["car"] and manifest["masks"] is False and list(manifest["splits"]) == ["train"]
    files = manifest["splits"]["train"]
    assert files["n_images"] == CAP < standin["counts"]["images"]
    coco = json.loads(Path(files["annotations"]).read_text())
    assert coco["categories"] == [{"id": 1, "name": "car"}] and coco["annotations"]
    xml_files = sorted((raw / "repro_10k_annotations.tgz.d" / "VOC2012" / "Annotations").glob("*.xml"))
    assert len(xml_files) == standin["counts"]["images"] == standin["source"]["expect_images"]
    names = {obj.findtext("name") for f in xml_files for obj in ET.parse(f).getroot().iter("object")}
    assert names == {"car", "person", "motorbike"}  # the loader keeps the cars only
    for image in coco["images"]:
        assert image["file_name"][:-4].isdigit() and len(image["file_name"]) == len("3384645.jpg")
        with Image.open(Path(files["images"]) / image["file_name"]) as picture:
            assert picture.size == (image["width"], image["height"]) == (1914, 1052) and picture.format == "JPEG"
    # VOC's 1-based inclusive corners → COCO's 0-based x, y, w, h.
    first = ET.parse(xml_files[0]).getroot()
    box = next(o for o in first.iter("object") if o.findtext("name") == "car").find("bndbox")
    x1, y1, x2, y2 = (int(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    everything = prepare_detection_dataset("sim10k", {**_standin_entry("sim10k", raw), "splits": {"train": "all", "val": 0, "test": 0}},
                                           raw, tmp_path / "all", {}, LOG)
    full = json.loads(Path(everything["splits"]["train"]["annotations"]).read_text())
    assert full["annotations"][0]["bbox"] == [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
    assert len(full["images"]) == standin["counts"]["images"] and len(full["annotations"]) == standin["counts"]["cars"]
    assert any(not [a for a in full["annotations"] if a["image_id"] == image["id"]] for image in full["images"])


def test_cityscapes_val_cars_with_their_visible_pixels(tmp_path):
    raw, manifest, standin = _make_and_prepare("cityscapes_cars", tmp_path)
    assert manifest["categories"] == ["car"] and list(manifest["splits"]) == ["test"]
    files = manifest["splits"]["test"]
    assert files["n_images"] == CAP < standin["counts"]["val_images"]
    coco = json.loads(Path(files["annotations"]).read_text())
    for image in coco["images"]:
        city, name = image["file_name"].split("/")
        assert city in ("frankfurt", "lindau", "munster") and name.startswith(city) and name.endswith("_leftImg8bit.png")
        with Image.open(Path(files["images"]) / image["file_name"]) as picture:
            assert picture.size == (2048, 1024) and picture.mode == "RGB" and picture.format == "PNG"
    assert coco["annotations"] and all(a["category_id"] == 1 and a["segmentation"]["size"] == [1024, 2048]
                                       for a in coco["annotations"])
    gt = raw / "gtFine_trainvaltest.zip.d" / "gtFine"
    assert sorted(p.name for p in gt.iterdir()) == ["test", "train", "val"]
    polygons = sorted((gt / "val").glob("*/*_gtFine_polygons.json"))
    assert len(polygons) == standin["counts"]["val_images"] == standin["source"]["expect_images"]
    for suffix in ("color", "labelIds", "instanceIds"):
        assert polygons[0].with_name(polygons[0].name.replace("polygons.json", f"{suffix}.png")).is_file()
    labels = {obj["label"] for p in polygons for obj in json.loads(p.read_text())["objects"]}
    assert {"car", "cargroup", "license plate", "ego vehicle", "road", "sky"} <= labels
    # All val frames: a car hidden wholly behind a truck (or nearer cars) has no pixel, hence no instance; groups
    # are not instances.
    everything = prepare_detection_dataset(
        "cityscapes_cars", {**_standin_entry("cityscapes_cars", raw), "splits": {"train": 0, "val": 0, "test": "all"}},
        raw, tmp_path / "all", {}, LOG)
    full = json.loads(Path(everything["splits"]["test"]["annotations"]).read_text())
    car_polygons = sum(obj["label"] == "car" for p in polygons for obj in json.loads(p.read_text())["objects"])
    assert len(full["annotations"]) == standin["counts"]["val_visible_cars"] <= car_polygons - 1


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for dataset_id in ("coco2017", "sim10k"):
        first, again, other = (tmp_path / name / dataset_id for name in ("a", "b", "c"))
        for folder, seed in ((first, 3), (again, 3), (other, 4)):
            DETECTION_MAKERS[dataset_id](dataset_id, REGISTRY[dataset_id], folder, seed=seed, images_per_class=1)
        assert _tree_bytes(first) == _tree_bytes(again)
        assert read_manifest(first)["files"] != read_manifest(other)["files"]


def test_a_folder_that_may_hold_the_real_data_is_not_overwritten(tmp_path):
    raw = tmp_path / "raw" / "sim10k"
    raw.mkdir(parents=True)
    (raw / "repro_10k_images.tgz").write_bytes(b"the real 10k images")
    with pytest.raises(StandinError, match="may be the real dataset"):
        DETECTION_MAKERS["sim10k"]("sim10k", REGISTRY["sim10k"], raw, seed=0, images_per_class=1)
    assert (raw / "repro_10k_images.tgz").read_bytes() == b"the real 10k images"
    # Over an earlier stand-in it is remade, and what the earlier one's preparation extracted is cleared.
    (raw / "repro_10k_images.tgz").unlink()
    DETECTION_MAKERS["sim10k"]("sim10k", REGISTRY["sim10k"], raw, seed=0, images_per_class=1)
    prepare_detection_dataset("sim10k", _standin_entry("sim10k", raw), raw, tmp_path / "out", {}, LOG)
    assert (raw / "repro_10k_images.tgz.d").is_dir()
    DETECTION_MAKERS["sim10k"]("sim10k", REGISTRY["sim10k"], raw, seed=1, images_per_class=1)
    assert not (raw / "repro_10k_images.tgz.d").exists() and not (raw / "repro_10k_images.tgz.sha256").exists()
    # A rerun after Snakemake removed the manifest (the rule's output) remakes it: the folder is a stand-in's.
    (raw / "STANDIN.json").unlink()
    DETECTION_MAKERS["sim10k"]("sim10k", REGISTRY["sim10k"], raw, seed=1, images_per_class=1)
    assert (raw / "STANDIN.json").is_file()


def test_the_manifest_replaces_only_pins_and_counts(tmp_path):
    raw = tmp_path / "raw" / "coco2017"
    DETECTION_MAKERS["coco2017"]("coco2017", REGISTRY["coco2017"], raw, seed=0, images_per_class=1)
    standin = read_manifest(raw)
    entry = apply_manifest(REGISTRY["coco2017"], standin)
    for original, replaced in zip(REGISTRY["coco2017"]["source"]["files"], entry["source"]["files"]):
        assert {k: v for k, v in replaced.items() if k not in ("sha256", "md5")} == \
               {k: v for k, v in original.items() if k not in ("sha256", "md5")}
        written = standin["files"][original["name"]]
        assert replaced["md5"] == written["md5"] != original["md5"]
        # A pinned sha256 becomes the stand-in's; an unpinned one stays unpinned (the real path: md5 checked).
        assert replaced["sha256"] == (written["sha256"] if original["sha256"] != "unpinned" else "unpinned")
    assert {k: v for k, v in entry.items() if k not in ("source", "standin")} == \
           {k: v for k, v in REGISTRY["coco2017"].items() if k != "source"}
    assert entry["standin"] is True


@pytest.mark.parametrize("dataset_id", ["sim10k", "cityscapes_cars"])
def test_manifest_may_set_the_expected_image_count(tmp_path, dataset_id):
    """Sim10k's and Cityscapes' layout checks count images under ``expect_images``: a stand-in replaces it."""
    raw = tmp_path / "raw" / dataset_id
    DETECTION_MAKERS[dataset_id](dataset_id, REGISTRY[dataset_id], raw, seed=0, images_per_class=1)
    entry = apply_manifest(REGISTRY[dataset_id], read_manifest(raw))
    counts = read_manifest(raw)["counts"]
    assert entry["source"]["expect_images"] == counts.get("images", counts.get("val_images")) > 0
