"""Detection datasets: registry loaders that end in COCO ``instances`` files.

``prepare_detection_dataset`` turns a registry entry (``tasks: [detection]`` or
``[ood_detection]``) into ``data/detection/<id>/``: one COCO JSON per split
(``train``, ``test``), the images (or the raw folder they live in) and
``manifest.json``, written last, so a folder without it is unfinished.

Loaders:

* ``synthetic_canvases``: objects of a prepared classification dataset pasted on
  canvases (:mod:`bobench.detection.synthetic`); the offline demo's data;
* ``coco2017``: COCO 2017 train / val (the test split, as in BoB), downloaded
  with checksums;
* ``sim10k``: Sim10k's VOC XML converted to a car-only COCO file (all 10k images
  train, as BoB's ``sim10k_voc2coco_format.py``);
* ``cityscapes_cars``: Cityscapes' fine polygons of the val split converted to a
  car-only COCO file; the polygons are drawn in file order so each car keeps
  only its visible pixels, as the instance-ID images behind BoB's
  ``instancesonly_filtered_gtFine_val.json`` do.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bobench.datasets.archives import obtain_files, require_dir
from bobench.datasets.entries import DETECTION_TASKS, check_shared_keys
from bobench.datasets.loader_registry import LoaderRegistry
from bobench.detection.synthetic import BACKGROUNDS
from bobench.io import write_json

MANIFEST_FORMAT = 1
SPLITS = ("train", "test")

DETECTION_LOADERS = LoaderRegistry("detection")
register_detection_loader = DETECTION_LOADERS.register


def validate_detection_entry(dataset_id: str, entry: Any) -> None:
    """Check of a detection dataset's entry (the keys every kind shares, then its tasks, loader, splits and
    seed); every kind's entry: :func:`bobench.datasets.kinds.validate_dataset_entry`."""
    fail = check_shared_keys(dataset_id, entry)
    valid_tasks = DETECTION_TASKS
    for task in entry["tasks"]:
        if task not in valid_tasks:
            fail("tasks", task, f"cannot be mixed with detection tasks; a detection dataset's tasks are among {', '.join(valid_tasks)}")
    loader = (entry.get("source") or {}).get("loader")
    if loader not in DETECTION_LOADERS:
        fail("source.loader", loader, f"is not a detection loader; valid: {', '.join(sorted(DETECTION_LOADERS))}")
    missing = DETECTION_LOADERS.missing_keys(loader, entry["source"])
    if missing:
        fail("source", entry["source"], f"lacks {', '.join(missing)}, required by loader {loader!r}")
    if loader == "synthetic_canvases" and entry["source"]["background"] not in BACKGROUNDS:
        fail("source.background", entry["source"]["background"], f"is not one of {', '.join(BACKGROUNDS)}")
    splits = entry.get("splits")
    if not isinstance(splits, Mapping) or set(splits) != {"train", "val", "test"}:
        fail("splits", splits, "must be a mapping with exactly the keys train, val, test")
    if splits["val"] != 0:
        fail("splits.val", splits["val"], "must be 0: detection datasets have train and test splits only")
    for split in SPLITS:
        value = splits[split]
        if not (value in ("all", None) or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)):
            fail(f"splits.{split}", value, "is not a valid size; valid: a number of images (0: none), or 'all'")
    seed = entry.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("seed", seed, "must be a non-negative integer")


