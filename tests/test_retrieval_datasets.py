"""BoB's retrieval datasets on tiny copies the tests make in each dataset's real layout: every loader's split,
its determinism (same files → same split sha256), downloads checked against published md5s, layout checks,
the registry rules for retrieval benchmarks, and BoB's retrieval preprocessing."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from archives import write_tar
from bobench.datasets import ChecksumError, DataUnavailableError
from bobench.datasets.kinds import validate_dataset_entry
from bobench.retrieval.sources import RETRIEVAL_LOADERS, prepare_retrieval_dataset
from bobench.retrieval.splits import load_split
from bobench.retrieval.synthetic import write_copydays_layout

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "file:///nonexistent/bobench-test-download"


def _jpeg(seed: int, size=(16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _entry(loader: str, **source) -> dict:
    return {"name": "tiny", "domain": "natural", "licence": "test", "tasks": ["retrieval"],
            "source": {"loader": loader, "how_to_get": "Get it from the moon.", **source}}


def _prepare_twice(dataset_id, entry, raw, tmp_path, **kwargs):
    """Prepare into two folders: the split (and its hash) must not depend on anything but the files."""
    first = prepare_retrieval_dataset(dataset_id, entry, tmp_path / "a", raw, **kwargs)
    second = prepare_retrieval_dataset(dataset_id, entry, tmp_path / "b", raw, **kwargs)
    assert first["split_sha256"] == second["split_sha256"] and first["manifest"] == second["manifest"]
    split, meta = load_split(tmp_path / "a", verify=True)
    return split, meta


def test_class_folders_cub_layout_with_per_class_cut(tmp_path):
    """CUB-style archive (3 classes of 7, 3 and 1 images); INSTRE's box .txt files are not images."""
    members = {}
    for c, (name, n) in enumerate([("001.Albatross", 7), ("002.Auklet", 3), ("003.Cowbird", 1)]):
        for i in range(n):
            members[f"CUB/images/{name}/{name[4:]}_{i:02d}.jpg"] = _jpeg(10 * c + i)
            members[f"CUB/images/{name}/{name[4:]}_{i:02d}.txt"] = b"1 2 3 4"
    archive = write_tar(tmp_path / "raw" / "cub.tgz", members)
    entry = _entry("retrieval_class_folders", folder="cub.tgz.d/CUB/images", expect={"classes": 3, "images": 11},
                   files=[{"name": "cub.tgz", "url": UNREACHABLE, "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                           "extract": True}])
    split, meta = _prepare_twice("tiny_cub", entry, tmp_path / "raw", tmp_path)
    # floor(0.2 * 7) = 1 query, floor(0.2 * 3) = 0 raised to 1, a single image: database only.
    assert split.queries.tolist() == ["001.Albatross/Albatross_00.jpg", "002.Auklet/Auklet_00.jpg"]
    assert len(split.database) == 9 and meta["sizes"] == {"queries": 2, "database": 9, "positives_default": 8}
    assert split.ground_truth["default"].positives_of(0).tolist() == list(range(6))
    assert split.query_files()[0].shape == (16, 12, 3)  # the paths resolve to the images
    # The first 5 per class (iNat, ObjectNet, INSTRE): 5 + 3 + 1 images, 1 + 1 queries.
    cut, _ = _prepare_twice("tiny_cub", {**entry, "source": {**entry["source"], "per_class": 5}}, tmp_path / "raw", tmp_path / "cut")
    assert len(cut.queries) == 2 and len(cut.database) == 7
    with pytest.raises(DataUnavailableError, match="images: found 11, expected 12"):
        prepare_retrieval_dataset("tiny_cub", {**entry, "source": {**entry["source"], "expect": {"images": 12}}},
                                  tmp_path / "c", tmp_path / "raw")


def test_manual_dataset_names_where_to_get_it(tmp_path):
    entry = _entry("retrieval_class_folders", folder="objectnet-1.0/images", files=[])
    with pytest.raises(DataUnavailableError, match="objectnet-1.0/images, which is missing.\nGet it from the moon"):
        prepare_retrieval_dataset("objectnet", entry, tmp_path / "out", tmp_path / "raw")
    assert not (tmp_path / "out" / "split.json").exists()


@pytest.fixture()
def serve(tmp_path):
    """Serve a folder over HTTP on localhost: downloads go through the real code path."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def _gldv2_raw(tmp_path: Path) -> Path:
    """A GLDv2 mirror: index and test shards (a/b/c/<id>.jpg), md5 listings, the solution file."""
    mirror = tmp_path / "mirror"
    index_ids, test_ids = ["abc001", "abd002", "bcd003", "bce004"], ["fff010", "ffe011", "fed012"]
    for part, ids in (("index", index_ids), ("test", test_ids)):
        shard = write_tar(mirror / part / "images_000.tar", {f"{i[0]}/{i[1]}/{i[2]}/{i}.jpg": _jpeg(n) for n, i in enumerate(ids)})
        listing = mirror / "md5sum" / part / "md5.images_000.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text(f"{hashlib.md5(shard.read_bytes()).hexdigest()}  images_000.tar\n")
    (mirror / "solution.csv").write_text("id,images,Usage\nfff010,bcd003 abc001,Public\nffe011,None,Ignored\nfed012,bce004,Private\n")
    return mirror


def test_gldv2_downloads_shards_checked_against_published_md5(tmp_path, serve):
    mirror = _gldv2_raw(tmp_path)
    base = serve(mirror)
    entry = _entry("gldv2_retrieval", base_url=base, index_shards=1, test_shards=1, expect={"index": 4},
                   solution={"name": "retrieval_solution_v2.1.csv", "url": f"{base}/solution.csv", "sha256": "unpinned"})
    split, meta = _prepare_twice("tiny_gldv2", entry, tmp_path / "raw", tmp_path)
    assert split.queries.tolist() == ["test/images_000.tar.d/f/f/f/fff010.jpg", "test/images_000.tar.d/f/e/d/fed012.jpg"]
    assert [Path(p).stem for p in split.database] == ["abc001", "abd002", "bcd003", "bce004"]  # sorted by id
    truth = split.ground_truth["default"]
    assert truth.positives_of(0).tolist() == [0, 2] and truth.positives_of(1).tolist() == [3]  # "None" row dropped
    # A shard whose bytes differ from the published md5 never lands in the raw folder.
    listing = mirror / "md5sum" / "index" / "md5.images_000.txt"
    listing.write_text("0" * 32 + "  images_000.tar\n")
    with pytest.raises(ChecksumError, match="md5"):
        prepare_retrieval_dataset("tiny_gldv2", entry, tmp_path / "c", tmp_path / "fresh_raw")
    assert not (tmp_path / "fresh_raw" / "index" / "images_000.tar").exists()


def _revisited_raw(tmp_path: Path) -> Path:
    """An Oxford-like archive (flat) plus revisitop's gnd pickle: 2 queries, 6 database images."""
    raw = tmp_path / "raw"
    names = [f"all_souls_{i:06d}" for i in range(8)]
    write_tar(raw / "oxbuild_images-v1.tgz", {f"{n}.jpg": _jpeg(i) for i, n in enumerate(names)})
    gnd = {"qimlist": names[:2], "imlist": names[2:], "gnd": [
        {"bbx": [0.0, 0.0, 5.0, 5.0], "easy": [0, 1], "hard": [2], "junk": [3]},
        {"bbx": [1.0, 1.0, 6.0, 6.0], "easy": [], "hard": [4, 5], "junk": [0]},
    ]}
    (raw / "gnd_tiny.pkl").write_bytes(pickle.dumps(gnd, protocol=2))
    return raw


def test_revisited_protocols_from_the_gnd_pickle(tmp_path):
    raw = _revisited_raw(tmp_path)
    files = [{"name": "oxbuild_images-v1.tgz", "url": UNREACHABLE, "sha256": "unpinned", "extract": True},
             {"name": "gnd_tiny.pkl", "url": UNREACHABLE, "sha256": "unpinned"}]
    entry = _entry("revisited", files=files, ground_truth="gnd_tiny.pkl", expect={"queries": 2, "database": 6})
    split, meta = _prepare_twice("tiny_oxford", entry, raw, tmp_path)
    assert meta["protocols"] == ["easy", "hard", "medium"] and meta["primary_protocol"] == "medium"
    assert split.queries.tolist() == ["oxbuild_images-v1.tgz.d/all_souls_000000.jpg", "oxbuild_images-v1.tgz.d/all_souls_000001.jpg"]
    easy, medium, hard = (split.ground_truth[p] for p in ("easy", "medium", "hard"))
    assert easy.positives_of(0).tolist() == [0, 1] and easy.junk_of(0).tolist() == [2, 3]
    assert medium.positives_of(0).tolist() == [0, 1, 2] and medium.junk_of(0).tolist() == [3]
    assert hard.positives_of(0).tolist() == [2] and hard.junk_of(0).tolist() == [0, 1, 3]
    assert easy.positives_of(1).size == 0  # no easy positive: skipped under Easy when scored
    # The query boxes are kept: full images by default (BoB), cropped on request (revisitop's standard).
    assert split.query_boxes.tolist() == [[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 6.0, 6.0]]
    assert split.query_files()[0].shape == (16, 12, 3) and split.query_files(crop=True)[1].shape == (5, 5, 3)
    # A pickle that could run code is refused, not loaded.
    (raw / "gnd_tiny.pkl").write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [Path("x")]}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        prepare_retrieval_dataset("tiny_oxford", entry, tmp_path / "c", raw)


def test_copydays_queries_are_originals_and_positives_their_variants(tmp_path):
    """The synthetic writer and the real Copydays layout reader together; written twice, identical."""
    images = np.random.default_rng(0).integers(0, 256, (3, 20, 20, 1), dtype=np.uint8)
    raw = tmp_path / "raw"
    folders = write_copydays_layout(images, raw / "copydays", size=32, jpeg_qualities=[10, 50], crops=[30])
    entry = _entry("copydays", files=[], folders=folders, expect={"originals": 3, "variants": 12})
    split, meta = _prepare_twice("tiny_copydays", entry, raw, tmp_path)
    assert split.queries.tolist() == [f"copydays/original/{g}00.jpg" for g in ("1000", "1001", "1002")]
    # Per original: 1 strong, 2 JPEG qualities, 1 crop = 4 positives, all sharing its group.
    truth = split.ground_truth["default"]
    for q in range(3):
        assert [Path(split.database[i]).stem[:4] for i in truth.positives_of(q)] == [f"{1000 + q}"] * 4
    again = write_copydays_layout(images, raw / "copydays", size=32, jpeg_qualities=[10, 50], crops=[30])
    assert again == folders and load_split(tmp_path / "a", verify=True)[1]["split_sha256"] == meta["split_sha256"]


def test_split_files_are_verified_against_their_manifest(tmp_path):
    raw = _revisited_raw(tmp_path)
    files = [{"name": "oxbuild_images-v1.tgz", "sha256": "unpinned", "extract": True}, {"name": "gnd_tiny.pkl", "sha256": "unpinned"}]
    prepare_retrieval_dataset("tiny_oxford", _entry("revisited", files=files, ground_truth="gnd_tiny.pkl"), tmp_path / "out", raw)
    np.save(tmp_path / "out" / "queries.npy", np.array(["elsewhere.jpg", "x.jpg"]))
    with pytest.raises(ValueError, match="queries.npy fails its checksum"):
        load_split(tmp_path / "out", verify=True)
    assert not (tmp_path / "out" / "split.json").exists()  # unsealed: the next run makes it again
    with pytest.raises(FileNotFoundError, match="unfinished"):
        load_split(tmp_path / "out")


def test_registry_rules_for_retrieval_benchmarks():
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    benchmarks = {k for k, v in registry.items() if v["tasks"] == ["retrieval"]}
    assert benchmarks == {"synthetic_copies", "cub200", "inaturalist_val", "objectnet", "instre_s1", "gldv2_retrieval",
                          "roxford5k", "rparis6k", "copydays"}
    for dataset in benchmarks:
        validate_dataset_entry(dataset, registry[dataset])
        assert registry[dataset]["source"]["loader"] in RETRIEVAL_LOADERS
    cub = registry["cub200"]
    with pytest.raises(ValueError, match="splits .* does not apply to a retrieval benchmark"):
        validate_dataset_entry("cub200", {**cub, "splits": {"train": 1, "val": 0, "test": 1}})
    with pytest.raises(ValueError, match="source.loader = 'image_folder' is not a retrieval loader"):
        validate_dataset_entry("cub200", {**cub, "source": {**cub["source"], "loader": "image_folder"}})
    with pytest.raises(ValueError, match="per_class = 1 must be an integer of at least 2"):
        validate_dataset_entry("cub200", {**cub, "source": {**cub["source"], "per_class": 1}})


def test_bob_retrieval_preprocessing_and_the_clip_normalisation_switch():
    from bobench.backbones.transforms import EvalTransform
    from bobench.retrieval.transform import IMAGENET_MEAN, retrieval_transform, transform_params

    clip = {"algorithm": "CLIP"}
    native = EvalTransform(size=224, crop_pct=0.9, interpolation="bilinear", mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))
    assert retrieval_transform(native, transform_params(clip, {})) == native  # the default changes nothing
    bob = retrieval_transform(native, transform_params(clip, {"resize": "bob"}))
    assert (bob.resize_to, bob.size, bob.interpolation, bob.mean) == (256, 224, "bicubic", native.mean)
    for size, resize_to in ((384, 400), (448, 460), (256, 256), (128, 146)):
        assert retrieval_transform(EvalTransform(size, 1.0, "bicubic", (0, 0, 0), (1, 1, 1)), {"resize": "bob", "normalisation": "own"}).resize_to == resize_to
    buggy = transform_params(clip, {"clip_imagenet_normalisation": True})
    assert buggy == {"resize": "native", "normalisation": "imagenet"}
    assert retrieval_transform(native, buggy).mean == IMAGENET_MEAN
    # The bug only ever hit CLIP backbones.
    assert transform_params({"algorithm": "DINO"}, {"clip_imagenet_normalisation": True})["normalisation"] == "own"


def test_a_file_already_present_is_checked_against_its_published_md5(tmp_path):
    """GLDv2 shards, iNat, COCO train2017: no published sha256, but an md5; a manual copy is checked too."""
    import logging

    from bobench.datasets.archives import verified_sha256

    path = tmp_path / "shard.tar"
    path.write_bytes(b"the real bytes")
    good = hashlib.md5(b"the real bytes").hexdigest()
    digest = verified_sha256(path, "unpinned", logging.getLogger("test"), md5=good)
    assert digest == hashlib.sha256(b"the real bytes").hexdigest()
    assert json.loads(path.with_name("shard.tar.sha256").read_text())["md5"] == good  # hashed once, remembered
    with pytest.raises(ChecksumError, match="differs from the published"):
        verified_sha256(path, "unpinned", logging.getLogger("test"), md5="0" * 32)
