"""A derived file that fails its checksum, for each kind (prepared dataset, input cache, cached features,
retrieval split, stand-in data): the reader stops with a message naming the file, the rule that makes it and
the command that rebuilds it, and removes the folder's seal, so that nothing reads it and the next run makes
it again (:mod:`bobench.data_faults`). The whole loop through Snakemake is in tests/test_crashes.py."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import bobench.datasets.input_cache as input_cache
from bobench.data_faults import RERUN
from bobench.datasets import ChecksumError, PreparedDataError, load_prepared, write_prepared
from bobench.datasets.input_cache import InputCacheError, load_input_cache, write_input_cache
from bobench.datasets.sources import prepare_dataset
from bobench.features import FeatureCacheError, FeatureSet
from photos import jpegs

ROOT = Path(__file__).resolve().parents[1]


def flip_a_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_unsealed(message: str, bad: Path, seal: Path, rule: str) -> None:
    assert str(bad) in message and f"Removed its seal {seal}" in message and f"reruns rule {rule}" in message
    assert RERUN in message
    assert not seal.exists()


def toy_prepared(out: Path) -> Path:
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 256, (n, 5, 6, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) % 3)
              for s, n in (("train", 12), ("val", 6), ("test", 9))}  # fmt: skip
    write_prepared(out, splits, ["a", "b", "c"], {"dataset_id": "toy"})
    return out


def test_a_prepared_dataset_failing_its_checksum_is_unsealed(tmp_path):
    root = toy_prepared(tmp_path / "prepared" / "toy")
    flip_a_byte(root / "val_images.npy")
    load_prepared(root)  # a cheap open (no job's) reads no data and removes nothing
    with pytest.raises(PreparedDataError) as error:
        load_prepared(root, verify=True)
    assert_unsealed(str(error.value), root / "val_images.npy", root / "meta.json", "prepare_dataset")
    assert "fails its checksum" in str(error.value)
    with pytest.raises(PreparedDataError, match="never prepared or its preparation did not finish.*rule prepare_dataset"):
        load_prepared(root)  # nothing reads it until it is prepared again


@pytest.mark.parametrize("damage", ["truncated", "meta.json garbled"])
def test_a_damaged_prepared_dataset_is_unsealed(tmp_path, damage):
    root = toy_prepared(tmp_path / "toy")
    if damage == "truncated":
        bad = root / "train_labels.npy"
        bad.write_bytes(bad.read_bytes()[:-8])
    else:
        bad = root / "meta.json"
        bad.write_text(bad.read_text()[:50])
    with pytest.raises(PreparedDataError) as error:
        load_prepared(root, verify=True)
    assert_unsealed(str(error.value), bad, root / "meta.json", "prepare_dataset")


@pytest.fixture
def cache(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    splits = {
        s: (jpegs(raw, n, seed), np.arange(n, dtype=np.int64) % 2)
        for seed, (s, n) in enumerate([("train", 6), ("val", 2), ("test", 2)])
    }
    write_prepared(tmp_path / "prepared", splits, ["a", "b"], {"test_split": "test"})
    prepared = load_prepared(tmp_path / "prepared", verify=True)
    write_input_cache(prepared, tmp_path / "cache", 64)
    return prepared, tmp_path / "cache"


def test_an_input_cache_changed_since_it_was_made_is_hashed_and_unsealed(cache, monkeypatch):
    prepared, root = cache
    hashed = []
    real = input_cache.sha256_file
    monkeypatch.setattr(input_cache, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    assert load_input_cache(root, prepared) is not None and hashed == []  # unchanged: trusted without a read
    os.utime(root / "train_index.npy")  # touched, same bytes: hashed once, and passes
    assert load_input_cache(root, prepared) is not None and hashed == ["train_index.npy"]
    flip_a_byte(root / "train_pixels.npy", offset=200)  # the job itself does not verify: the changed mtime does
    with pytest.raises(InputCacheError) as error:
        load_input_cache(root, prepared)
    assert_unsealed(str(error.value), root / "train_pixels.npy", root / "cache.json", "prepare_input_cache")
    with pytest.raises(InputCacheError, match="never made or did not finish.*rule prepare_input_cache"):
        load_input_cache(root, prepared)


def test_an_input_cache_failing_its_checksum_with_its_stat_restored_is_caught_by_verify(cache):
    prepared, root = cache
    path = root / "train_pixels.npy"
    stat = path.stat()
    flip_a_byte(path, offset=200)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # bit rot: the bytes change, not the stat
    with pytest.raises(InputCacheError) as error:
        load_input_cache(root, prepared, verify=True)
    assert_unsealed(str(error.value), path, root / "cache.json", "prepare_input_cache")


@pytest.mark.parametrize("damage", ["a byte flipped", "truncated", "json garbled"])
def test_cached_features_that_cannot_be_read_are_unsealed(tmp_path, damage):
    npz, info = tmp_path / "features" / "bb" / "ds.npz", tmp_path / "features" / "bb" / "ds.json"
    FeatureSet({"train_features": np.ones((50, 8), np.float32), "train_labels": np.arange(50)}, {"fingerprint": "x"}).write(
        npz, info
    )
    bad = info if damage == "json garbled" else npz
    if damage == "a byte flipped":
        flip_a_byte(npz, offset=300)  # inside the features: the zip member's CRC-32 catches it
    else:
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(FeatureCacheError) as error:
        FeatureSet.load(str(npz), str(info))
    assert_unsealed(str(error.value), npz, info, "extract_features")


def test_a_retrieval_split_failing_its_checksum_is_unsealed(tmp_path):
    from bobench.retrieval.splits import RetrievalSplit, load_split, write_split

    labels = np.arange(12) % 3
    split = RetrievalSplit.from_class_folders(tmp_path, np.array([f"{i}.png" for i in range(12)]), labels, 1, {})
    write_split(tmp_path / "split", split, {})
    flip_a_byte(tmp_path / "split" / "database.npy")
    with pytest.raises(ValueError) as error:
        load_split(tmp_path / "split", verify=True)
    assert_unsealed(str(error.value), tmp_path / "split" / "database.npy", tmp_path / "split" / "split.json",
                    "prepare_retrieval_dataset")  # fmt: skip


def digits_entry(sha256: str) -> dict:
    entry = copy.deepcopy(yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())["digits"])
    entry["source"]["sha256"] = sha256
    return entry


def test_stand_in_data_failing_its_checksum_is_unsealed(tmp_path):
    """A rehearsal prepares from a stand-in's files, checked against the sums its maker recorded in
    STANDIN.json: a file that fails them makes the maker (rule make_standin_data) run again."""
    raw = tmp_path / "raw" / "digits"
    raw.mkdir(parents=True)
    (raw / "STANDIN.json").write_text("{}")
    entry = {**digits_entry("0" * 64), "standin": True}
    with pytest.raises(ChecksumError) as error:
        prepare_dataset("digits", entry, tmp_path / "prepared" / "digits", raw)
    assert "Removed its seal" in str(error.value) and "reruns rule make_standin_data" in str(error.value)
    assert not (raw / "STANDIN.json").exists()


def test_raw_data_failing_its_checksum_says_how_to_get_it_again(tmp_path):
    with pytest.raises(ChecksumError, match=f"checksum mismatch.*delete it and {re.escape(RERUN)}, which downloads it again"):
        prepare_dataset("digits", digits_entry("0" * 64), tmp_path / "prepared", tmp_path / "raw")