def prepare_detection_dataset(
    dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, out_dir: str | Path,
    prepared_dirs: Mapping[str, str], log: logging.Logger,
) -> dict[str, Any]:
    """Run the entry's loader, subsample splits to the registry's sizes, write the manifest last."""
    source = entry["source"]
    out_dir, raw_dir = Path(out_dir), Path(raw_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    loaded = DETECTION_LOADERS[source["loader"]](
        source=source, raw_dir=raw_dir, out_dir=out_dir, splits=entry["splits"], seed=entry["seed"],
        prepared_dirs=prepared_dirs, log=log,
    )
    splits = {}
    for split, files in loaded["splits"].items():
        size = entry["splits"].get(split)
        annotations = json.loads(Path(files["annotations"]).read_text())
        if isinstance(size, int) and size < len(annotations["images"]):
            annotations = subsample(annotations, size, entry["seed"])
            files = {**files, "annotations": str(out_dir / f"{split}.json")}
            write_json(files["annotations"], annotations)
        splits[split] = {**files, "n_images": len(annotations["images"]), "n_objects": len(annotations["annotations"])}
        log.info("%s %s: %d images, %d objects", dataset_id, split, splits[split]["n_images"], splits[split]["n_objects"])
    manifest = {
        "format": MANIFEST_FORMAT, "dataset": dataset_id, "categories": loaded["categories"], "masks": loaded["masks"],
        "splits": splits, "provenance": loaded.get("provenance", {}),
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def subsample(annotations: dict[str, Any], n_images: int, seed: int) -> dict[str, Any]:
    """``n_images`` images drawn with ``seed`` (the same ones every time), with their annotations."""
    ids = sorted(image["id"] for image in annotations["images"])
    keep = set(np.random.default_rng(seed).choice(ids, size=n_images, replace=False).tolist())
    return {
        **annotations,
        "images": [image for image in annotations["images"] if image["id"] in keep],
        "annotations": [a for a in annotations["annotations"] if a["image_id"] in keep],
    }


def read_manifest(path: str | Path) -> dict[str, Any]:
    manifest = json.loads(Path(path).read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: detection manifest format {manifest.get('format')}, expected {MANIFEST_FORMAT}; prepare it again")
    return manifest


# --------------------------------------------------------------------------- synthetic (offline demo)


@register_detection_loader("synthetic_canvases", source_keys=(
    "from_dataset", "categories", "canvas_size", "objects_per_image", "object_size", "background"))
def load_synthetic_canvases(*, source, out_dir, splits, seed, prepared_dirs, log, **_) -> dict[str, Any]:
    from bobench.datasets.prepared import load_prepared
    from bobench.detection.synthetic import coco_annotations, make_canvases, write_canvases

    dataset = load_prepared(prepared_dirs[source["from_dataset"]])
    missing = sorted(set(source["categories"]) - set(dataset.class_names))
    if missing:
        raise ValueError(f"source.categories {missing} are not classes of {source['from_dataset']} ({dataset.class_names})")
    class_index = [dataset.class_names.index(name) for name in source["categories"]]
    result = {}
    for offset, split in enumerate(SPLITS):
        if not splits[split]:
            continue
        images, labels = dataset.split(split)
        chosen = np.isin(labels, class_index)
        category = np.array([class_index.index(int(label)) for label in labels[chosen]], dtype=np.int64)
        canvases = make_canvases(
            np.asarray(images)[chosen], category, int(splits[split]), source["canvas_size"],
            tuple(source["objects_per_image"]), tuple(source["object_size"]), source["background"], seed * 1000 + offset,
        )
        write_canvases(canvases, out_dir / "images", f"{split}/")
        annotations = out_dir / f"{split}.json"
        write_json(annotations, coco_annotations(canvases, source["categories"], f"{split}/"))
        result[split] = {"annotations": str(annotations), "images": str(out_dir / "images")}
    return {"splits": result, "categories": list(source["categories"]), "masks": True,
            "provenance": {"from_dataset": source["from_dataset"], "background": source["background"]}}


# --------------------------------------------------------------------------- COCO 2017


@register_detection_loader("coco2017", source_keys=("files", "how_to_get"))
def load_coco2017(*, source, raw_dir, log, **_) -> dict[str, Any]:
    """train2017 → train, val2017 → test (BoB evaluates on val2017)."""
    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    annotations = require_dir(paths["annotations_trainval2017.zip"] / "annotations", "COCO annotations", source["how_to_get"])
    splits = {}
    for split, official in (("train", "train2017"), ("test", "val2017")):
        images = require_dir(paths[f"{official}.zip"] / official, f"COCO {official} images", source["how_to_get"])
        splits[split] = {"annotations": str(annotations / f"instances_{official}.json"), "images": str(images)}
    with open(splits["test"]["annotations"]) as f:
        categories = [c["name"] for c in sorted(json.load(f)["categories"], key=lambda c: c["id"])]
    return {"splits": splits, "categories": categories, "masks": True, "provenance": {"files": provenance}}


# --------------------------------------------------------------------------- Sim10k → Cityscapes


def voc_to_coco(xml_files: list[Path], category: str) -> dict[str, Any]:
    """Pascal-VOC XML (1-based, inclusive pixel corners) → a one-category COCO dict; other objects are dropped."""
    images, annotations = [], []
    for image_id, xml_file in enumerate(sorted(xml_files), start=1):
        root = ET.parse(xml_file).getroot()
        size = root.find("size")
        images.append({"id": image_id, "file_name": root.findtext("filename") or f"{xml_file.stem}.jpg",
                       "width": int(size.findtext("width")), "height": int(size.findtext("height"))})
        for obj in root.iter("object"):
            if obj.findtext("name", "").strip().lower() != category:
                continue
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x1 - 1, y1 - 1, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": category}]}


@register_detection_loader("sim10k", source_keys=("files", "how_to_get", "expect_images"))
def load_sim10k(*, source, raw_dir, out_dir, log, **_) -> dict[str, Any]:
    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    voc = require_dir(paths["repro_10k_annotations.tgz"] / "VOC2012" / "Annotations", "Sim10k annotations", source["how_to_get"])
    images = require_dir(paths["repro_10k_images.tgz"] / "VOC2012" / "JPEGImages", "Sim10k images", source["how_to_get"])
    annotations = voc_to_coco(list(voc.glob("*.xml")), "car")
    if len(annotations["images"]) != source["expect_images"]:
        raise ValueError(f"Sim10k: {len(annotations['images'])} annotation files in {voc}, expected {source['expect_images']}")
    write_json(out_dir / "train.json", annotations)
    return {"splits": {"train": {"annotations": str(out_dir / "train.json"), "images": str(images)}},
            "categories": ["car"], "masks": False, "provenance": {"files": provenance}}


def cityscapes_to_coco(polygon_files: list[Path], image_root: Path, category: str) -> dict[str, Any]:
    """Cityscapes ``*_gtFine_polygons.json`` → COCO instances of one label, visible pixels only.

    Polygons are drawn in file order onto an instance map (later ones occlude
    earlier ones), as cityscapesScripts' ``json2instanceImg`` does; each kept
    object's mask is its remaining pixels, as an RLE. Groups (``cargroup``) are not instances.
    """
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for image_id, polygon_file in enumerate(sorted(polygon_files), start=1):
        content = json.loads(polygon_file.read_text())
        height, width = content["imgHeight"], content["imgWidth"]
        city = polygon_file.parent.name
        name = polygon_file.name.replace("_gtFine_polygons.json", "_leftImg8bit.png")
        images.append({"id": image_id, "file_name": f"{city}/{name}", "width": width, "height": height})
        canvas = Image.new("I", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        wanted = []
        for index, obj in enumerate(content["objects"], start=1):
            # json2instanceImg skips labels with a negative id: "license plate" is the only one, so a car
            # keeps its plate's pixels.
            if obj.get("deleted") or obj["label"] == "license plate":
                continue
            draw.polygon([tuple(p) for p in obj["polygon"]], fill=index)
            if obj["label"] == category:
                wanted.append(index)
        instance_map = np.asarray(canvas)
        for index in wanted:
            mask = np.asfortranarray((instance_map == index).astype(np.uint8))
            if not mask.any():
                continue
            rle = mask_utils.encode(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask_utils.area(rle)), "iscrowd": 0,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            })
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": category}]}


@register_detection_loader("cityscapes_cars", source_keys=("files", "how_to_get", "expect_images"))
def load_cityscapes_cars(*, source, raw_dir, out_dir, log, **_) -> dict[str, Any]:
    paths, provenance = obtain_files(source["files"], raw_dir, log, source["how_to_get"])
    polygons = require_dir(paths["gtFine_trainvaltest.zip"] / "gtFine" / "val", "Cityscapes gtFine val", source["how_to_get"])
    images = require_dir(paths["leftImg8bit_trainvaltest.zip"] / "leftImg8bit" / "val", "Cityscapes leftImg8bit val",
                         source["how_to_get"])
    files = list(polygons.glob("*/*_gtFine_polygons.json"))
    if len(files) != source["expect_images"]:
        raise ValueError(f"Cityscapes val: {len(files)} polygon files in {polygons}, expected {source['expect_images']}")
    annotations = cityscapes_to_coco(files, images, "car")
    write_json(out_dir / "test.json", annotations)
    return {"splits": {"test": {"annotations": str(out_dir / "test.json"), "images": str(images)}},
            "categories": ["car"], "masks": False, "provenance": {"files": provenance}}
