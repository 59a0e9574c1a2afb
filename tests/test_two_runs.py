"""Two runs at once (README "Two runs at once"): a second run in the same directory stops with Snakemake's lock
message while the first holds the directory, and a run in a second directory uses the first one's prepared data
through ``data_dir`` without preparing it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = {
    "backbones": ["random_effnet_lite0"],
    "datasets": ["digits"],
    "tasks": ["knn"],
    "dataset_splits": {"digits": {"train": 200, "val": 50, "test": 100}},
}
TARGET = "data/prepared/digits/meta.json"  # one quick job: scikit-learn's digits, prepared


def snakemake(workdir: Path, *args: str) -> list[str]:
    """The command in ``workdir`` (targets before --configfile and --config, which take every word after them)."""
    return [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "1", *args]


def test_second_run_stops_and_a_second_directory_shares_the_data(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for workdir in (first, second):
        workdir.mkdir()
        (workdir / "my.yaml").write_text(yaml.safe_dump(CONFIG))
    # The first run, frozen (SIGSTOP) as soon as it holds the directory's lock: the second then meets the lock
    # whatever the machine's speed.
    running = subprocess.Popen(
        snakemake(first, TARGET, "--configfile", str(first / "my.yaml")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    locks = first / ".snakemake" / "locks"
    deadline = time.monotonic() + 300
    while not (locks.is_dir() and any(locks.iterdir())):
        assert running.poll() is None, running.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the first run never locked its directory"
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGSTOP)
    try:
        again = subprocess.run(
            snakemake(first, TARGET, "--configfile", str(first / "my.yaml")), capture_output=True, text=True, timeout=300
        )
    finally:
        os.killpg(running.pid, signal.SIGCONT)
    assert again.returncode != 0
    assert "Directory cannot be locked" in again.stdout + again.stderr
    output = running.communicate(timeout=600)[0]
    assert running.returncode == 0, output[-3000:]
    assert (first / TARGET).is_file()

    # A second directory (its own results and lock) reading the first one's data: nothing to prepare again.
    shared = subprocess.run(
        snakemake(
            second, str(first / TARGET), "-n", "--configfile", str(second / "my.yaml"), "--config", f"data_dir={first / 'data'}"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shared.returncode == 0, shared.stdout[-3000:] + shared.stderr[-3000:]
    assert "Nothing to be done" in shared.stdout + shared.stderr
    plan = subprocess.run(
        snakemake(second, "-n", "--configfile", str(second / "my.yaml"), "--config", f"data_dir={first / 'data'}"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert "rule prepare_dataset" not in plan.stdout and "rule knn" in plan.stdout
