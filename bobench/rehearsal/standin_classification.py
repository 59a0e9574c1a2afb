"""Stand-ins for BoB's classification and OOD-classification datasets, in their real published layouts.

Each maker writes, under the dataset's raw folder (``<data_dir>/raw/<id>/``), what the real download or
manual copy would leave there: the same archive names, inner paths, file names, label and annotation
files and image formats, at realistic image sizes, with smooth seeded stand-in pixels
(:mod:`bobench.rehearsal.images`). The real loader (:mod:`bobench.datasets.paper_sources`) then reads
them unchanged; ``STANDIN.json`` (written last) carries the only registry values a stand-in cannot
honour: the checksums of the real files and the image counts of a layout check.

Every real class is written (ImageNet's 1000 wnids, the 200 of ImageNet-A/R, CIFAR-100's 100, ...),
``images_per_class`` images per class in every official split that has the class, or more where a pool
must hold enough images for the rehearsal's capped splits (:data:`MIN_POOL`). The same ``seed`` writes
byte-identical files: archives carry fixed timestamps, MAT files a fixed header, gzip streams no name.

Checksums: a file whose sha256 the registry pins gets the stand-in's sha256 (and its md5 where the
registry has one); a file the registry leaves ``unpinned`` stays unpinned and gets only the stand-in's
md5 where the registry has one, so the real code path (sha256 recorded, published md5 checked) is the
one rehearsed. Every file's sha256 and md5 are recorded in the manifest's ``files`` facts either way.

ImageNet: torchvision's ImageNet parser (which the loader runs on the three ILSVRC2012 archives) checks
them against md5 sums hard-coded in ``torchvision.datasets.imagenet.ARCHIVE_META``, which no stand-in
can match. :func:`make_imagenet` therefore also unpacks its archives with torchvision's own parse
functions (only that md5 check suppressed, for the duration of the call) into ``train/``, ``val/`` and
``meta.bin``, exactly as the parser leaves them; the loader then takes its "already unpacked" branch and
still verifies the archives against the manifest's pins. The 1%/10% subsets read those unpacked class
folders (``../imagenet/train``), so their stand-ins need ImageNet's stand-in first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import pickle
import re
import shutil
import zlib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bobench.datasets.paper_sources import CHEXPERT_FINDINGS, imagenet_synsets
from bobench.rehearsal.images import (
    archive_bytes,
    encode,
    standin_image,
    standin_pixels,
    write_bytes,
)
from bobench.rehearsal.manifest import (
    MANIFEST_NAME,
    StandinError,
    claim_for_standin,
    read_manifest,
    write_manifest,
)

#: Smallest pool an official split (or a dataset without one) gets, whatever ``images_per_class``: the
#: rehearsal caps every split at 8 images, and a pool that test, val and train are all carved from must
#: then hold 8 + 8 + 8.
MIN_POOL = 24
#: The 116-byte text header of every MAT file written here (scipy stamps the current time).
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Sun Jan  1 00:00:00 2012"
_UNPINNED = "unpinned"


# --------------------------------------------------------------------------- shared helpers


def _rng(seed: int, dataset_id: str, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(dataset_id.encode()), *stream])


def _per_class(images_per_class: int, num_classes: int, pool_min: int = 0) -> int:
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 1:
        raise ValueError(f"images_per_class must be a positive integer, got {images_per_class!r}")
    return max(images_per_class, math.ceil(pool_min / num_classes))


def _between(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))


def _jpeg(rng: np.random.Generator, width: int, height: int, class_index: int, mode: str = "RGB", quality: int = 85) -> bytes:
    return encode(standin_image(rng, width, height, class_index, mode), "JPEG", quality=quality)


def _png(rng: np.random.Generator, width: int, height: int, class_index: int, mode: str = "RGB") -> bytes:
    return encode(standin_image(rng, width, height, class_index, mode), "PNG")


def mat_bytes(variables: Mapping[str, Any]) -> bytes:
    """A MATLAB 5 file (what the real .mat files are) with a fixed header instead of scipy's timestamp."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, dict(variables), format="5", oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116)
    return bytes(data)


def _digests(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(), "bytes": len(data)}


class _Writer:
    """One stand-in being written into ``raw_dir``: refuses real data, clears an earlier stand-in's
    leftovers (extracted ``.d`` folders, hash stamps), records every top-level file's digests."""

    def __init__(self, dataset_id: str, raw_dir: str | Path, targets: Sequence[str]):
        self.dataset_id, self.raw_dir = dataset_id, Path(raw_dir)
        self.files: dict[str, dict[str, Any]] = {}
        claim_for_standin(self.raw_dir, targets)

    def file(self, name: str, data: bytes) -> None:
        write_bytes(self.raw_dir / name, data)
        self.files[name] = _digests(data)

    def archive(self, name: str, members: Mapping[str, bytes], *, folders: bool = True) -> None:
        self.file(name, archive_bytes(name, members, folders=folders))

    def file_overrides(self, entry: Mapping[str, Any]) -> list[dict[str, str]]:
        """``source.files`` replacements: sha256 where pinned, md5 where the registry has one."""
        out = []
        for spec in entry["source"].get("files") or []:
            if spec["name"] not in self.files:
                raise StandinError(f"{self.dataset_id}: the registry lists {spec['name']}, which this stand-in does not write")
            digest, item = self.files[spec["name"]], {}
            if spec.get("sha256", _UNPINNED) != _UNPINNED:
                item["sha256"] = digest["sha256"]
            if "md5" in spec:
                item["md5"] = digest["md5"]
            out.append(item)
        return out

    def finish(self, overrides: Mapping[str, Any], *, seed: int, images_per_class: int, counts: Mapping[str, int],
               layout: str, **facts: Any) -> Path:
        path = write_manifest(
            self.raw_dir, self.dataset_id, overrides, seed=int(seed), images_per_class=int(images_per_class),
            counts=dict(counts), layout=layout, files=self.files, **facts,
        )
        return path


