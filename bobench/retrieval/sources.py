"""The retrieval datasets (docs/protocol.md §7): raw files → a versioned query/database split.

A registry entry with ``tasks: [retrieval]`` is a retrieval benchmark: its
loader (``source.loader``, one of :data:`RETRIEVAL_LOADERS`) turns the raw
files into a :class:`~bobench.retrieval.splits.RetrievalSplit`, and
:func:`prepare_retrieval_dataset` writes it to ``data/retrieval/<id>/``.

Loaders, each with the rule BoB's code used (or, where its files are missing,
the one written here):

* ``retrieval_class_folders``: CUB-200-2011, iNaturalist 2021 val (first 5 per
  class), ObjectNet (first 50 per class), INSTRE-S1 (first 50 per class): BoB's
  ``TwoLeveldataset`` split (:func:`~bobench.retrieval.splits.class_folder_rule`);
* ``gldv2_retrieval``: Google Landmarks v2 test queries against the index, with
  ``retrieval_solution_v2.1.csv`` (rows without images dropped);
* ``revisited``: ROxford5k / RParis6k with revisitop's ``gnd_*.pkl``: full
  (uncropped) queries as in BoB, Easy / Medium / Hard protocols;
* ``copydays``: INRIA Copydays, each original a query whose positives are its
  variants (strong, JPEG, crops), the mapping BoB's missing ``qvmapping.p`` held;
* ``synthetic_copydays``: a Copydays-layout set made offline from a prepared
  dataset's images, read by the ``copydays`` loader (the demo's data).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bobench.datasets.archives import UNPINNED, obtain_files
from bobench.datasets.downloads import DataUnavailableError, NumpyOnlyUnpickler
from bobench.datasets.entries import check_shared_keys
from bobench.datasets.loader_registry import LoaderRegistry
from bobench.datasets.paper_sources import IMAGE_EXTENSIONS, scan_class_folders
from bobench.retrieval.ground_truth import GroundTruth, revisited_protocols
from bobench.retrieval.splits import RetrievalSplit, write_split

LOG = logging.getLogger("bobench.retrieval")

RETRIEVAL_LOADERS = LoaderRegistry("retrieval")
register_retrieval_loader = RETRIEVAL_LOADERS.register

#: Copydays' variant folders (the layout DINO's and SSCD's loaders expect).
COPYDAYS_JPEG_QUALITIES = (3, 5, 8, 10, 15, 20, 30, 50, 75)
COPYDAYS_CROPS = (10, 15, 20, 30, 40, 50, 60, 70, 80)


def validate_retrieval_entry(dataset_id: str, entry: Any) -> None:
    """Check of a retrieval benchmark's entry (the keys every kind shares, then its loader; no splits or
    seed); every kind's entry: :func:`bobench.datasets.kinds.validate_dataset_entry`."""
    fail = check_shared_keys(dataset_id, entry)
    loader = (entry.get("source") or {}).get("loader")
    if loader not in RETRIEVAL_LOADERS:
        fail("source.loader", loader, f"is not a retrieval loader; valid: {', '.join(sorted(RETRIEVAL_LOADERS))}")
    missing = RETRIEVAL_LOADERS.missing_keys(loader, entry["source"])
    if missing:
        fail("source", entry["source"], f"lacks {', '.join(missing)}, required by loader {loader!r}")
    for key in ("splits", "seed"):
        if key in entry:
            fail(key, entry[key], "does not apply to a retrieval benchmark: its loader's rule fixes queries and database")
    per_class = entry["source"].get("per_class")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 2):
        fail("source.per_class", per_class, "must be an integer of at least 2 (a query and a database image per class)")


