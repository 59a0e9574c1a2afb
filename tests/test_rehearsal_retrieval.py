"""The retrieval stand-ins (CUB-200, iNaturalist 2021 val, ObjectNet, INSTRE-S1, GLDv2, ROxford5k, RParis6k,
Copydays): each written in its real published layout and read by the real preparation
(``prepare_retrieval_dataset``) through ``apply_manifest``; queries, database and ground truth come out
consistent (revisited Easy / Medium / Hard included); the same seed writes the same bytes."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bobench.datasets.downloads import NumpyOnlyUnpickler
from bobench.rehearsal.manifest import apply_manifest, read_manifest
from bobench.rehearsal.standin_retrieval import (
    COPYDAYS_CROPS,
    COPYDAYS_QUALITIES,
    CUB_CLASSES,
    INAT_CLASSES,
    INSTRE_S1_CLASSES,
    OBJECTNET_FOLDERS,
    RETRIEVAL_MAKERS,
)
from bobench.retrieval.sources import prepare_retrieval_dataset
from bobench.retrieval.splits import load_split

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
LOG = logging.getLogger("test_rehearsal_retrieval")


def _standin_entry(dataset_id: str, raw_dir: Path) -> dict:
    entry = apply_manifest(REGISTRY[dataset_id], read_manifest(raw_dir))
    assert entry["standin"] is True
    # Only pins and counts differ from the registry; an unpinned sha256 stays unpinned (the real code path).
    for original, replaced in zip(REGISTRY[dataset_id]["source"].get("files") or [], entry["source"].get("files") or []):
        assert replaced["name"] == original["name"] and replaced.get("extract") == original.get("extract")
        assert (replaced["sha256"] == "unpinned") == (original["sha256"] == "unpinned")
    return entry


def _make_and_prepare(dataset_id: str, tmp_path: Path, seed: int = 0):
    raw = tmp_path / "raw" / dataset_id
    RETRIEVAL_MAKERS[dataset_id](dataset_id, REGISTRY[dataset_id], raw, seed=seed, images_per_class=1)
    meta = prepare_retrieval_dataset(dataset_id, _standin_entry(dataset_id, raw), tmp_path / "out", raw, LOG)
    split, loaded = load_split(tmp_path / "out", verify=True)
    assert loaded == meta
    return raw, split, meta, read_manifest(raw)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset_id, classes, kept_per_class", [
    ("cub200", CUB_CLASSES, 2), ("inaturalist_val", INAT_CLASSES, 5), ("objectnet", sorted(OBJECTNET_FOLDERS), 2),
    ("instre_s1", INSTRE_S1_CLASSES, 2),
])
def test_class_folders_every_class_queried(tmp_path, dataset_id, classes, kept_per_class):
    raw, split, meta, standin = _make_and_prepare(dataset_id, tmp_path)
    folder = raw / REGISTRY[dataset_id]["source"]["folder"]
    assert sorted(d.name for d in folder.iterdir()) == sorted(classes)
    assert standin["source"]["expect"]["classes"] == len(classes) == meta["source"]["classes"]
    assert standin["source"]["expect"]["images"] == sum(1 for _ in folder.rglob("*.jpg")) + sum(1 for _ in folder.rglob("*.png"))
    # BoB's class-folder rule: one query per class here (floor(0.2 n) raised to 1), the rest the database.
    assert len(split.queries) == len(classes) and len(split.database) == len(classes) * (kept_per_class - 1)
    assert sorted(q.split("/")[0] for q in split.queries) == sorted(classes)
    truth = split.ground_truth["default"]
    for q, query in enumerate(split.queries):
        assert [split.database[i].split("/")[0] for i in truth.positives_of(q)] == [query.split("/")[0]] * (kept_per_class - 1)
    image = split.query_files()[0]
    assert image.ndim == 3 and image.shape[2] == 3 and max(image.shape[:2]) >= 480
    LAYOUT_CHECKS[dataset_id](raw)


def _check_cub(raw: Path) -> None:
    root = raw / "CUB_200_2011.tgz.d" / "CUB_200_2011"
    assert sorted(p.name for p in root.iterdir()) == [
        "README", "bounding_boxes.txt", "classes.txt", "image_class_labels.txt", "images", "images.txt", "train_test_split.txt"]
    rows = (root / "images.txt").read_text().splitlines()
    assert len(rows) == 400 and rows[0].startswith("1 001.Black_footed_Albatross/Black_Footed_Albatross_")
    assert rows[-1].split()[1].startswith("200.Common_Yellowthroat/Common_Yellowthroat_")
    assert all((root / "images" / row.split()[1]).is_file() for row in rows)
    assert len((root / "bounding_boxes.txt").read_text().splitlines()) == 400
    with Image.open(root / "images" / rows[0].split()[1]) as picture:
        assert picture.format == "JPEG" and max(picture.size) == 500


def _check_inat(raw: Path) -> None:
    folder = raw / "val.tar.gz.d" / "val"
    assert all(len(list(d.iterdir())) == 10 for d in folder.iterdir())  # the real val split's 10 per species
    sample = next(folder.rglob("*.jpg"))
    assert len(sample.stem) == 36 and sample.stem[14] == "4"  # a version-4 uuid
    with Image.open(sample) as picture:
        assert max(picture.size) == 500


def _check_objectnet(raw: Path) -> None:
    sample = next((raw / "objectnet-1.0" / "images" / "alarm_clock").glob("*.png"))
    assert len(sample.stem) == 15
    with Image.open(sample) as picture:
        pixels = np.asarray(picture)
        assert picture.format == "PNG"
    assert (pixels[0] == (255, 0, 0)).all() and (pixels[:, -1] == (255, 0, 0)).all()  # the 1-pixel red border
    assert (raw / "objectnet-1.0" / "mappings" / "folder_to_objectnet_label.json").is_file()


def _check_instre(raw: Path) -> None:
    folder = raw / "instre.tar.gz.d" / "INSTRE-S1" / "01a_canada_book"
    assert sorted(p.name for p in folder.iterdir()) == ["001.jpg", "001.txt", "002.jpg", "002.txt"]
    assert len((folder / "001.txt").read_text().split()) == 4


LAYOUT_CHECKS = {"cub200": _check_cub, "inaturalist_val": _check_inat, "objectnet": _check_objectnet, "instre_s1": _check_instre}


def test_gldv2_shards_listings_and_solution(tmp_path):
    raw, split, meta, standin = _make_and_prepare("gldv2_retrieval", tmp_path)
    source = REGISTRY["gldv2_retrieval"]["source"]
    for part, count in (("index", source["index_shards"]), ("test", source["test_shards"])):
        for shard in range(count):
            data = (raw / part / f"images_{shard:03d}.tar").read_bytes()
            listing = (raw / "md5sum" / part / f"md5.images_{shard:03d}.txt").read_text()
            assert listing == f"{hashlib.md5(data).hexdigest()}  images_{shard:03d}.tar\n"
    rows = list(csv.DictReader(io.StringIO((raw / source["solution"]["name"]).read_text())))
    kept = [row for row in rows if row["images"] != "None"]
    assert {row["Usage"] for row in rows} == {"Public", "Private", "Ignored"}
    assert len(split.queries) == len(kept) == standin["counts"]["queries"] == standin["source"]["expect"]["queries"]
    assert len(split.database) == standin["counts"]["index"] == standin["source"]["expect"]["index"]
    truth = split.ground_truth["default"]
    for q, row in enumerate(kept):
        assert Path(split.queries[q]).stem == row["id"]
        assert sorted(Path(split.database[i]).stem for i in truth.positives_of(q)) == sorted(row["images"].split())
    assert all(len(Path(p).stem) == 16 and p.split("/")[2:5] == list(Path(p).stem[:3]) for p in split.database)


@pytest.mark.parametrize("dataset_id", ["roxford5k", "rparis6k"])
def test_revisited_queries_and_protocols(tmp_path, dataset_id):
    raw, split, meta, standin = _make_and_prepare(dataset_id, tmp_path)
    ground_truth = raw / REGISTRY[dataset_id]["source"]["ground_truth"]
    gnd = NumpyOnlyUnpickler(io.BytesIO(ground_truth.read_bytes())).load()
    assert sorted(gnd) == ["gnd", "imlist", "qimlist"] and len(gnd["qimlist"]) == len(gnd["gnd"]) == 70
    assert all(isinstance(q["easy"], list) and isinstance(q["bbx"], list) for q in gnd["gnd"])
    assert not set(gnd["qimlist"]) & set(gnd["imlist"])  # queries are not in the database (revisitop)
    assert meta["protocols"] == ["easy", "hard", "medium"] and meta["primary_protocol"] == "medium"
    assert meta["sizes"]["queries"] == 70 and meta["sizes"]["database"] == len(gnd["imlist"]) == standin["source"]["expect"]["database"]
    easy, medium, hard = (split.ground_truth[p] for p in ("easy", "medium", "hard"))
    for q, entry in enumerate(gnd["gnd"]):
        assert easy.positives_of(q).tolist() == sorted(entry["easy"])
        assert sorted(easy.junk_of(q).tolist()) == sorted(entry["junk"] + entry["hard"])
        assert medium.positives_of(q).tolist() == sorted(entry["easy"] + entry["hard"])
        assert medium.junk_of(q).tolist() == sorted(entry["junk"])
        assert hard.positives_of(q).tolist() == sorted(entry["hard"]) and hard.positives_of(q).size
        assert sorted(hard.junk_of(q).tolist()) == sorted(entry["junk"] + entry["easy"])
    assert (easy.n_positives == 0).any()  # some queries have no easy positive: Easy skips them
    # The queries are the full images, with their boxes kept for revisitop's cropped protocol.
    assert [Path(p).stem for p in split.queries] == gnd["qimlist"]
    full, cropped = split.query_files()[0], split.query_files(crop=True)[0]
    assert max(full.shape[:2]) == 1024 and cropped.shape[0] < full.shape[0]
    if dataset_id == "rparis6k":  # the unreadable files are in the archives, in no list
        archived = {p.stem for p in raw.rglob("*.jpg")}
        assert len(archived - set(gnd["imlist"]) - set(gnd["qimlist"])) == 2
        assert all(p.split("/")[0] in ("paris_1-v1.tgz.d", "paris_2-v1.tgz.d") and p.split("/")[1] == "paris"
                   for p in split.database)


def test_copydays_originals_query_their_copies(tmp_path):
    raw, split, meta, standin = _make_and_prepare("copydays", tmp_path)
    n = standin["counts"]["originals"]
    assert len(split.queries) == n == standin["source"]["expect"]["originals"]
    assert len(split.database) == standin["counts"]["variants"] == n * 18 + standin["counts"]["strong"]
    truth = split.ground_truth["default"]
    for q, query in enumerate(split.queries):
        group = Path(query).stem[:4]
        positives = [split.database[i] for i in truth.positives_of(q)]
        assert all(Path(p).stem[:4] == group for p in positives) and len(positives) >= 18
    folders = {p.parent.relative_to(raw).as_posix() for p in raw.rglob("*.jpg")}
    assert {f"copydays_jpeg.tar.gz.d/jpegqual/{q}" for q in COPYDAYS_QUALITIES} <= folders
    assert {f"copydays_crop.tar.gz.d/crops/{c}" for c in COPYDAYS_CROPS} <= folders
    original = next((raw / "copydays_original.tar.gz.d" / "original").glob("*.jpg"))
    crop = raw / "copydays_crop.tar.gz.d" / "crops" / "80" / original.name
    with Image.open(original) as big, Image.open(crop) as small:
        assert small.size[0] * small.size[1] == pytest.approx(0.2 * big.size[0] * big.size[1], rel=0.02)


@pytest.mark.parametrize("dataset_id", ["copydays", "gldv2_retrieval"])
def test_the_same_seed_writes_the_same_bytes(tmp_path, dataset_id):
    first, again, other = (tmp_path / name for name in ("a", "b", "c"))
    for folder, seed in ((first, 5), (again, 5), (other, 6)):
        RETRIEVAL_MAKERS[dataset_id](dataset_id, REGISTRY[dataset_id], folder, seed=seed, images_per_class=1)
    assert _tree_bytes(first) == _tree_bytes(again)
    assert _tree_bytes(first) != _tree_bytes(other)