def _expect(entry: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    """The ``expect`` replacement (only where the registry has a layout check)."""
    expect = entry["source"].get("expect")
    return {} if expect is None else {"expect": {split: int(counts[split]) for split in expect}}


def _require_folder(entry: Mapping[str, Any], split: str, real: str) -> None:
    """The stand-in writes the real layout; a registry pointing elsewhere is the registry's bug, said so."""
    folder = (entry["source"].get("folders") or {}).get(split)
    if folder != real:
        raise StandinError(
            f"the registry reads split {split!r} from {folder!r}, but the real archive unpacks to {real!r}"
        )


def _timm_list(name: str) -> list[str]:
    return resources.files("timm.data._info").joinpath(name).read_text().split()


def _timm_table(name: str) -> dict[str, str]:
    rows = resources.files("timm.data._info").joinpath(name).read_text().splitlines()
    return dict(row.split("\t", 1) for row in rows if "\t" in row)


def _readme(title: str) -> bytes:
    return (f"{title}\n\nStand-in written by bobench's rehearsal: the real layout and file names, synthetic pixels.\n"
            "Not the real data; results on it mean nothing.\n").encode()


# --------------------------------------------------------------------------- class-folder archives


def _class_folder_archive(
    dataset_id: str, entry: Mapping[str, Any], raw_dir: Path, *, seed: int, images_per_class: int,
    archive: str, top: str, split: str, classes: Sequence[str],
    image: Callable[[np.random.Generator, int, int], tuple[str, bytes]],
    extra: Callable[[dict[str, list[str]]], dict[str, bytes]] | None = None, pool_min: int = 0, layout: str,
) -> Path:
    """``<archive>`` holding ``<top>/<class>/<file>`` for every class (plus ``extra`` files), read by the
    ``image_folder`` loader from ``<archive>.d/<top>``. ``image(rng, class_index, k)`` gives a file name and
    its bytes."""
    _require_folder(entry, split, f"{archive}.d/{top}")
    writer = _Writer(dataset_id, raw_dir, [archive])
    rng = _rng(seed, dataset_id)
    n = _per_class(images_per_class, len(classes), pool_min)
    members: dict[str, bytes] = {}
    listed: dict[str, list[str]] = {}
    for c, name in enumerate(classes):
        for k in range(n):
            filename, data = image(rng, c, k)
            members[f"{top}/{name}/{filename}"] = data
            listed.setdefault(name, []).append(filename)
    if extra is not None:
        members.update({f"{top}/{path}": data for path, data in extra(listed).items()})
    writer.archive(archive, members)
    counts = {split: n * len(classes)}
    return writer.finish(
        {"files": writer.file_overrides(entry), **_expect(entry, counts)},
        seed=seed, images_per_class=images_per_class, counts=counts, layout=layout,
        classes=len(classes), images_per_class_written=n,
    )


EUROSAT_CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                   "Pasture", "PermanentCrop", "Residential", "River", "SeaLake")


def make_eurosat(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """EuroSAT.zip → ``2750/<Class>/<Class>_<i>.jpg``: 64x64 RGB JPEGs, 10 classes, no official split."""

    def image(rng, c, k):
        return f"{EUROSAT_CLASSES[c]}_{k + 1}.jpg", _jpeg(rng, 64, 64, c, quality=90)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="EuroSAT.zip",
        top="2750", split="all", classes=EUROSAT_CLASSES, image=image, pool_min=MIN_POOL,
        layout="EuroSAT.zip: 2750/<class>/<class>_<i>.jpg, 64x64 RGB JPEG",
    )


VISDA_CLASSES = ("aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person", "plant",
                 "skateboard", "train", "truck")


def _image_list(listed: dict[str, list[str]]) -> dict[str, bytes]:
    lines = [f"{name}/{filename} {c}\n" for c, name in enumerate(VISDA_CLASSES) for filename in listed[name]]
    return {"image_list.txt": "".join(lines).encode()}


def make_visda2017_synthetic(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int,
                             images_per_class: int) -> Path:
    """train.tar → ``train/<class>/src_<1|2>_<model set>_<model hash>__<yaw>_<light>_150.png`` (384x216 PNG
    renderings) and ``train/image_list.txt``; 12 classes, no official split."""
    # ShapeNet-style model-set ids per class (the stand-in's own), then a model hash and the render's angles.
    model_sets = [f"0{_rng(seed, dataset_id, 1, c).integers(2_000_000, 5_000_000):07d}" for c in range(len(VISDA_CLASSES))]

    def image(rng, c, k):
        model = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))
        yaw, light = _between(rng, 0, 359), _between(rng, 0, 2000)
        name = f"src_{1 + k % 2}_{model_sets[c]}_{model}__{yaw}_{light}_150.png"
        return name, _png(rng, 384, 216, c)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="train.tar",
        top="train", split="all", classes=VISDA_CLASSES, image=image, extra=_image_list, pool_min=MIN_POOL,
        layout="train.tar: train/<class>/src_*.png (384x216 PNG) + train/image_list.txt",
    )


def make_visda2017_real(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int,
                        images_per_class: int) -> Path:
    """validation.tar → ``validation/<class>/<class>_<object id>.jpg`` (COCO crops, sizes vary) and
    ``validation/image_list.txt``; the 12 classes of the synthetic domain."""

    def image(rng, c, k):
        width, height = _between(rng, 80, 560), _between(rng, 80, 480)
        return f"{VISDA_CLASSES[c]}_{_between(rng, 100_000, 1_400_000)}.jpg", _jpeg(rng, width, height, c)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="validation.tar",
        top="validation", split="test", classes=VISDA_CLASSES, image=image, extra=_image_list,
        layout="validation.tar: validation/<class>/<class>_<id>.jpg (80-560 px JPEG) + validation/image_list.txt",
    )


