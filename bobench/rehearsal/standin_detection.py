"""Stand-ins of the detection datasets, in their real published layouts, where their real loaders look.

Each maker writes into ``raw_dir`` (``<data_dir>/raw/<id>/``) the archives the registry entry lists, with
the real member paths, file names, annotation formats and image sizes, and leaves ``STANDIN.json``
(:mod:`bobench.rehearsal.manifest`, written last) with its own image counts and the pins of what it
wrote: the stand-in's sha256 where the registry pins one, its md5 where the registry has one (an
``unpinned`` sha256 stays unpinned, so the real check is the one rehearsed); every file's digests are
recorded under ``files``. The real ``prepare_detection_dataset`` then reads them unchanged. The same
``seed`` writes the same bytes (archives with fixed times and owners, gzip streams without name or time).

* ``coco2017``: ``annotations_trainval2017.zip`` (``annotations/instances_{train,val}2017.json`` with
  every one of the 80 categories, their real ids 1…90 with the ten gaps, names and supercategories;
  polygon segmentations, some in two parts, and ``iscrowd`` annotations as uncompressed RLE, boxes and
  mask areas as COCO computes them; plus the captions and person-keypoints files of the same archive),
  ``train2017.zip`` and ``val2017.zip`` (``<split>/<12-digit id>.jpg``, COCO's usual 640-pixel sizes).
  Every category appears ``images_per_class`` times in each split; one image per split has no object.
* ``sim10k``: ``repro_10k_images.tgz`` (``VOC2012/JPEGImages/<7-digit id>.jpg``, 1914 × 1052) and
  ``repro_10k_annotations.tgz`` (``VOC2012/Annotations/<id>.xml``, Pascal VOC, 1-based inclusive
  corners; cars, plus motorbikes and persons the loader drops; one image has no car).
* ``cityscapes_cars``: ``gtFine_trainvaltest.zip`` (``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_
  {polygons.json,color.png,labelIds.png,instanceIds.png}``) and ``leftImg8bit_trainvaltest.zip``
  (``leftImg8bit/<split>/<city>/…_leftImg8bit.png``, 2048 × 1024 RGB PNG); val images in frankfurt,
  lindau and munster, one train (aachen) and one test (berlin) image the loader must ignore. Polygons
  in drawing order: stuff, overlapping cars (one hidden entirely behind a truck), car groups,
  persons, bicycles, licence plates, and the frame's ego vehicle / rectification border / out of roi.

The archive helpers here (deterministic zip / tar / tar.gz, the raw-folder guard) serve the retrieval
stand-ins too.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw

from bobench.rehearsal.images import (
    archive_bytes,
    class_colour,
    encode,
    standin_pixels,
    write_bytes,
)
from bobench.rehearsal.manifest import StandinError, claim_for_standin, write_manifest

# --------------------------------------------------------------------------- shared helpers

#: Marks a raw folder whose stand-in is being written (the name the classification stand-ins use too): a
#: half-written stand-in may be rewritten, a folder holding real data never is.
UNPINNED = "unpinned"
#: Timestamp of every archive member (zip cannot store the epoch): the same bytes on every run.


def begin_standin(raw_dir: Path, outputs: Iterable[str]) -> None:
    """Get ``raw_dir`` ready for a stand-in that writes ``outputs`` (see :func:`claim_for_standin`)."""
    claim_for_standin(raw_dir, outputs)


def finish_standin(raw_dir: Path, dataset_id: str, source_overrides: Mapping[str, Any], **facts: Any) -> Path:
    """Write the manifest (last: it marks the stand-in complete) and drop the in-progress marker."""
    return write_manifest(raw_dir, dataset_id, source_overrides, **facts)


def write_file(raw_dir: Path, name: str, data: bytes) -> dict[str, str]:
    """Write ``raw_dir/name`` atomically; return its sha256 and md5 (the pins a manifest replaces)."""
    write_bytes(raw_dir / name, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def pins_for(spec: Mapping[str, Any], digests: Mapping[str, str]) -> dict[str, str]:
    """The manifest override of one file's pins: the stand-in's sha256 where the registry pins one, its md5
    where the registry has one. An ``unpinned`` sha256 stays unpinned, so that the real code path (sha256
    recorded, the published md5 checked where there is one) is the one rehearsed."""
    return {**({"sha256": digests["sha256"]} if spec.get("sha256", UNPINNED) != UNPINNED else {}),
            **({"md5": digests["md5"]} if "md5" in spec else {})}


def standin_rng(seed: int, dataset_id: str) -> np.random.Generator:
    """The maker's generator: ``seed``, and the dataset's id, so that two datasets do not share pixels."""
    return np.random.default_rng([int(seed), zlib.crc32(dataset_id.encode())])


def entry_files(entry: Mapping[str, Any], expected: Sequence[str], dataset_id: str) -> list[Mapping[str, Any]]:
    """The entry's ``source.files``, checked to be the files this maker writes (it imitates those only)."""
    files = list((entry.get("source") or {}).get("files") or [])
    names = [spec["name"] for spec in files]
    if sorted(names) != sorted(expected):
        raise StandinError(f"{dataset_id}: the registry lists the files {names}; its stand-in writes {list(expected)}")
    return files


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    return encode(Image.fromarray(pixels), "JPEG", quality=quality)


