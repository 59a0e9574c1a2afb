"""Atomic writes: complete files or nothing."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from bobench.io import atomic_path, read_json, save_npz, sha256_file, write_json


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp.name.startswith(".out.partial-")
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert os.listdir(target.parent) == ["out.txt"]
    # Not owner-only like mkstemp's files: the usual umask applies.
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.npz"]


def test_json_and_npz_roundtrip(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(2), "z": tmp_path})
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "y": [0, 1], "z": str(tmp_path)}
    save_npz(tmp_path / "f.npz", a=np.ones(3))
    with np.load(tmp_path / "f.npz") as data:
        assert data["a"].sum() == 3
    assert len(sha256_file(tmp_path / "f.npz")) == 64


def test_stale_partial_files_of_the_same_output_are_removed(tmp_path):
    stale = tmp_path / ".out.partial-abc123.npz"
    other = tmp_path / ".other.partial-abc123.npz"
    stale.write_text("killed mid-write")
    other.write_text("another output's")
    with atomic_path(tmp_path / "out.npz") as tmp:
        tmp.write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-abc123.npz", "out.npz"]