def make_imagenet_a(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """imagenet-a.tar → ``imagenet-a/<wnid>/<score>_<label> _ <label>_<confidence>.jpg`` for its 200 wnids
    (timm's ``imagenet_a_synsets.txt``) and ``imagenet-a/README.txt``."""
    lemmas = _timm_table("imagenet_synset_to_lemma.txt")
    wnids = _timm_list("imagenet_a_synsets.txt")

    def image(rng, c, k):
        label = lemmas.get(wnids[c], wnids[c]).split(",")[0].replace("/", " ")
        name = f"{rng.random() * 0.01:.6f}_{label} _ {label}_{rng.random():.6f}.jpg"
        return name, _jpeg(rng, _between(rng, 300, 640), _between(rng, 240, 560), c)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="imagenet-a.tar",
        top="imagenet-a", split="test", classes=wnids, image=image,
        extra=lambda _: {"README.txt": _readme("ImageNet-A")},
        layout="imagenet-a.tar: imagenet-a/<wnid>/*.jpg (200 wnids, 300-640 px JPEG) + README.txt",
    )


IMAGENET_R_RENDITIONS = ("art", "cartoon", "deviantart", "embroidery", "graffiti", "graphic", "misc", "origami",
                         "painting", "sculpture", "sketch", "sticker", "tattoo", "toy", "videogame")


def make_imagenet_r(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """imagenet-r.tar → ``imagenet-r/<wnid>/<rendition>_<k>.jpg`` for its 200 wnids (timm's
    ``imagenet_r_synsets.txt``) and ``imagenet-r/README.txt``."""
    wnids = _timm_list("imagenet_r_synsets.txt")

    def image(rng, c, k):
        rendition = IMAGENET_R_RENDITIONS[int(rng.integers(len(IMAGENET_R_RENDITIONS)))]
        return f"{rendition}_{k}.jpg", _jpeg(rng, _between(rng, 250, 600), _between(rng, 250, 600), c)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="imagenet-r.tar",
        top="imagenet-r", split="test", classes=wnids, image=image,
        extra=lambda _: {"README.txt": _readme("ImageNet-R")},
        layout="imagenet-r.tar: imagenet-r/<wnid>/<rendition>_<k>.jpg (200 wnids, 250-600 px JPEG) + README.txt",
    )


def make_imagenet_sketch(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int,
                         images_per_class: int) -> Path:
    """ImageNet-Sketch.zip → ``sketch/<wnid>/sketch_<k>.JPEG``: black-and-white JPEGs (grey-scale files and
    RGB files holding grey pixels, as in the real set), sizes vary, all 1000 ImageNet wnids."""
    wnids = imagenet_synsets()

    def image(rng, c, k):
        width, height = _between(rng, 200, 500), _between(rng, 200, 500)
        pixels = standin_image(rng, width, height, c, "L")
        picture = pixels if (c + k) % 2 else pixels.convert("RGB")
        return f"sketch_{k}.JPEG", encode(picture, "JPEG", quality=80)

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class, archive="ImageNet-Sketch.zip",
        top="sketch", split="test", classes=wnids, image=image,
        layout="ImageNet-Sketch.zip: sketch/<wnid>/sketch_<k>.JPEG (1000 wnids, 200-500 px grey JPEG)",
    )


