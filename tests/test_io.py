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


def test_the_pause_hook_stops_a_writer_before_its_rename(tmp_path):
    """The crash campaign's hook (tests/test_crashes.py): a matching write waits, complete but not renamed,
    and says where; a write that matches no pattern goes through."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from bobench.io import PAUSE_DIR_ENV, PAUSE_ENV

    (tmp_path / "pauses").mkdir()
    script = "from bobench.io import write_json\nwrite_json('other.json', 1)\nwrite_json('out/a.json', {'x': 1})\n"
    root = Path(__file__).resolve().parents[1]  # this checkout's bobench
    env = {**os.environ, PAUSE_ENV: os.pathsep.join(["*never*", "out/*.json"]), PAUSE_DIR_ENV: str(tmp_path / "pauses"),
           "PYTHONPATH": str(root)}  # fmt: skip
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    while not [p for p in (tmp_path / "pauses").iterdir() if not p.name.startswith(".")] and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert (tmp_path / "pauses" / str(writer.pid)).read_text() == "out/a.json"
        assert writer.poll() is None and (tmp_path / "other.json").exists()  # paused at the right write only
        assert not (tmp_path / "out" / "a.json").exists()
        assert [p.name for p in (tmp_path / "out").iterdir()][0].startswith(".a.partial-")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
