"""Crashes and reruns of a whole run, end to end (issue 19, items 3 and 4), on a tiny battle.

**Crash campaign.** One run in a fresh directory is stopped at every moment of :data:`MOMENTS` (kill -9 of
its whole process group, Ctrl-C, SIGTERM), each time followed by the README's recovery (after kill -9
``snakemake --unlock``, then the same command again). A moment is a write: with
``BOBENCH_PAUSE_BEFORE_RENAME`` (``bobench.io``'s test-only hook) the job that reaches a matching
destination stops with the temporary file complete and not yet renamed, the worst moment for a crash,
and the test signals the run there. Every pattern not yet hit is armed in every restart, so a moment is hit
at its first occurrence whatever order the scheduler picks, and the restarts are chained: each recovery
run is itself the next one stopped, and the last one finishes. After each stop nothing under the data and
results folders that looks complete may be partial; at the end the results table must equal an
uninterrupted run's, bit for bit.

**Bitwise rerun.** The uninterrupted reference and the campaign's run both start from scratch in fresh
directories: their results tables (less the columns :data:`NOT_REPRODUCIBLE` names and how each run went in ``protocol_params``), bootstrap replicates,
ranking, report tables and figures must be byte-identical. (The campaign's run is the second run from
scratch: killed jobs are rerun from their start or resumed from an epoch checkpoint, so it checks
everything a clean second run would, and resumption besides; one run fewer keeps the suite's time down.)
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bobench.datasets import load_prepared
from bobench.io import PAUSE_DIR_ENV, PAUSE_ENV
from small_battle import ROOT, snakemake, write_config

pytestmark = pytest.mark.slow

KEYS = ["backbone", "task", "dataset", "protocol", "metric"]
#: Columns of results.csv that differ between two runs by design: how long each job ran. (``host`` too,
#: between machines; these runs share one.)
NOT_REPRODUCIBLE = ["wall_time_s", "git_commit"]  # git_commit: a commit made while the test runs changes it
#: Keys of a row's ``protocol_params`` that say how the run went: timings (a training history's ``seconds``,
#: ``train_seconds``) and the epoch a job resumed from (a killed fine-tune resumes from its checkpoint; the
#: numbers it then computes are the same). Dropped before the comparison.
RUN_KEYS = ("seconds", "train_seconds", "resumed_from_epoch")


def campaign_config() -> dict:
    """config/test.yaml cut to what the campaign needs: two CNNs (one pretrained) on 300 digits at 32 px
    (probe, kNN), one fine-tune, one detector; every aggregate rule runs."""
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(
        backbones=["effnet_lite0_in1k", "random_effnet_lite0"],
        datasets=["digits", "synthetic_objects"],
        tasks=["linear_probe", "knn", "finetune", "detection"],
        dataset_splits={"digits": {"train": 150, "val": 50, "test": 100}, "synthetic_objects": {"train": 8, "test": 4}},
        task_datasets={"finetune": ["digits"], "knn": ["digits"]},
        task_backbones={"finetune": ["random_effnet_lite0"], "detection": ["random_effnet_lite0"]},
    )
    config["extraction"]["image_size"] = 32
    config["finetune"]["image_size"] = 32
    config["linear_probe"]["c_grid"] = [0.1]  # one fit per probe: the probes were a quarter of the CPU time
    for section in ("ood", "ood_detection", "frozen_probe"):
        config.pop(section)
    return config


RESULTS, DATA = campaign_config()["results_dir"], campaign_config()["data_dir"]


@dataclass(frozen=True)
class Moment:
    name: str
    pattern: str  # the write (destination glob) at which the run is stopped
    signal: signal.Signals = signal.SIGKILL  # sent to the run's whole process group


MOMENTS = [
    Moment("preparation (arrays written, meta.json not)", f"*{DATA}/prepared/digits/val_images.npy"),
    Moment("extraction (npz renamed, json not)", f"*{RESULTS}/features/*/digits.json"),
    Moment("linear probe", f"*{RESULTS}/cells/linear_probe/*"),
    Moment("fine-tune epoch checkpoint", f"*{RESULTS}/checkpoints/finetune/*"),
    Moment("fine-tune weights (resumes from its checkpoint)", f"*{RESULTS}/models/finetune/*"),
    Moment("detector epoch checkpoint", f"*{RESULTS}/checkpoints/detection/*"),
    Moment("kNN, Ctrl-C", f"*{RESULTS}/cells/knn/*", signal.SIGINT),
    Moment("collect (results.csv renamed, parquet not)", f"*{RESULTS}/results.parquet"),
    Moment("rank, SIGTERM (a scheduler's stop)", f"*{RESULTS}/ranking/ranking_tasks.csv", signal.SIGTERM),
    Moment("figures", f"*{RESULTS}/figures/*.pdf"),
]


def run(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake(directory, *args, "--cores", "2"), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    directory = write_config(tmp_path_factory.mktemp("reference"), campaign_config())
    done = run(directory)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return directory


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_at_next_moment(directory: Path, pending: list[Moment], pause_dir: Path) -> tuple[list[Moment], list[Path]]:
    """Run with every pending moment armed; signal the run at the first one reached. Returns the moments
    reached and the destinations paused at."""
    pause_dir.mkdir()
    env = {**os.environ, PAUSE_ENV: os.pathsep.join(m.pattern for m in pending), PAUSE_DIR_ENV: str(pause_dir)}
    with open(pause_dir.with_suffix(".log"), "w") as log:
        # SIGINT back to its default in the run: a shell starts a background job (`pytest ... &`) with SIGINT
        # ignored, which its children inherit, and Python then installs no KeyboardInterrupt handler: the run
        # would go on through the test's Ctrl-C.
        process = subprocess.Popen(snakemake(directory, "--cores", "2"), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True, preexec_fn=default_sigint)  # fmt: skip
    deadline = time.monotonic() + 600
    while not [p for p in pause_dir.iterdir() if not p.name.startswith(".")]:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended without reaching {[m.name for m in pending]}:\n"
                        + pause_dir.with_suffix(".log").read_text()[-5000:])  # fmt: skip
        time.sleep(0.1)
    # Destinations as the jobs named them: relative to the run's directory.
    paused = [directory / p.read_text() for p in pause_dir.iterdir() if not p.name.startswith(".")]
    reached = [m for m in pending if any(fnmatch.fnmatch(str(p), m.pattern) for p in paused)]
    os.killpg(process.pid, reached[0].signal)
    try:
        process.wait(timeout=300)  # a graceful stop waits for its jobs to end: minutes on a loaded machine
    finally:  # what a graceful stop left running (nothing, if it is graceful): ended before the checks
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return reached, paused


def assert_nothing_complete_looking_is_partial(directory: Path) -> None:
    """Every file under the data and results folders that has its final name reads in full (temporary
    files are named ``.<name>.partial-*``; logs are appended as a job goes and are not outputs)."""
    import torch

    for path in [*(directory / DATA).rglob("*"), *(directory / RESULTS).rglob("*")]:
        if not path.is_file() or path.name.startswith(".") or "logs" in path.relative_to(directory).parts:
            continue
        suffix = path.suffix
        if suffix == ".npy":
            np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:  # every member, checked against its CRC-32
                [arrays[key] for key in arrays.files]
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".csv":
            pd.read_csv(path)
        elif suffix == ".parquet":
            pd.read_parquet(path)
        elif suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".png":
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), path
        elif suffix == ".pdf":
            assert path.read_bytes().rstrip().endswith(b"%%EOF"), path
        elif suffix in (".yaml", ".yml"):
            yaml.safe_load(path.read_text())
        else:
            assert path.stat().st_size > 0, path
    # A sealed folder or pair is whole: features' json marks its npz, meta.json its prepared arrays.
    for info in (directory / RESULTS / "features").rglob("*.json"):
        if info.name.startswith("."):  # a writer's temporary file (``.<name>.partial-*``), not a seal
            continue
        with np.load(info.with_suffix(".npz")) as arrays:
            assert {"train_features", "val_features", "test_features"} <= set(arrays.files), info
    for meta in (directory / DATA / "prepared").rglob("meta.json"):
        load_prepared(meta.parent, verify=True)


@pytest.fixture(scope="module")
def campaign(reference, tmp_path_factory) -> tuple[Path, list[str]]:
    directory = write_config(tmp_path_factory.mktemp("campaign"), campaign_config())
    pending, stops = list(MOMENTS), []
    while pending:
        reached, paused = stop_at_next_moment(directory, pending, directory / f"pause{len(stops)}")
        stops.append(f"{reached[0].name} ({reached[0].signal.name}) at {', '.join(str(p) for p in paused)}")
        for path in paused:  # stopped before the rename: the destination was never written
            assert not path.exists(), (stops[-1], path)
        assert_nothing_complete_looking_is_partial(directory)
        pending = [m for m in pending if m not in reached]
        if reached[0].signal == signal.SIGKILL:  # the README's recovery: --unlock, then the same command
            unlock = run(directory, "--unlock")
            assert unlock.returncode == 0, unlock.stderr
    done = run(directory)  # the last recovery runs to the end
    assert done.returncode == 0, "\n".join(stops) + done.stdout[-5000:] + done.stderr[-5000:]
    return directory, stops


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def metric_table(directory: Path) -> pd.DataFrame:
    frame = pd.read_csv(directory / RESULTS / "results.csv")
    params = frame["protocol_params"].map(lambda text: json.dumps(without_timings(json.loads(text)), sort_keys=True))
    frame = frame.assign(protocol_params=params)
    return frame.drop(columns=NOT_REPRODUCIBLE).sort_values(KEYS).reset_index(drop=True)


def replicate_table(directory: Path) -> pd.DataFrame:
    frame = pd.read_parquet(directory / RESULTS / "replicates.parquet")
    params = frame["protocol_params"].map(lambda text: json.dumps(without_timings(json.loads(text)), sort_keys=True))
    return frame.assign(protocol_params=params)


def test_every_stop_reruns_to_the_uninterrupted_table(reference, campaign):
    directory, stops = campaign
    assert len(stops) >= 8, stops  # moments reached at once share a stop
    expected, got = metric_table(reference), metric_table(directory)
    assert set(expected.task) >= {"classification", "detection"} and set(expected.protocol) >= {"linear_probe", "knn", "finetune"}
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    leftovers = [p for root in (DATA, RESULTS) for p in (directory / root).rglob("*") if ".partial-" in p.name]
    assert not leftovers, leftovers  # the reruns cleaned up after the killed writers


def test_a_rerun_from_scratch_is_bitwise_identical(reference, campaign):
    directory, _ = campaign
    expected, got = metric_table(reference), metric_table(directory)
    assert got.to_csv(index=False) == expected.to_csv(index=False)
    # The replicates (bit for bit) with the setting each row came from, less how its run went.
    pd.testing.assert_frame_equal(replicate_table(directory), replicate_table(reference), check_exact=True)
    outputs = [p for name in ("ranking", "tables", "figures") for p in (reference / RESULTS / name).rglob("*") if p.is_file()]
    files = sorted(p.relative_to(reference / RESULTS) for p in outputs)
    assert any(p.suffix == ".png" for p in files) and any(p.suffix == ".pdf" for p in files)
    differ = [str(p) for p in files if (reference / RESULTS / p).read_bytes() != (directory / RESULTS / p).read_bytes()]
    assert not differ, differ


def test_a_corrupt_prepared_file_is_rebuilt_by_rerunning_the_command(reference, campaign):
    """Item 2 through Snakemake: the first rerun after a prepared file changed stops at the first job that
    reads it, with the recovery in its message; the second (the same command) prepares it again and reruns
    what depends on it, to the same table. (Last in this module: it changes the campaign's directory.)"""
    directory, _ = campaign
    bad = directory / DATA / "prepared" / "digits" / "val_images.npy"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    first = run(directory)
    output = first.stdout + first.stderr
    assert first.returncode != 0 and f"{DATA}/prepared/digits/val_images.npy fails its checksum" in output, output[-5000:]
    assert "Removed its seal" in output and "reruns rule prepare_dataset" in output
    second = run(directory)
    assert second.returncode == 0, second.stdout[-5000:] + second.stderr[-5000:]
    assert "prepare_dataset" in second.stdout + second.stderr
    pd.testing.assert_frame_equal(metric_table(directory), metric_table(reference), check_exact=True)