def make_imagenet_v2(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """imagenetv2-matched-frequency.tar.gz → ``imagenetv2-matched-frequency-format-val/<0..999>/<sha1>.jpeg``:
    class folders numbered by ImageNet class index (the loader names them by wnid)."""
    classes = [str(i) for i in range(1000)]

    def image(rng, c, k):
        data = _jpeg(rng, *((500, 375), (375, 500), (500, 333), (400, 400))[int(rng.integers(4))], c, quality=80)
        return f"{hashlib.sha1(data).hexdigest()}.jpeg", data

    return _class_folder_archive(
        dataset_id, entry, Path(raw_dir), seed=seed, images_per_class=images_per_class,
        archive="imagenetv2-matched-frequency.tar.gz", top="imagenetv2-matched-frequency-format-val", split="test",
        classes=classes, image=image,
        layout="imagenetv2-matched-frequency.tar.gz: imagenetv2-matched-frequency-format-val/<0..999>/<sha1>.jpeg "
               "(~500x375 JPEG)",
    )


# --------------------------------------------------------------------------- ImageNet (ILSVRC2012)

IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")
#: What torchvision's parser leaves next to the archives.
IMAGENET_UNPACKED = ("train", "val", "meta.bin")
#: Quirks of the real training set (TensorFlow's build_imagenet_data.py lists them): a PNG named .JPEG
#: and CMYK JPEGs. The stand-in has them too (first image of the class), so the decoding path meets them.
IMAGENET_PNG = "n02105855_2933.JPEG"
IMAGENET_CMYK = ("n01739381_1309.JPEG", "n02077923_14822.JPEG")
#: A few of the many grey-scale training JPEGs (stand-in choice of classes).
IMAGENET_GREY_CLASSES = (0, 500)
_IMAGENET_SIZES = ((500, 375), (500, 333), (375, 500), (500, 500), (333, 500), (500, 400), (400, 500), (640, 480))
#: The devkit's meta.mat has 1860 synsets: the 1000 leaves (ILSVRC2012_ID 1..1000) and 860 inner nodes.
_IMAGENET_INNER = 860


def _imagenet_devkit(rng: np.random.Generator, wnids: list[str], val_labels: np.ndarray, per_class: int) -> bytes:
    """ILSVRC2012_devkit_t12.tar.gz: data/meta.mat (synsets struct array) and the validation ground truth
    (one ILSVRC2012_ID per line, in validation-file order), as torchvision's parse_devkit_archive reads them."""
    lemmas = _timm_table("imagenet_synset_to_lemma.txt")
    glosses = _timm_table("imagenet_synset_to_definition.txt")
    ids = np.empty(len(wnids), dtype=np.int64)
    ids[rng.permutation(len(wnids))] = np.arange(1, len(wnids) + 1)  # devkit ids are not in wnid order
    leaves = set(wnids)
    inner = [w for w in sorted(lemmas) if w not in leaves][:_IMAGENET_INNER]
    fields = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images")
    synsets = np.empty((len(wnids) + len(inner), 1), dtype=[(f, object) for f in fields])
    no_children = np.zeros((1, 0), dtype=np.uint16)
    by_id = sorted(range(len(wnids)), key=lambda i: ids[i])
    for row, i in enumerate(by_id):
        synsets[row, 0] = (np.uint16(ids[i]), wnids[i], lemmas.get(wnids[i], wnids[i]), glosses.get(wnids[i], ""),
                           np.uint16(0), no_children, np.uint16(0), np.uint16(per_class))
    for j, wnid in enumerate(inner):
        first = 1 + (2 * j) % len(wnids)
        children = np.array([[first, first + 1]], dtype=np.uint16)
        synsets[len(wnids) + j, 0] = (np.uint16(len(wnids) + 1 + j), wnid, lemmas[wnid], glosses.get(wnid, ""),
                                      np.uint16(2), children, np.uint16(1 + j % 18), np.uint16(2 * per_class))
    truth = "".join(f"{ids[label]}\n" for label in val_labels)
    blacklisted = np.sort(rng.choice(len(val_labels), size=min(3, len(val_labels)), replace=False)) + 1
    blacklist = "".join(f"{i}\n" for i in blacklisted)
    root = "ILSVRC2012_devkit_t12"
    return archive_bytes("x.tar.gz", {
        f"{root}/COPYING": b"Stand-in of the ILSVRC2012 development kit (bobench rehearsal).\n",
        f"{root}/readme.txt": _readme("ILSVRC2012 development kit"),
        f"{root}/data/meta.mat": mat_bytes({"synsets": synsets}),
        f"{root}/data/ILSVRC2012_validation_ground_truth.txt": truth.encode(),
        f"{root}/data/ILSVRC2012_validation_blacklist.txt": blacklist.encode(),
    })


def imagenet_train_names(seed: int, images_per_class: int) -> dict[str, list[str]]:
    """The training file names of ImageNet's stand-in by wnid (``<wnid>_<n>.JPEG``, with the real set's
    PNG and CMYK file names where their classes are). A function of ``seed`` and ``images_per_class``
    only, so the 1%/10% subset lists can be written without ImageNet's stand-in at hand."""
    rng = _rng(seed, "imagenet", 1)
    special = [IMAGENET_PNG, *IMAGENET_CMYK]
    names = {}
    for wnid in imagenet_synsets():
        numbers = np.cumsum(rng.integers(1, 3000, size=_per_class(images_per_class, 1000)))
        names[wnid] = [f"{wnid}_{int(number)}.JPEG" for number in numbers]
        for name in special:
            if name.startswith(wnid + "_"):
                names[wnid][0] = name
    return names


def make_imagenet(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int,
                  unpack: bool = True) -> Path:
    """The three ILSVRC2012 archives, as published, and (``unpack``) torchvision's unpacked folders.

    - ``ILSVRC2012_img_train.tar``: one ``<wnid>.tar`` per class, each holding ``<wnid>_<n>.JPEG`` (flat),
    - ``ILSVRC2012_img_val.tar``: ``ILSVRC2012_val_<00000001..>.JPEG`` (flat, classes shuffled),
    - ``ILSVRC2012_devkit_t12.tar.gz``: ``ILSVRC2012_devkit_t12/data/meta.mat`` and
      ``…/data/ILSVRC2012_validation_ground_truth.txt`` (+ readme, COPYING, blacklist),

    ``images_per_class`` JPEGs of ~500x375 per class and split (with the real set's PNG-named-JPEG, CMYK and
    grey-scale quirks in train). With ``unpack`` (the default) ``train/<wnid>/``, ``val/<wnid>/`` and
    ``meta.bin`` are then made from the archives by torchvision's parse functions (see the module notes:
    the parser's hard-coded md5 check cannot pass on a stand-in, so it is suppressed for that call).
    """
    raw_dir = Path(raw_dir)
    source = entry["source"]
    if not source.get("imagenet_archives") or dict(source.get("folders") or {}) != {"train": "train", "test": "val"}:
        raise StandinError("the imagenet stand-in is made for the ILSVRC2012 archives unpacked into train/ and val/ "
                           "(source.imagenet_archives, folders {train: train, test: val})")
    writer = _Writer(dataset_id, raw_dir, [*IMAGENET_ARCHIVES, *IMAGENET_UNPACKED])
    rng = _rng(seed, dataset_id)
    wnids = imagenet_synsets()
    n = _per_class(images_per_class, len(wnids))
    kinds = {IMAGENET_PNG: "png", **{name: "cmyk" for name in IMAGENET_CMYK}}
    class_tars: dict[str, bytes] = {}
    for c, (wnid, names) in enumerate(imagenet_train_names(seed, images_per_class).items()):
        members = {}
        for k, name in enumerate(names):
            width, height = _IMAGENET_SIZES[int(rng.integers(len(_IMAGENET_SIZES)))]
            if kinds.get(name) == "png":
                members[name] = _png(rng, width, height, c)
            elif kinds.get(name) == "cmyk":
                members[name] = encode(standin_image(rng, width, height, c).convert("CMYK"), "JPEG", quality=80)
            else:
                mode = "L" if k == 0 and c in IMAGENET_GREY_CLASSES else "RGB"
                members[name] = _jpeg(rng, width, height, c, mode, quality=80)
        class_tars[f"{wnid}.tar"] = archive_bytes(f"{wnid}.tar", members, folders=False)
    writer.archive("ILSVRC2012_img_train.tar", class_tars, folders=False)
    del class_tars

    val_labels = rng.permutation(np.repeat(np.arange(len(wnids)), n))
    val = {}
    for i, label in enumerate(val_labels, start=1):
        width, height = _IMAGENET_SIZES[int(rng.integers(len(_IMAGENET_SIZES)))]
        val[f"ILSVRC2012_val_{i:08d}.JPEG"] = _jpeg(rng, width, height, int(label), quality=80)
    writer.archive("ILSVRC2012_img_val.tar", val, folders=False)
    del val
    writer.file("ILSVRC2012_devkit_t12.tar.gz", _imagenet_devkit(rng, wnids, val_labels, n))

    if unpack:
        unpack_imagenet_standin(raw_dir)
    counts = {"train": n * len(wnids), "test": n * len(wnids)}
    return writer.finish(
        {"files": writer.file_overrides(entry), **_expect(entry, counts)},
        seed=seed, images_per_class=images_per_class, counts=counts,
        layout="ILSVRC2012_img_train.tar (1000 <wnid>.tar of <wnid>_<n>.JPEG), ILSVRC2012_img_val.tar "
               "(ILSVRC2012_val_<8 digits>.JPEG), ILSVRC2012_devkit_t12.tar.gz (data/meta.mat, "
               "data/ILSVRC2012_validation_ground_truth.txt); ~500x375 JPEG"
               + ("; unpacked by torchvision's parser into train/, val/, meta.bin" if unpack else ""),
        unpacked=bool(unpack),
        unpacked_by=("torchvision.datasets.imagenet.parse_devkit_archive/parse_train_archive/parse_val_archive, "
                     "their md5 check against ARCHIVE_META suppressed (no stand-in can match the real md5s)")
        if unpack else None,
    )


def unpack_imagenet_standin(raw_dir: str | Path) -> None:
    """torchvision's ImageNet parser on the stand-in archives: ``train/<wnid>/``, ``val/<wnid>/``, ``meta.bin``.

    The parser checks each archive against the real md5 in ``ARCHIVE_META`` (``_verify_archive``), which a
    stand-in cannot match; that one check is replaced for the duration of this call, everything else
    (extraction, devkit parsing, the moves of the validation images) is torchvision's code.
    """
    from torchvision.datasets import imagenet as parser

    root = str(raw_dir)
    for name in IMAGENET_UNPACKED:
        path = Path(raw_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    original = parser._verify_archive
    parser._verify_archive = lambda root, file, md5: None
    try:
        parser.parse_devkit_archive(root)
        parser.parse_train_archive(root)
        parser.parse_val_archive(root)
    finally:
        parser._verify_archive = original


def make_imagenet_subset(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int,
                         images_per_class: int) -> Path:
    """SimCLR's subset list (``1percent.txt`` / ``10percent.txt``: one training file name per line) naming
    that share of the training images of ImageNet's stand-in (at least :data:`MIN_POOL`), spread over as
    many classes as possible. The entry reads ImageNet's unpacked class folders (``folders.train =
    ../imagenet/train``), so it is prepared after ImageNet; the list itself needs only the same ``seed``
    and ``images_per_class`` as ImageNet's stand-in (:func:`imagenet_train_names`), checked against
    ImageNet's manifest when that stand-in is already there. The subset writes no images of its own."""
    raw_dir = Path(raw_dir)
    source = entry["source"]
    subset = source["subset"]
    listed_name = subset["file"]["name"]
    match = re.match(r"(\d+)percent\.txt$", listed_name)
    if match is None:
        raise StandinError(f"{dataset_id}: {listed_name} is not a SimCLR subset list name (<N>percent.txt)")
    shared = Path(source["folders"][subset["split"]]).parent  # ../imagenet
    imagenet_raw = Path(os.path.normpath(raw_dir / shared))
    if (imagenet_raw / MANIFEST_NAME).is_file():
        made = read_manifest(imagenet_raw)
        if (made.get("seed"), made.get("images_per_class")) != (int(seed), int(images_per_class)):
            raise StandinError(
                f"ImageNet's stand-in in {imagenet_raw} was made with seed {made.get('seed')} and images_per_class "
                f"{made.get('images_per_class')}; {dataset_id}'s list would name other files (seed {seed}, "
                f"images_per_class {images_per_class})"
            )
    writer = _Writer(dataset_id, raw_dir, [listed_name])
    by_class = imagenet_train_names(seed, images_per_class)
    rng = _rng(seed, dataset_id)
    total = sum(len(v) for v in by_class.values())
    want = min(total, max(MIN_POOL, round(int(match.group(1)) / 100 * total)))
    # Round robin over the classes in a seeded order: one image of as many classes as possible first.
    shuffled = {wnid: [names[i] for i in rng.permutation(len(names))] for wnid, names in by_class.items()}
    order = [list(shuffled)[i] for i in rng.permutation(len(shuffled))]
    chosen: list[str] = []
    for rank in range(max(map(len, shuffled.values()))):
        chosen += [shuffled[w][rank] for w in order if rank < len(shuffled[w])]
    chosen = sorted(chosen[:want])
    writer.file(listed_name, "".join(f"{name}\n" for name in chosen).encode())
    return writer.finish(
        {"subset": {"file": {"sha256": writer.files[listed_name]["sha256"]}}},
        seed=seed, images_per_class=images_per_class, counts={"listed": len(chosen)},
        layout=f"{listed_name}: {len(chosen)} of the {total} training file names of ImageNet's stand-in "
               f"({shared.as_posix()}/train), one per line",
        imagenet_standin=shared.as_posix(),
        classes_listed=len({name.split("_")[0] for name in chosen}),
    )


# --------------------------------------------------------------------------- CIFAR-100

CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
#: The 100 fine labels (alphabetical: the order of the real meta's fine_label_names) and 20 coarse ones.
CIFAR100_FINE = tuple(sorted(name for names in CIFAR100_SUPERCLASSES.values() for name in names))
CIFAR100_COARSE = tuple(sorted(CIFAR100_SUPERCLASSES))


def make_cifar100(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """cifar-100-python.tar.gz → ``cifar-100-python/{meta,train,test,file.txt~}``: protocol-2 pickles of dicts
    (``data`` uint8 (N, 3072) rows of R, G, B planes of 32x32; ``fine_labels``, ``coarse_labels``,
    ``filenames``, ``batch_label``; meta ``fine_label_names``, ``coarse_label_names``)."""
    writer = _Writer(dataset_id, raw_dir, ["cifar-100-python.tar.gz"])
    rng = _rng(seed, dataset_id)
    n = _per_class(images_per_class, len(CIFAR100_FINE))
    coarse_of = {fine: CIFAR100_COARSE.index(coarse) for coarse, fines in CIFAR100_SUPERCLASSES.items() for fine in fines}
    batches = {}
    for split, label in (("train", "training batch 1 of 1"), ("test", "testing batch 1 of 1")):
        labels = rng.permutation(np.repeat(np.arange(len(CIFAR100_FINE)), n))
        rows = np.stack([standin_pixels(rng, 32, 32, int(c)).transpose(2, 0, 1).reshape(-1) for c in labels])
        batches[split] = pickle.dumps({
            "filenames": [f"{CIFAR100_FINE[c]}_s_{_between(rng, 1, 2400):06d}.png" for c in labels],
            "batch_label": label,
            "fine_labels": [int(c) for c in labels],
            "coarse_labels": [coarse_of[CIFAR100_FINE[c]] for c in labels],
            "data": rows.astype(np.uint8),
        }, protocol=2)
    meta = pickle.dumps({"fine_label_names": list(CIFAR100_FINE), "coarse_label_names": list(CIFAR100_COARSE)}, protocol=2)
    writer.archive("cifar-100-python.tar.gz", {
        "cifar-100-python/file.txt~": b"",
        "cifar-100-python/train": batches["train"],
        "cifar-100-python/test": batches["test"],
        "cifar-100-python/meta": meta,
    })
    counts = {"train": n * 100, "test": n * 100}
    return writer.finish(
        {"files": writer.file_overrides(entry)}, seed=seed, images_per_class=images_per_class, counts=counts,
        layout="cifar-100-python.tar.gz: cifar-100-python/{meta,train,test} protocol-2 pickles, 32x32 pixel rows",
    )


# --------------------------------------------------------------------------- Flowers-102


def make_flowers102(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """102flowers.tgz (``jpg/image_<00001..>.jpg``, one side 500 px, the other 500-750), imagelabels.mat
    (``labels`` 1x N uint8, 1-based) and setid.mat (``trnid``, ``valid``, ``tstid`` 1-based image ids)."""
    writer = _Writer(dataset_id, raw_dir, ["102flowers.tgz", "imagelabels.mat", "setid.mat"])
    rng = _rng(seed, dataset_id)
    n = _per_class(images_per_class, 102)
    total = 3 * 102 * n
    ids = rng.permutation(total) + 1  # image ids are not grouped by class or split
    labels = np.zeros(total, dtype=np.uint8)
    splits = {}
    for s, key in enumerate(("trnid", "valid", "tstid")):
        chunk = ids[s * 102 * n : (s + 1) * 102 * n]
        labels[chunk - 1] = np.repeat(np.arange(1, 103), n)
        splits[key] = np.sort(chunk).astype(np.uint16)[None, :]
    members = {}
    for image_id in range(1, total + 1):
        long_side = _between(rng, 500, 750)
        width, height = (long_side, 500) if rng.random() < 0.5 else (500, long_side)
        members[f"jpg/image_{image_id:05d}.jpg"] = _jpeg(rng, width, height, int(labels[image_id - 1]) - 1, quality=80)
    writer.archive("102flowers.tgz", members)
    writer.file("imagelabels.mat", mat_bytes({"labels": labels[None, :]}))
    writer.file("setid.mat", mat_bytes(splits))
    counts = {"train": 102 * n, "val": 102 * n, "test": 102 * n}
    return writer.finish(
        {"files": writer.file_overrides(entry)}, seed=seed, images_per_class=images_per_class, counts=counts,
        layout="102flowers.tgz: jpg/image_<5 digits>.jpg (500 x 500-750 JPEG); imagelabels.mat; setid.mat",
    )


# --------------------------------------------------------------------------- FGVC-Aircraft

#: variant → (family, manufacturer), in the order of the real variants.txt. (The loader reads only the
#: variant files; families and manufacturers are written for the layout's sake.)
AIRCRAFT_VARIANTS: dict[str, tuple[str, str]] = {
    "707-320": ("Boeing 707", "Boeing"), "727-200": ("Boeing 727", "Boeing"),
    **{f"737-{v}": ("Boeing 737", "Boeing") for v in (200, 300, 400, 500, 600, 700, 800, 900)},
    **{f"747-{v}": ("Boeing 747", "Boeing") for v in (100, 200, 300, 400)},
    "757-200": ("Boeing 757", "Boeing"), "757-300": ("Boeing 757", "Boeing"),
    "767-200": ("Boeing 767", "Boeing"), "767-300": ("Boeing 767", "Boeing"), "767-400": ("Boeing 767", "Boeing"),
    "777-200": ("Boeing 777", "Boeing"), "777-300": ("Boeing 777", "Boeing"),
    "A300B4": ("A300", "Airbus"), "A310": ("A310", "Airbus"),
    **{v: ("A320", "Airbus") for v in ("A318", "A319", "A320", "A321")},
    "A330-200": ("A330", "Airbus"), "A330-300": ("A330", "Airbus"),
    **{f"A340-{v}": ("A340", "Airbus") for v in (200, 300, 500, 600)},
    "A380": ("A380", "Airbus"), "ATR-42": ("ATR-42", "ATR"), "ATR-72": ("ATR-72", "ATR"),
    "An-12": ("An-12", "Antonov"), "BAE 146-200": ("BAE 146", "British Aerospace"),
    "BAE 146-300": ("BAE 146", "British Aerospace"), "BAE-125": ("BAE-125", "British Aerospace"),
    "Beechcraft 1900": ("Beechcraft 1900", "Beechcraft"), "Boeing 717": ("Boeing 717", "Boeing"),
    "C-130": ("C-130", "Lockheed Corporation"), "C-47": ("C-47", "Douglas Aircraft Company"),
    "CRJ-200": ("CRJ-200", "Canadair"), "CRJ-700": ("CRJ-700", "Canadair"), "CRJ-900": ("CRJ-700", "Canadair"),
    "Cessna 172": ("Cessna 172", "Cessna"), "Cessna 208": ("Cessna 208", "Cessna"),
    "Cessna 525": ("Cessna Citation", "Cessna"), "Cessna 560": ("Cessna Citation", "Cessna"),
    "Challenger 600": ("Challenger 600", "Canadair"), "DC-10": ("DC-10", "McDonnell Douglas"),
    "DC-3": ("DC-3", "Douglas Aircraft Company"), "DC-6": ("DC-6", "Douglas Aircraft Company"),
    "DC-8": ("DC-8", "Douglas Aircraft Company"), "DC-9-30": ("DC-9", "McDonnell Douglas"),
    "DH-82": ("DH-82", "de Havilland"), "DHC-1": ("DHC-1", "de Havilland"), "DHC-6": ("DHC-6", "de Havilland"),
    "DHC-8-100": ("Dash 8", "de Havilland"), "DHC-8-300": ("Dash 8", "de Havilland"),
    "DR-400": ("DR-400", "Robin"), "Dornier 328": ("Dornier 328", "Dornier"),
    "E-170": ("Embraer E-Jet", "Embraer"), "E-190": ("Embraer E-Jet", "Embraer"), "E-195": ("Embraer E-Jet", "Embraer"),
    "EMB-120": ("EMB-120", "Embraer"), "ERJ 135": ("Embraer ERJ 145", "Embraer"),
    "ERJ 145": ("Embraer ERJ 145", "Embraer"), "Embraer Legacy 600": ("Embraer Legacy 600", "Embraer"),
    "Eurofighter Typhoon": ("Eurofighter Typhoon", "Eurofighter"), "F-16A/B": ("F-16", "Lockheed Martin"),
    "F/A-18": ("F/A-18", "McDonnell Douglas"), "Falcon 2000": ("Falcon 2000", "Dassault Aviation"),
    "Falcon 900": ("Falcon 900", "Dassault Aviation"), "Fokker 100": ("Fokker 100", "Fokker"),
    "Fokker 50": ("Fokker 50", "Fokker"), "Fokker 70": ("Fokker 70", "Fokker"),
    "Global Express": ("Global Express", "Bombardier Aerospace"), "Gulfstream IV": ("Gulfstream", "Gulfstream Aerospace"),
    "Gulfstream V": ("Gulfstream", "Gulfstream Aerospace"), "Hawk T1": ("Hawk T1", "British Aerospace"),
    "Il-76": ("Il-76", "Ilyushin"), "L-1011": ("L-1011", "Lockheed Corporation"), "MD-11": ("MD-11", "McDonnell Douglas"),
    "MD-80": ("MD-80", "McDonnell Douglas"), "MD-87": ("MD-80", "McDonnell Douglas"), "MD-90": ("MD-90", "McDonnell Douglas"),
    "Metroliner": ("Metroliner", "Fairchild"), "Model B200": ("King Air", "Beechcraft"), "PA-28": ("PA-28", "Piper"),
    "SR-20": ("SR-20", "Cirrus Aircraft"), "Saab 2000": ("Saab 2000", "Saab"), "Saab 340": ("Saab 340", "Saab"),
    "Spitfire": ("Spitfire", "Supermarine"), "Tornado": ("Tornado", "Panavia"), "Tu-134": ("Tu-134", "Tupolev"),
    "Tu-154": ("Tu-154", "Tupolev"), "Yak-42": ("Yak-42", "Yakovlev"),
}


def make_fgvc_aircraft(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int,
                       images_per_class: int) -> Path:
    """fgvc-aircraft-2013b.tar.gz → ``fgvc-aircraft-2013b/data/``: ``images/<7-digit id>.jpg`` (~1000x700),
    ``variants.txt`` / ``families.txt`` / ``manufacturers.txt``, ``images_{variant,family,manufacturer}_
    {train,val,trainval,test}.txt`` ("<id> <label>" lines) and ``images_box.txt``; plus ``README.md``."""
    writer = _Writer(dataset_id, raw_dir, ["fgvc-aircraft-2013b.tar.gz"])
    rng = _rng(seed, dataset_id)
    variants = list(AIRCRAFT_VARIANTS)
    families = sorted({f for f, _ in AIRCRAFT_VARIANTS.values()})
    manufacturers = sorted({m for _, m in AIRCRAFT_VARIANTS.values()}, key=str.lower)
    n = _per_class(images_per_class, len(variants))
    ids = iter(f"{i:07d}" for i in rng.choice(2_300_000, size=3 * n * len(variants), replace=False))
    root = "fgvc-aircraft-2013b/data"
    images: dict[str, bytes] = {}
    rows: dict[str, list[tuple[str, str]]] = {}
    boxes = []
    for split in ("train", "val", "test"):
        rows[split] = []
        for c, variant in enumerate(variants):
            for image_id in sorted(next(ids) for _ in range(n)):
                width, height = _between(rng, 960, 1100), _between(rng, 620, 760)
                images[f"{root}/images/{image_id}.jpg"] = _jpeg(rng, width, height, c, quality=75)
                x1, y1 = _between(rng, 1, width // 4), _between(rng, 1, height // 4)
                x2, y2 = _between(rng, width // 2, width), _between(rng, height // 2, height)
                boxes.append(f"{image_id} {x1} {y1} {x2} {y2}\n")
                rows[split].append((image_id, variant))
    rows["trainval"] = sorted(rows["train"] + rows["val"], key=lambda r: (variants.index(r[1]), r[0]))
    members: dict[str, bytes] = {"fgvc-aircraft-2013b/README.md": _readme("FGVC-Aircraft 2013b")}
    members[f"{root}/variants.txt"] = "".join(f"{v}\n" for v in variants).encode()
    members[f"{root}/families.txt"] = "".join(f"{f}\n" for f in families).encode()
    members[f"{root}/manufacturers.txt"] = "".join(f"{m}\n" for m in manufacturers).encode()
    for split in ("train", "val", "trainval", "test"):
        for level, label in (("variant", lambda v: v), ("family", lambda v: AIRCRAFT_VARIANTS[v][0]),
                             ("manufacturer", lambda v: AIRCRAFT_VARIANTS[v][1])):
            members[f"{root}/images_{level}_{split}.txt"] = "".join(f"{i} {label(v)}\n" for i, v in rows[split]).encode()
    members[f"{root}/images_box.txt"] = "".join(sorted(boxes)).encode()
    members.update(sorted(images.items()))
    writer.archive("fgvc-aircraft-2013b.tar.gz", members)
    counts = {split: n * len(variants) for split in ("train", "val", "test")}
    return writer.finish(
        {"files": writer.file_overrides(entry)}, seed=seed, images_per_class=images_per_class, counts=counts,
        layout="fgvc-aircraft-2013b.tar.gz: fgvc-aircraft-2013b/data/{images/<id>.jpg (~1000x700 JPEG), variants.txt, "
               "families.txt, manufacturers.txt, images_<level>_<split>.txt, images_box.txt}",
    )


# --------------------------------------------------------------------------- CheXpert

CHEXPERT_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                    "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")
CHEXPERT_OBSERVATIONS = CHEXPERT_COLUMNS[5:]
#: Fixed rows at the top of the stand-in's train.csv (frontal view of study1 of patients 1-4), so a test
#: can see BoB's label policy (U-Ones for Edema and Atelectasis, U-Zeros otherwise, blank → 0) at work.
#: Values for (Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion); None = blank.
CHEXPERT_PROBES: dict[str, tuple[float | None, ...]] = {
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg": (-1.0, -1.0, -1.0, -1.0, -1.0),
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg": (None, None, None, None, None),
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg": (1.0, 1.0, 1.0, 1.0, 1.0),
    "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg": (0.0, -1.0, 1.0, None, -1.0),
}
_FIRST_VALID_PATIENT = 64541


def _chexpert_value(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def make_chexpert(dataset_id: str, entry: Mapping[str, Any], raw_dir: str | Path, *, seed: int, images_per_class: int) -> Path:
    """``CheXpert-v1.0-small/`` as unpacked from the research-use download: ``train.csv`` and ``valid.csv``
    (the real 19 columns; train findings 1.0 / 0.0 / -1.0 / blank, valid 1.0 / 0.0 only) and grey-scale
    JPEGs ``{train,valid}/patient<5 digits>/study<k>/view<m>_{frontal,lateral}.jpg`` (height 320, width
    320-390). Frontal and lateral rows; the first four train rows are :data:`CHEXPERT_PROBES`.
    ``images_per_class`` scales the patient counts (40 train and 10 valid patients per unit)."""
    folder = entry["source"]["folder"]
    if folder != "CheXpert-v1.0-small":
        raise StandinError(f"the registry reads CheXpert from {folder!r}; the download unpacks to 'CheXpert-v1.0-small'")
    raw_dir = Path(raw_dir)
    writer = _Writer(dataset_id, raw_dir, [folder])
    rng = _rng(seed, dataset_id)
    scale = _per_class(images_per_class, 1)
    findings_at = [CHEXPERT_OBSERVATIONS.index(name) for name in CHEXPERT_FINDINGS]
    counts: dict[str, int] = {}
    for split, csv_name, patients, first in (("train", "train.csv", 40 * scale, 1),
                                             ("valid", "valid.csv", 10 * scale, _FIRST_VALID_PATIENT)):
        buffer = io.StringIO()
        table = csv.writer(buffer, lineterminator="\n")
        table.writerow(CHEXPERT_COLUMNS)
        frontal = lateral = 0
        for patient in range(first, first + patients):
            sex, age = ("Female", "Male")[int(rng.integers(2))], _between(rng, 18, 90)
            for study in range(1, 1 + (1 if split == "valid" else 1 + int(rng.random() < 0.3))):
                views = ["frontal"] + (["lateral"] if rng.random() < 0.5 or patient == first else [])
                for view_index, view in enumerate(views, start=1):
                    path = f"{folder}/{split}/patient{patient:05d}/study{study}/view{view_index}_{view}.jpg"
                    if split == "valid":  # radiologists' consensus: no uncertain or blank labels
                        values: list[float | None] = [float(v) for v in (rng.random(len(CHEXPERT_OBSERVATIONS)) < 0.2)]
                    else:
                        values = [(1.0, 0.0, -1.0, None)[i] for i in rng.choice(4, size=len(CHEXPERT_OBSERVATIONS),
                                                                                  p=(0.15, 0.1, 0.1, 0.65))]
                        if path in CHEXPERT_PROBES:
                            for j, value in zip(findings_at, CHEXPERT_PROBES[path]):
                                values[j] = value
                    ap_pa = ("AP", "PA")[int(rng.random() < 0.3)] if view == "frontal" else ""
                    table.writerow([path, sex, age, view.capitalize(), ap_pa, *map(_chexpert_value, values)])
                    width = _between(rng, 320, 390)
                    write_bytes(raw_dir / path, _jpeg(rng, width, 320, patient % 5, "L", quality=90))
                    frontal += view == "frontal"
                    lateral += view == "lateral"
        write_bytes(raw_dir / folder / csv_name, buffer.getvalue().encode())
        counts[f"{split}_frontal"], counts[f"{split}_lateral"] = frontal, lateral
    for csv_name in ("train.csv", "valid.csv"):
        writer.files[f"{folder}/{csv_name}"] = _digests((raw_dir / folder / csv_name).read_bytes())
    return writer.finish(
        {}, seed=seed, images_per_class=images_per_class, counts=counts,
        layout=f"{folder}/{{train.csv, valid.csv, train/, valid/}}: patient<5 digits>/study<k>/view<m>_<view>.jpg, "
               "grey JPEG 320-390 x 320",
        probes={path: list(values) for path, values in CHEXPERT_PROBES.items()},
    )


# --------------------------------------------------------------------------- the makers

Maker = Callable[..., Path]

CLASSIFICATION_MAKERS: dict[str, Maker] = {
    "imagenet": make_imagenet,
    "imagenet_1pct": make_imagenet_subset,
    "imagenet_10pct": make_imagenet_subset,
    "cifar100": make_cifar100,
    "flowers102": make_flowers102,
    "fgvc_aircraft": make_fgvc_aircraft,
    "eurosat": make_eurosat,
    "chexpert": make_chexpert,
    "visda2017_synthetic": make_visda2017_synthetic,
    "visda2017_real": make_visda2017_real,
    "imagenet_a": make_imagenet_a,
    "imagenet_r": make_imagenet_r,
    "imagenet_sketch": make_imagenet_sketch,
    "imagenet_v2": make_imagenet_v2,
}