def png(image: Image.Image) -> bytes:
    # Level 1: the same pixels and format, written several times faster than zlib's default.
    return encode(image, "PNG", compress_level=1)


def blend(pixels: np.ndarray, mask: np.ndarray, colour: Sequence[float], weight: float = 0.6) -> None:
    """Tint ``pixels`` (in place) towards ``colour`` where ``mask`` is set: the object shows in the image."""
    pixels[mask] = np.clip((1 - weight) * pixels[mask] + weight * np.asarray(colour, dtype=np.float32), 0, 255).astype(np.uint8)


def polygon_mask(width: int, height: int, polygons: Iterable[Sequence[float]]) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for flat in polygons:
        draw.polygon([(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


# --------------------------------------------------------------------------- COCO 2017

#: The 80 categories of COCO 2017: (id, name, supercategory), ids 1…90 with the ten unused ones left out.
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"), (13, "stop sign", "outdoor"),
    (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"), (17, "cat", "animal"),
    (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"), (21, "cow", "animal"),
    (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"), (25, "giraffe", "animal"),
    (27, "backpack", "accessory"), (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"), (36, "snowboard", "sports"),
    (37, "sports ball", "sports"), (38, "kite", "sports"), (39, "baseball bat", "sports"), (40, "baseball glove", "sports"),
    (41, "skateboard", "sports"), (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"), (65, "bed", "furniture"),
    (67, "dining table", "furniture"), (70, "toilet", "furniture"), (72, "tv", "electronic"), (73, "laptop", "electronic"),
    (74, "mouse", "electronic"), (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"), (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"), (86, "vase", "indoor"),
    (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)
COCO_INFO = {"description": "COCO 2017 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2017,
             "contributor": "COCO Consortium", "date_created": "2017/09/01"}
COCO_LICENSES = [
    {"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution-NonCommercial-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {"url": "http://creativecommons.org/licenses/by-nc-nd/2.0/", "id": 3, "name": "Attribution-NonCommercial-NoDerivs License"},
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
    {"url": "http://flickr.com/commons/usage/", "id": 7, "name": "No known copyright restrictions"},
    {"url": "http://www.usa.gov/copyright.shtml", "id": 8, "name": "United States Government Work"},
]
COCO_KEYPOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
                 [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
#: (width, height) of COCO images: Flickr's 640-pixel longer side at the usual aspect ratios.
COCO_SIZES = ((640, 480), (640, 427), (480, 640), (640, 426), (500, 375), (427, 640), (640, 360), (612, 612),
              (640, 424), (375, 500))
COCO_FILES = ("annotations_trainval2017.zip", "train2017.zip", "val2017.zip")
#: Images per split at least (the rehearsal caps a split at 8: the cap must draw, not take everything).
MIN_IMAGES = 10


def _ellipse_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, width: int,
                     height: int) -> list[float]:
    """A jagged ellipse as a COCO polygon (x1, y1, x2, y2, …; two decimals, inside the image)."""
    n = int(rng.integers(8, 17))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(0.7, 1.0, n)
    xs = np.clip(cx + rx * radius * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + ry * radius * np.sin(angles), 0, height - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's crowd segmentation: run lengths of the column-major mask, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"counts": ([0] if flat[0] else []) + runs, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _coco_split(rng: np.random.Generator, official: str, image_ids: list[int], images_per_class: int,
                annotation_id: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, bytes], int]:
    """One split: (instances, captions, person_keypoints, {member: jpeg}, next annotation id)."""
    from pycocotools import mask as mask_utils

    category_index = {cat_id: i for i, (cat_id, _, _) in enumerate(COCO_CATEGORIES)}
    names = {cat_id: name for cat_id, name, _ in COCO_CATEGORIES}
    wanted = [cat_id for cat_id, _, _ in COCO_CATEGORIES for _ in range(images_per_class)]
    wanted = [int(c) for c in rng.permutation(wanted)]
    groups = []
    while wanted:
        take = int(rng.integers(3, 9))
        groups.append(wanted[:take])
        wanted = wanted[take:]
    while len(groups) < MIN_IMAGES - 1:
        groups.append([int(c) for c in rng.choice([c for c, _, _ in COCO_CATEGORIES], size=int(rng.integers(1, 4)))])
    groups.append([])  # COCO has images without any object (48 in val2017)
    crowd_images = {1, len(groups) // 2}  # crowd annotations on a person and on another category
    if len(image_ids) < len(groups):
        raise ValueError(f"{official}: {len(groups)} images planned but only {len(image_ids)} ids drawn")

    images, annotations, captions, keypoint_annotations, members = [], [], [], [], {}
    caption_id = int(rng.integers(10_000, 800_000))
    for position, (image_id, categories) in enumerate(zip(image_ids, groups)):
        width, height = COCO_SIZES[int(rng.integers(len(COCO_SIZES)))]
        file_name = f"{image_id:012d}.jpg"
        taken = f"2013-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d} {int(rng.integers(0, 24)):02d}:" \
                f"{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}"
        farm, server, photo = int(rng.integers(1, 10)), int(rng.integers(1000, 9999)), int(rng.integers(10**9, 10**10))
        images.append({
            "license": int(rng.integers(1, 9)), "file_name": file_name,
            "coco_url": f"http://images.cocodataset.org/{official}/{file_name}", "height": height, "width": width,
            "date_captured": taken,
            "flickr_url": f"http://farm{farm}.staticflickr.com/{server}/{photo}_{rng.bytes(5).hex()}_z.jpg", "id": image_id,
        })
        pixels = standin_pixels(rng, width, height, category_index[categories[0]] if categories else 0)
        for cat_id in categories:
            rx, ry = rng.uniform(0.06, 0.3) * width, rng.uniform(0.06, 0.3) * height
            cx, cy = rng.uniform(rx, width - rx), rng.uniform(ry, height - ry)
            segmentation = [_ellipse_polygon(rng, cx, cy, rx, ry, width, height)]
            if rng.random() < 0.15 or not annotations:  # an object seen in two parts (occluded in the middle)
                segmentation.append(_ellipse_polygon(rng, min(cx + 1.6 * rx, width - 1), cy, 0.4 * rx, 0.5 * ry, width, height))
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            xs = [v for polygon in segmentation for v in polygon[0::2]]
            ys = [v for polygon in segmentation for v in polygon[1::2]]
            bbox = [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
            annotation = {"segmentation": segmentation, "area": float(mask_utils.area(rle)), "iscrowd": 0,
                          "image_id": image_id, "bbox": bbox, "category_id": cat_id, "id": annotation_id}
            annotation_id += int(rng.integers(1, 40))
            annotations.append(annotation)
            blend(pixels, polygon_mask(width, height, segmentation), class_colour(category_index[cat_id]))
            if cat_id == 1:
                keypoint_annotations.append(_with_keypoints(rng, annotation))
        if position in crowd_images and categories:
            cat_id = 1 if position == 1 else categories[-1]
            mask = polygon_mask(width, height, [
                _ellipse_polygon(rng, rng.uniform(0.2, 0.8) * width, rng.uniform(0.5, 0.8) * height,
                                 rng.uniform(0.05, 0.12) * width, rng.uniform(0.08, 0.2) * height, width, height)
                for _ in range(int(rng.integers(3, 6)))
            ])
            encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            crowd = {"segmentation": _uncompressed_rle(mask), "area": int(mask.sum()), "iscrowd": 1, "image_id": image_id,
                     "bbox": [float(v) for v in mask_utils.toBbox(encoded)], "category_id": cat_id,
                     "id": 900100000000 + image_id}
            annotations.append(crowd)
            blend(pixels, mask, class_colour(category_index[cat_id]))
            if cat_id == 1:
                keypoint_annotations.append({**crowd, "num_keypoints": 0, "keypoints": [0] * 3 * len(COCO_KEYPOINTS)})
        for k in range(5):
            subject = names[categories[k % len(categories)]] if categories else "street"
            captions.append({"image_id": image_id, "id": caption_id,
                             "caption": ["A photo of a {}.", "A {} in the middle of the picture.",
                                         "There is a {} here.", "Someone took a picture of a {}.",
                                         "A close up of a {} on a plain background."][k].format(subject)})
            caption_id += int(rng.integers(1, 20))
        members[f"{official}/{file_name}"] = jpeg(pixels)

    categories = [{"supercategory": sup, "id": cat_id, "name": name} for cat_id, name, sup in COCO_CATEGORIES]
    person = {"supercategory": "person", "id": 1, "name": "person", "keypoints": COCO_KEYPOINTS, "skeleton": COCO_SKELETON}
    head = {"info": COCO_INFO, "licenses": COCO_LICENSES, "images": images}
    return ({**head, "annotations": annotations, "categories": categories},
            {**head, "annotations": captions},
            {**head, "annotations": keypoint_annotations, "categories": [person]},
            members, annotation_id)


def _with_keypoints(rng: np.random.Generator, annotation: dict[str, Any]) -> dict[str, Any]:
    """A person annotation as in person_keypoints_*.json: 17 (x, y, v) inside its box, some not labelled."""
    x, y, w, h = annotation["bbox"]
    points = []
    for _ in COCO_KEYPOINTS:
        visibility = int(rng.choice([0, 1, 2], p=[0.3, 0.2, 0.5]))
        points += [0, 0, 0] if visibility == 0 else [int(x + rng.uniform(0, w)), int(y + rng.uniform(0, h)), visibility]
    return {**annotation, "num_keypoints": sum(1 for v in points[2::3] if v), "keypoints": points}


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def make_coco2017(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    files = entry_files(entry, COCO_FILES, dataset_id)
    begin_standin(raw_dir, COCO_FILES)
    per_class = max(1, int(images_per_class))
    # Unique image ids in COCO's range, split between train2017 and val2017.
    ids = [int(i) for i in rng.choice(np.arange(1, 581930), size=4 * (80 * per_class // 3 + MIN_IMAGES), replace=False)]
    splits, annotation_id, counts = {}, int(rng.integers(1, 1000)), {}
    for k, official in enumerate(("train2017", "val2017")):
        half = ids[k * len(ids) // 2: (k + 1) * len(ids) // 2]
        splits[official] = _coco_split(rng, official, half, per_class, annotation_id)
        annotation_id = splits[official][4]
        instances = splits[official][0]
        counts[official] = {
            "images": len(instances["images"]), "objects": len(instances["annotations"]),
            "crowd": sum(a["iscrowd"] for a in instances["annotations"]),
            "categories_present": len({a["category_id"] for a in instances["annotations"]}),
        }
    annotation_members = {}
    for kind, index in (("captions", 1), ("instances", 0), ("person_keypoints", 2)):
        for official in ("train2017", "val2017"):
            annotation_members[f"annotations/{kind}_{official}.json"] = _json_bytes(splits[official][index])
    contents = {"annotations_trainval2017.zip": annotation_members,
                "train2017.zip": splits["train2017"][3], "val2017.zip": splits["val2017"][3]}
    digests = {name: write_file(raw_dir, name, archive_bytes(name, contents[name])) for name in COCO_FILES}
    return finish_standin(
        raw_dir, dataset_id, {"files": [pins_for(spec, digests[spec["name"]]) for spec in files]}, files=digests,
        counts=counts, categories=len(COCO_CATEGORIES), seed=seed, images_per_class=per_class,
        layout="annotations_trainval2017.zip: annotations/{instances,captions,person_keypoints}_{train,val}2017.json; "
               "train2017.zip, val2017.zip: <split>/<12-digit id>.jpg",
    )


# --------------------------------------------------------------------------- Sim10k

SIM10K_FILES = ("repro_10k_images.tgz", "repro_10k_annotations.tgz")
SIM10K_SIZE = (1914, 1052)


def _voc_xml(file_name: str, width: int, height: int, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> bytes:
    lines = ["<annotation>", "\t<folder>VOC2012</folder>", f"\t<filename>{escape(file_name)}</filename>",
             "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>", "\t\t<depth>3</depth>",
             "\t</size>", "\t<segmented>0</segmented>"]
    for name, (x1, y1, x2, y2), truncated in objects:
        lines += ["\t<object>", f"\t\t<name>{name}</name>", "\t\t<pose>Unspecified</pose>",
                  f"\t\t<truncated>{truncated}</truncated>", "\t\t<difficult>0</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{x1}</xmin>", f"\t\t\t<ymin>{y1}</ymin>", f"\t\t\t<xmax>{x2}</xmax>",
                  f"\t\t\t<ymax>{y2}</ymax>", "\t\t</bndbox>", "\t</object>"]
    return ("\n".join(lines + ["</annotation>"]) + "\n").encode()


def make_sim10k(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    files = entry_files(entry, SIM10K_FILES, dataset_id)
    begin_standin(raw_dir, SIM10K_FILES)
    n_images = max(MIN_IMAGES, 5 * int(images_per_class))
    width, height = SIM10K_SIZE
    ids = sorted(int(i) for i in rng.choice(np.arange(3384000, 3420000), size=n_images, replace=False))
    images, annotations, n_cars = {}, {}, 0
    colours = {"car": class_colour(0), "motorbike": class_colour(1), "person": class_colour(2)}
    for k, image_id in enumerate(ids):
        pixels = standin_pixels(rng, width, height, 0)
        objects = []
        kinds = ["car"] * int(rng.integers(1, 9)) + ["motorbike"] * int(rng.random() < 0.3) + ["person"] * int(rng.integers(0, 3))
        if k == n_images // 2:
            kinds = ["person", "motorbike"]  # a scene without a car: the car-only COCO file keeps it, empty
        for kind in kinds:
            w = int(rng.uniform(40, 420)) if kind == "car" else int(rng.uniform(20, 90))
            h = int(w * (rng.uniform(0.5, 0.8) if kind == "car" else rng.uniform(1.8, 2.6)))
            x1 = int(rng.integers(1, width - w))
            y1 = int(np.clip(rng.uniform(0.45, 0.7) * height - h / 2, 1, height - h))
            x2, y2 = x1 + w - 1, y1 + h - 1  # VOC: 1-based, inclusive
            objects.append((kind, (x1, y1, x2, y2), int(x1 == 1 or x2 == width)))
            box = np.zeros((height, width), dtype=bool)
            box[y1 - 1:y2, x1 - 1:x2] = True
            blend(pixels, box, colours[kind])
            n_cars += kind == "car"
        name = f"{image_id}"
        images[f"VOC2012/JPEGImages/{name}.jpg"] = jpeg(pixels)
        annotations[f"VOC2012/Annotations/{name}.xml"] = _voc_xml(f"{name}.jpg", width, height, objects)
    contents = {"repro_10k_images.tgz": images, "repro_10k_annotations.tgz": annotations}
    digests = {name: write_file(raw_dir, name, archive_bytes(name, contents[name])) for name in SIM10K_FILES}
    overrides: dict[str, Any] = {"files": [pins_for(spec, digests[spec["name"]]) for spec in files]}
    overrides.update(_expected_images(entry, n_images))
    return finish_standin(
        raw_dir, dataset_id, overrides, files=digests, counts={"images": n_images, "cars": n_cars},
        image_size=[width, height], seed=seed, images_per_class=int(images_per_class),
        layout="repro_10k_images.tgz: VOC2012/JPEGImages/<id>.jpg; repro_10k_annotations.tgz: VOC2012/Annotations/<id>.xml",
    )


def _expected_images(entry: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """The layout check's count, under the key the registry entry uses for it."""
    source = entry.get("source") or {}
    if "expect" in source:
        return {"expect": {**(source["expect"] or {}), "images": n_images}}
    return {"expect_images": n_images}


# --------------------------------------------------------------------------- Cityscapes

CITYSCAPES_FILES = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")
CITYSCAPES_SIZE = (2048, 1024)
#: The labels the stand-in draws: name → (id, colour, has instances), as cityscapesScripts' labels.py.
CITYSCAPES_LABELS: dict[str, tuple[int, tuple[int, int, int], bool]] = {
    "unlabeled": (0, (0, 0, 0), False), "ego vehicle": (1, (0, 0, 0), False),
    "rectification border": (2, (0, 0, 0), False), "out of roi": (3, (0, 0, 0), False),
    "road": (7, (128, 64, 128), False), "sidewalk": (8, (244, 35, 232), False), "building": (11, (70, 70, 70), False),
    "pole": (17, (153, 153, 153), False), "traffic sign": (20, (220, 220, 0), False),
    "vegetation": (21, (107, 142, 35), False), "sky": (23, (70, 130, 180), False), "person": (24, (220, 20, 60), True),
    "car": (26, (0, 0, 142), True), "truck": (27, (0, 0, 70), True), "bicycle": (33, (119, 11, 32), True),
    "license plate": (-1, (0, 0, 142), False),
}
#: The val split's three cities; one train and one test city for the files the loader must not read.
CITYSCAPES_VAL_CITIES = ("frankfurt", "lindau", "munster")


def _box(x1: float, y1: float, x2: float, y2: float) -> list[list[int]]:
    return [[int(x1), int(y1)], [int(x2), int(y1)], [int(x2), int(y2)], [int(x1), int(y2)]]


def _car_polygon(x: float, y: float, w: float, h: float) -> list[list[int]]:
    """A car seen from behind or the side: body with a cabin on top (bottom-left corner at x, y)."""
    points = [(x, y), (x, y - 0.55 * h), (x + 0.18 * w, y - 0.6 * h), (x + 0.3 * w, y - h), (x + 0.72 * w, y - h),
              (x + 0.85 * w, y - 0.6 * h), (x + w, y - 0.55 * h), (x + w, y)]
    return [[int(round(px)), int(round(py))] for px, py in points]


def _cityscapes_objects(rng: np.random.Generator, hide_a_car: bool) -> list[dict[str, Any]]:
    """Objects of one frame in drawing order (later ones occlude earlier ones), integer pixel corners."""
    W, H = CITYSCAPES_SIZE
    horizon = int(rng.integers(380, 470))
    objects = [
        {"label": "sky", "polygon": _box(0, 0, W - 1, horizon)},
        {"label": "building", "polygon": [[0, horizon + 40], [0, 60], [int(W * 0.3), 120], [int(W * 0.35), horizon + 10]]},
        {"label": "building", "polygon": [[W - 1, horizon + 40], [W - 1, 40], [int(W * 0.7), 150], [int(W * 0.62), horizon + 10]]},
        {"label": "vegetation", "polygon": [[int(W * 0.35), horizon + 10], [int(W * 0.4), horizon - 120],
                                           [int(W * 0.5), horizon - 150], [int(W * 0.6), horizon + 10]]},
        {"label": "road", "polygon": [[0, H - 1], [0, horizon + 120], [int(W * 0.45), horizon + 5],
                                      [int(W * 0.55), horizon + 5], [W - 1, horizon + 120], [W - 1, H - 1]]},
        {"label": "sidewalk", "polygon": [[0, horizon + 200], [0, horizon + 90], [int(W * 0.4), horizon + 10],
                                          [int(W * 0.42), horizon + 14]]},
        {"label": "pole", "polygon": _box(W * 0.8, 150, W * 0.8 + 14, horizon + 160)},
        {"label": "traffic sign", "polygon": _box(W * 0.8 - 30, 140, W * 0.8 + 44, 210)},
    ]
    cars = []
    for _ in range(int(rng.integers(3, 8))):
        base = rng.uniform(horizon + 60, H - 180)
        scale = (base - horizon) / (H - horizon)
        w = rng.uniform(250, 520) * scale + 40
        x = rng.uniform(0, W - w - 1)
        cars.append({"label": "car", "polygon": _car_polygon(x, base, w, 0.6 * w)})
    cars.sort(key=lambda obj: max(p[1] for p in obj["polygon"]))  # far first: nearer cars occlude them
    objects += cars
    if hide_a_car:  # a small car wholly behind a truck drawn later: no visible pixel, no COCO instance
        objects.append({"label": "car", "polygon": _car_polygon(W * 0.5, horizon + 150, 120, 72)})
        objects.append({"label": "truck", "polygon": _box(W * 0.5 - 60, horizon - 120, W * 0.5 + 200, horizon + 190)})
    if rng.random() < 0.7:
        objects.append({"label": "cargroup", "polygon": _box(W * 0.44, horizon - 20, W * 0.56, horizon + 25)})
    for _ in range(int(rng.integers(0, 3))):
        px = rng.uniform(50, W - 120)
        objects.append({"label": "person", "polygon": _box(px, horizon + 20, px + 60, horizon + 220)})
    if rng.random() < 0.5:
        bx = rng.uniform(50, W - 250)
        objects.append({"label": "bicycle", "polygon": _box(bx, horizon + 120, bx + 160, horizon + 230)})
    for car in cars[-2:]:  # licence plates on the nearest cars
        xs = [p[0] for p in car["polygon"]]
        ys = [p[1] for p in car["polygon"]]
        cx, bottom = (min(xs) + max(xs)) / 2, max(ys)
        width = (max(xs) - min(xs)) * 0.18
        objects.append({"label": "license plate", "polygon": _box(cx - width / 2, bottom - 0.22 * (bottom - min(ys)),
                                                                  cx + width / 2, bottom - 0.12 * (bottom - min(ys)))})
    objects += [
        {"label": "ego vehicle", "polygon": [[0, H - 1], [0, H - 90], [int(W * 0.3), H - 120], [int(W * 0.7), H - 120],
                                             [W - 1, H - 90], [W - 1, H - 1]]},
        {"label": "rectification border", "polygon": _box(0, 0, 6, H - 1)},
        {"label": "out of roi", "polygon": _box(0, H - 4, W - 1, H - 1)},
    ]
    return objects


def _cityscapes_label_images(objects: list[dict[str, Any]]) -> tuple[Image.Image, Image.Image, Image.Image]:
    """gtFine's color (RGBA), labelIds (8-bit) and instanceIds (16-bit) images, drawn as cityscapesScripts'
    json2labelImg / json2instanceImg do (file order; groups get the class id; negative ids not drawn)."""
    size = CITYSCAPES_SIZE
    color, label_ids, instance_ids = Image.new("RGBA", size, (0, 0, 0, 255)), Image.new("L", size, 0), Image.new("I", size, 0)
    draws = ImageDraw.Draw(color), ImageDraw.Draw(label_ids), ImageDraw.Draw(instance_ids)
    seen: dict[str, int] = {}
    for obj in objects:
        label, group = obj["label"], False
        if label not in CITYSCAPES_LABELS and label.endswith("group"):
            label, group = label[: -len("group")], True
        label_id, colour, has_instances = CITYSCAPES_LABELS[label]
        if label_id < 0:
            continue
        instance = label_id
        if has_instances and not group:
            instance = label_id * 1000 + seen.get(label, 0)
            seen[label] = seen.get(label, 0) + 1
        polygon = [tuple(p) for p in obj["polygon"]]
        draws[0].polygon(polygon, fill=(*colour, 255))
        draws[1].polygon(polygon, fill=label_id)
        draws[2].polygon(polygon, fill=instance)
    return color, label_ids, instance_ids


def _cityscapes_frame(rng: np.random.Generator, hide_a_car: bool) -> tuple[dict[str, bytes], bytes, int]:
    """(gtFine files by suffix, leftImg8bit PNG, visible cars) of one frame."""
    W, H = CITYSCAPES_SIZE
    objects = _cityscapes_objects(rng, hide_a_car)
    color, label_ids, instance_ids = _cityscapes_label_images(objects)
    pixels = standin_pixels(rng, W, H, 26)
    tint = np.asarray(color.convert("RGB"), dtype=np.float32)
    pixels = np.clip(0.5 * pixels + 0.5 * tint, 0, 255).astype(np.uint8)
    polygons = {"imgHeight": H, "imgWidth": W, "objects": objects}
    cars = len({int(v) for v in np.unique(np.asarray(instance_ids)) if 26000 <= v < 27000})
    gt = {"gtFine_polygons.json": json.dumps(polygons, indent=4).encode(), "gtFine_color.png": png(color),
          "gtFine_labelIds.png": png(label_ids), "gtFine_instanceIds.png": png(instance_ids.convert("I;16"))}
    return gt, png(Image.fromarray(pixels)), cars


_CITYSCAPES_README = (b"Stand-in of the Cityscapes dataset (bobench rehearsal): the real archives' layout, with seeded "
                      b"pixels and polygons. See https://www.cityscapes-dataset.com for the real data and its licence.\n")


def make_cityscapes_cars(dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int,
                         images_per_class: int) -> Path:
    rng = standin_rng(seed, dataset_id)
    files = entry_files(entry, CITYSCAPES_FILES, dataset_id)
    begin_standin(raw_dir, CITYSCAPES_FILES)
    n_val = max(MIN_IMAGES, 5 * int(images_per_class))
    frames = [("train", "aachen", "aachen_000000_000019"), ("test", "berlin", "berlin_000000_000019")]
    counters = {city: 0 for city in CITYSCAPES_VAL_CITIES}
    frankfurt_frames = rng.choice(np.arange(0, 80000), size=n_val, replace=False)
    for k in range(n_val):
        city = CITYSCAPES_VAL_CITIES[k % 3]
        if city == "frankfurt":  # frankfurt's val frames: two sequences, scattered frame numbers
            name = f"frankfurt_{counters[city] % 2:06d}_{int(frankfurt_frames[k]):06d}"
        else:  # lindau and munster: one frame (000019) per sequence
            name = f"{city}_{counters[city]:06d}_000019"
        counters[city] += 1
        frames.append(("val", city, name))
    gt_members, image_members = {"README": _CITYSCAPES_README, "license.txt": _CITYSCAPES_README}, {
        "README": _CITYSCAPES_README, "license.txt": _CITYSCAPES_README}
    visible_cars, val_index = 0, 0
    for split, city, name in sorted(frames):
        hide = split == "val" and val_index == 1
        gt, image, cars = _cityscapes_frame(rng, hide)
        if split == "val":
            visible_cars += cars
            val_index += 1
        for suffix, data in gt.items():
            gt_members[f"gtFine/{split}/{city}/{name}_{suffix}"] = data
        image_members[f"leftImg8bit/{split}/{city}/{name}_leftImg8bit.png"] = image
    contents = {"gtFine_trainvaltest.zip": gt_members, "leftImg8bit_trainvaltest.zip": image_members}
    digests = {name: write_file(raw_dir, name, archive_bytes(name, contents[name])) for name in CITYSCAPES_FILES}
    overrides: dict[str, Any] = {"files": [pins_for(spec, digests[spec["name"]]) for spec in files]}
    overrides.update(_expected_images(entry, n_val))
    return finish_standin(
        raw_dir, dataset_id, overrides, files=digests,
        counts={"val_images": n_val, "val_visible_cars": visible_cars, "train_images": 1, "test_images": 1},
        image_size=list(CITYSCAPES_SIZE), seed=seed, images_per_class=int(images_per_class),
        layout="gtFine_trainvaltest.zip: gtFine/<split>/<city>/<frame>_gtFine_{polygons.json,color.png,labelIds.png,"
               "instanceIds.png}; leftImg8bit_trainvaltest.zip: leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png",
    )


DETECTION_MAKERS = {"coco2017": make_coco2017, "sim10k": make_sim10k, "cityscapes_cars": make_cityscapes_cars}