def prepare_retrieval_dataset(
    dataset_id: str,
    entry: Mapping[str, Any],
    out_dir: str | Path,
    raw_dir: str | Path,
    log: logging.Logger = LOG,
    prepared_dirs: Mapping[str, str] | None = None,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Registry entry → ``out_dir`` with the split files (``split.json`` last); returns its content.
    ``max_images``: a rehearsal's cap on queries and database (see :meth:`RetrievalSplit.capped`)."""
    validate_retrieval_entry(dataset_id, entry)
    source = entry["source"]
    split = RETRIEVAL_LOADERS[source["loader"]](source, Path(raw_dir), log, prepared_dirs=prepared_dirs or {})
    if max_images is not None:
        split = split.capped(max_images)
    info = {"dataset_id": dataset_id, "name": entry["name"], "domain": entry["domain"], "licence": entry["licence"],
            "loader": source["loader"], "standin": bool(entry.get("standin"))}
    meta = write_split(out_dir, split, info)
    log.info("retrieval split of %s: %d queries, %d database images, protocols %s (version %d, sha256 %s)",
             dataset_id, len(split.queries), len(split.database), ", ".join(meta["protocols"]),
             split.split_version, meta["split_sha256"])
    return meta


def _expect(found: int, expected: int | None, what: str, how_to_get: str) -> None:
    """The layout check of a dataset: a count that differs means a wrong or incomplete copy."""
    if expected is not None and found != expected:
        raise DataUnavailableError(f"{what}: found {found}, expected {expected}.\n{how_to_get.strip()}")


def _obtain(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    return obtain_files(source.get("files") or [], raw_dir, log, source["how_to_get"])


# --------------------------------------------------------------------------- class folders


@register_retrieval_loader("retrieval_class_folders", source_keys=("files", "how_to_get", "folder"))
def load_class_folders(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger, **_: Any) -> RetrievalSplit:
    """``folder`` (under ``raw_dir``) holds one sub-folder per class; ``per_class`` keeps each class's first files
    (sorted by name); ``expect: {classes, images}`` checks the copy before the cut."""
    _, provenance = _obtain(source, raw_dir, log)
    folder = raw_dir / source["folder"]
    if not folder.is_dir():
        raise DataUnavailableError(f"expected the class folders under {folder}, which is missing.\n{source['how_to_get'].strip()}")
    classes, paths, labels = scan_class_folders(folder, folder)
    expect = source.get("expect") or {}
    _expect(len(classes), expect.get("classes"), f"{folder}: class folders", source["how_to_get"])
    _expect(len(paths), expect.get("images"), f"{folder}: images", source["how_to_get"])
    if source.get("per_class"):
        rank = np.arange(len(labels)) - np.searchsorted(labels, labels)  # labels come grouped, in class order
        keep = rank < int(source["per_class"])
        paths, labels = paths[keep], labels[keep]
    return RetrievalSplit.from_class_folders(
        folder, paths, labels, split_version=1,
        provenance={"files": provenance, "classes": len(classes), "per_class": source.get("per_class")},
    )


# --------------------------------------------------------------------------- Google Landmarks v2


@register_retrieval_loader("gldv2_retrieval", source_keys=("base_url", "how_to_get", "index_shards", "test_shards", "solution"))
def load_gldv2(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger, **_: Any) -> RetrievalSplit:
    """GLDv2 retrieval: the test images with ground truth are the queries, the whole index the database.

    Shards are ``{base_url}/{index,test}/images_NNN.tar``, each checked against the md5 the dataset publishes
    next to it (``md5sum/<part>/md5.images_NNN.txt``). Solution rows whose images are ``None`` (Usage
    "Ignored") are dropped, as in BoB.
    """
    base = source["base_url"].rstrip("/")
    files = []
    for part, count in (("index", source["index_shards"]), ("test", source["test_shards"])):
        for shard in range(int(count)):
            name = f"{part}/images_{shard:03d}.tar"
            files.append({"name": name, "url": f"{base}/{name}", "md5": _published_md5(base, part, shard, raw_dir, log, source),
                          "sha256": UNPINNED, "extract": True})
    paths, provenance = obtain_files([*files, source["solution"]], raw_dir, log, source["how_to_get"])
    index = _image_ids(raw_dir, [paths[f["name"]] for f in files if f["name"].startswith("index/")])
    tests = _image_ids(raw_dir, [paths[f["name"]] for f in files if f["name"].startswith("test/")])
    expect = source.get("expect") or {}
    _expect(len(index), expect.get("index"), "GLDv2 index images", source["how_to_get"])
    database_ids = sorted(index)
    position = {image_id: i for i, image_id in enumerate(database_ids)}
    queries, positives = [], []
    with open(paths[source["solution"]["name"]], newline="") as handle:
        for row in csv.DictReader(handle):
            if row["images"].strip() in ("", "None"):
                continue
            missing = [row["id"]] * (row["id"] not in tests) + [i for i in row["images"].split() if i not in position]
            if missing:
                raise DataUnavailableError(f"GLDv2: image {missing[0]} of the solution file is in no shard; are all shards complete?")
            queries.append(tests[row["id"]])
            positives.append([position[i] for i in row["images"].split()])
    _expect(len(queries), expect.get("queries"), "GLDv2 queries with ground truth", source["how_to_get"])
    return RetrievalSplit(
        raw_dir, np.array(queries), np.array([index[i] for i in database_ids]), {"default": GroundTruth.from_lists(positives)},
        "default", "Queries: the test images with a non-empty row in the solution file, in file order; database: every "
        "index image, sorted by id; positives: the row's index images.", split_version=1, provenance={"files": provenance},
    )


def _published_md5(base: str, part: str, shard: int, raw_dir: Path, log: logging.Logger, source: Mapping[str, Any]) -> str:
    """The md5 GLDv2 publishes for a shard (first field of ``md5.images_NNN.txt``), fetched once."""
    name = f"md5sum/{part}/md5.images_{shard:03d}.txt"
    path = raw_dir / name
    if not path.is_file():
        obtain_files([{"name": name, "url": f"{base}/{name}", "sha256": UNPINNED}], raw_dir, log, source["how_to_get"])
    text = path.read_text().split()
    if not text or len(text[0]) != 32:
        raise ValueError(f"{path}: expected an md5 listing ('<md5>  images_{shard:03d}.tar'), got {path.read_text()[:80]!r}")
    return text[0]


def _image_ids(root: Path, folders: list[Path]) -> dict[str, str]:
    """Image id (file stem) → path relative to ``root``, over every image under ``folders``."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.jpg")):
            found[path.stem] = str(path.relative_to(root))
    return found


# --------------------------------------------------------------------------- revisited Oxford / Paris


@register_retrieval_loader("revisited", source_keys=("files", "how_to_get", "ground_truth"))
def load_revisited(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger, **_: Any) -> RetrievalSplit:
    """revisitop's ``gnd_<name>.pkl`` (``imlist``, ``qimlist``, per query ``easy``/``hard``/``junk``/``bbx``) over
    the images of the archives. The query boxes are kept: BoB used the full images, revisitop's standard
    protocol crops them (``retrieval.crop_revisited_queries``)."""
    paths, provenance = _obtain(source, raw_dir, log)
    with open(paths[source["ground_truth"]], "rb") as handle:
        gnd = NumpyOnlyUnpickler(io.BytesIO(handle.read())).load()
    if not isinstance(gnd, dict) or not {"imlist", "qimlist", "gnd"} <= set(gnd):
        raise ValueError(f"{paths[source['ground_truth']]}: expected revisitop's dict with imlist, qimlist and gnd")
    images = _image_ids(raw_dir, [p for name, p in paths.items() if p.is_dir()])
    names = [*gnd["qimlist"], *gnd["imlist"]]
    missing = [n for n in names if n not in images]
    if missing:
        raise DataUnavailableError(f"{len(missing)} images of the ground truth (e.g. {missing[0]}.jpg) are in no archive.\n{source['how_to_get'].strip()}")
    expect = source.get("expect") or {}
    _expect(len(gnd["qimlist"]), expect.get("queries"), "revisited queries", source["how_to_get"])
    _expect(len(gnd["imlist"]), expect.get("database"), "revisited database images", source["how_to_get"])
    lists = {key: [np.asarray(q.get(key, []), dtype=np.int64) for q in gnd["gnd"]] for key in ("easy", "hard", "junk")}
    return RetrievalSplit(
        raw_dir, np.array([images[n] for n in gnd["qimlist"]]), np.array([images[n] for n in gnd["imlist"]]),
        revisited_protocols(lists["easy"], lists["hard"], lists["junk"]), "medium",
        "revisitop's qimlist (queries, full images unless retrieval.crop_revisited_queries) and imlist (database) in "
        "file order; Easy = easy positives with hard as junk, Medium = easy + hard with junk, Hard = hard positives "
        "with easy as junk.",
        split_version=1, provenance={"files": provenance},
        query_boxes=np.array([np.asarray(q.get("bbx", [np.nan] * 4), dtype=float) for q in gnd["gnd"]]).reshape(-1, 4),
    )


# --------------------------------------------------------------------------- Copydays


@register_retrieval_loader("copydays", source_keys=("files", "how_to_get", "folders"))
def load_copydays(source: Mapping[str, Any], raw_dir: Path, log: logging.Logger, **_: Any) -> RetrievalSplit:
    """``folders`` maps original / strong / jpegqual / crops to folders under ``raw_dir`` (jpegqual and crops
    hold one sub-folder per level). Queries: the originals; positives: every variant whose name shares the
    original's first four digits (its group)."""
    _, provenance = _obtain(source, raw_dir, log)
    return copydays_split(raw_dir, source["folders"], source["how_to_get"], source.get("expect") or {}, {"files": provenance})


def copydays_split(raw_dir: Path, folders: Mapping[str, str], how_to_get: str, expect: Mapping[str, int],
                   provenance: dict[str, Any]) -> RetrievalSplit:
    def images(folder: Path) -> list[Path]:
        if not folder.is_dir():
            raise DataUnavailableError(f"Copydays: expected the folder {folder}, which is missing.\n{how_to_get.strip()}")
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)

    originals = images(raw_dir / folders["original"])
    variants = [p for block in ("strong", "jpegqual", "crops") for p in images(raw_dir / folders[block])]
    _expect(len(originals), expect.get("originals"), "Copydays originals", how_to_get)
    _expect(len(variants), expect.get("variants"), "Copydays variants", how_to_get)
    groups = np.array([p.stem[:4] for p in variants])
    positives = [np.flatnonzero(groups == p.stem[:4]) for p in originals]
    lonely = [p.name for p, pos in zip(originals, positives) if not len(pos)]
    if lonely:
        raise DataUnavailableError(f"Copydays: original {lonely[0]} has no variant (names must share the first four digits).\n{how_to_get.strip()}")
    return RetrievalSplit(
        raw_dir, np.array([str(p.relative_to(raw_dir)) for p in originals]),
        np.array([str(p.relative_to(raw_dir)) for p in variants]), {"default": GroundTruth.from_lists(positives)}, "default",
        "Queries: the originals sorted by name; database: the strong, JPEG and crop variants (in that order, each "
        "sorted by path); positives: the variants sharing the original's first four digits (its group).",
        split_version=1, provenance=provenance,
    )


@register_retrieval_loader("synthetic_copydays", source_keys=("from_dataset", "originals", "jpeg_qualities", "crops"))
def load_synthetic_copydays(
    source: Mapping[str, Any], raw_dir: Path, log: logging.Logger, prepared_dirs: Mapping[str, str], **_: Any
) -> RetrievalSplit:
    """Copydays' layout made from the first ``originals`` test images of a prepared dataset (upscaled to
    ``size``): a strong variant per original (rotation, colour shift, blur), JPEG copies at ``jpeg_qualities``
    and central crops keeping ``crops`` percent of the area. Deterministic (no randomness)."""
    from bobench.datasets.prepared import load_prepared
    from bobench.retrieval.synthetic import write_copydays_layout

    dataset = load_prepared(prepared_dirs[source["from_dataset"]])
    images, _ = dataset.split("test")
    folders = write_copydays_layout(
        images[: int(source["originals"])], raw_dir / "copydays", size=int(source.get("size", 112)),
        jpeg_qualities=source["jpeg_qualities"], crops=source["crops"],
    )
    return copydays_split(raw_dir, folders, "It is made by the workflow from " + source["from_dataset"], {},
                          {"from_dataset": source["from_dataset"], "manifest": dataset.meta["manifest"]})
