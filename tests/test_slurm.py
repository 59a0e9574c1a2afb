"""The cluster path for real: a small battle through a one-node SLURM cluster with four fake GPUs.

* profiles/slurm (the executor plugin: every job through sbatch, each GPU job with --gpus=1) gives the
  same results table as a plain local run of the same config;
* a local run inside a SLURM allocation (a batch job given 2 of the 4 GPUs, CUDA_VISIBLE_DEVICES preset
  by SLURM) gives that table too, and its GPU jobs claim only the allocated devices.

Opt-in, since it needs a running cluster: as root on Debian, `bash tests/slurm/start_cluster.sh` installs
and starts one (`tests/slurm/stop_cluster.sh` stops it), then `BOBENCH_TEST_SLURM=1 pytest tests/test_slurm.py`.
.ci/run does both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from small_battle import ROOT, small_battle_config, snakemake, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BOBENCH_TEST_SLURM") != "1", reason="opt-in: set BOBENCH_TEST_SLURM=1"),
]

# What a row measured and its value: equal between runs of one config, whatever executed it. (Provenance
# columns differ by design: wall times, host.)
KEYS = ["backbone", "task", "dataset", "protocol", "metric"]
METRIC_COLUMNS = [*KEYS, "value", "ci_low", "ci_high", "primary", "n_train", "n_test", "protocol_params", "config_hash"]
RESULTS = small_battle_config()["results_dir"]


def target(*files: str) -> list[str]:
    return [f"{RESULTS}/{file}" for file in files]


def new_run(tmp_path_factory, name: str) -> Path:
    return write_config(tmp_path_factory.mktemp(name), small_battle_config())


def results(directory: Path) -> pd.DataFrame:
    frame = pd.read_csv(directory / RESULTS / "results.csv")
    return frame[METRIC_COLUMNS].sort_values(KEYS).reset_index(drop=True)


def run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, " ".join(cmd) + "\n" + done.stdout[-5000:] + done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def cluster():
    """The running cluster (sinfo answers with an idle node): an opted-in run without one fails."""
    if shutil.which("sinfo") is None:
        pytest.fail("no SLURM here: run tests/slurm/start_cluster.sh as root first (Debian)")
    for _ in range(30):
        state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout
        if "idle" in state:
            return
        time.sleep(1)
    pytest.fail(f"the SLURM node is not idle (sinfo: {state.strip()!r}): run tests/slurm/start_cluster.sh as root")


@pytest.fixture(scope="module")
def local_results(tmp_path_factory) -> pd.DataFrame:
    """The reference: the same battle run locally, no SLURM."""
    directory = new_run(tmp_path_factory, "local")
    run(snakemake(directory, "--cores", "2", *target("results.csv")), timeout=1200)
    return results(directory)


def test_battle_through_slurm_equals_the_local_run(cluster, local_results, tmp_path_factory):
    directory = new_run(tmp_path_factory, "slurm")
    run(
        snakemake(
            directory,
            "--workflow-profile",
            str(ROOT / "profiles" / "slurm"),
            # The test cluster's partition instead of a real site's; memory, time and cores are each job's own
            # (the rules' resources: a few GB each, inside the test node's half of the machine's RAM).
            "--default-resources",
            "slurm_partition=debug",
            "--slurm-init-seconds-before-status-checks",
            "2",
            *target("results.csv"),
        ),
        timeout=1200,
    )
    pd.testing.assert_frame_equal(results(directory), local_results)
    config = small_battle_config()
    assert results(directory)["primary"].sum() == len(config["backbones"]) * len(config["tasks"])
    # Each GPU job went through sbatch --gpus=1 and kept SLURM's device assignment.
    log = (directory / RESULTS / "logs" / "extract_features" / "effnet_lite0_in1k" / "digits.log").read_text()
    assert "kept CUDA_VISIBLE_DEVICES=" in log
    assert any((directory / ".snakemake" / "slurm_logs").rglob("*.log"))


def test_local_run_inside_an_allocation_uses_exactly_its_devices(cluster, local_results, tmp_path_factory):
    directory = new_run(tmp_path_factory, "allocation")
    sbatch = ["sbatch", "--parsable", "--cpus-per-task=1", "--time=30", f"--chdir={directory}"]
    # Another job holds two GPUs first, so the allocation's devices are not simply the first ones.
    blocker = (
        run(
            [*sbatch, "--gpus=2", "--mem=100", "--output=blocker.out", "--wrap", "echo $CUDA_VISIBLE_DEVICES; sleep 600"],
            timeout=60,
        )
        .stdout.strip()
        .split(";")[0]
    )
    try:
        for _ in range(60):
            if (
                subprocess.run(["squeue", "-h", "-j", blocker, "-o", "%T"], capture_output=True, text=True).stdout.strip()
                == "RUNNING"
            ):
                break
            time.sleep(1)
        command = " ".join(snakemake(directory, *target("results.csv"), "--cores", "2", "--resources", "gpu=2"))
        job = [
            *sbatch,
            "--wait",
            "--gpus=2",
            "--mem=4000",
            "--output=allocation.out",
            "--wrap",
            f"echo $CUDA_VISIBLE_DEVICES; exec {command}",
        ]
        done = subprocess.run(job, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr + (directory / "allocation.out").read_text()[-5000:]
    finally:
        subprocess.run(["scancel", blocker], check=False)
    held = (directory / "blocker.out").read_text().split()[0].split(",")
    allocated = (directory / "allocation.out").read_text().split()[0].split(",")
    assert len(held) == len(allocated) == 2 and not set(held) & set(allocated), (held, allocated)

    pd.testing.assert_frame_equal(results(directory), local_results)
    logs = sorted((directory / RESULTS / "logs").glob("*/*/*.log"))
    claims = [
        re.search(r"GPU: claimed GPU\(s\) \[(\w+)\] of the 2 of CUDA_VISIBLE_DEVICES", log.read_text())
        for log in logs
        if "GPU:" in log.read_text()
    ]
    assert len(claims) == 6, logs  # extract_features, linear_probe and knn for each of the two backbones
    assert all(claim and claim[1] in allocated for claim in claims), [log.read_text()[:300] for log in logs]
