"""profiles/slurm for real: the tiny battle through a one-node SLURM cluster with fake GPUs.

Opt-in (it installs and starts SLURM daemons as root): BOBENCH_TEST_SLURM=1 pytest tests/test_slurm.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("BOBENCH_TEST_SLURM") != "1", reason="opt-in: set BOBENCH_TEST_SLURM=1"),
]


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs root and apt-get to set up a local SLURM cluster")
    subprocess.run(["bash", str(ROOT / "tests" / "slurm" / "start_cluster.sh")], check=True, timeout=600)


def test_tiny_battle_runs_through_slurm(cluster, tmp_path):
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["datasets"] = ["digits"]
    config.pop("dataset_splits")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [
            sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(tmp_path / "config.yaml"),
            "--workflow-profile", str(ROOT / "profiles" / "slurm"),
            # The test cluster's partition instead of a real site's; memory, time and cores are each job's own
            # (the rules' resources: a few GB each, inside the test node's half of the machine's RAM).
            "--default-resources", "slurm_partition=debug",
            "--slurm-init-seconds-before-status-checks", "2",
        ],
        capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    results = pd.read_csv(tmp_path / config["results_dir"] / "results.csv")
    assert results["primary"].sum() == len(config["backbones"]) * len(config["tasks"])
    # Each GPU job went through sbatch --gpus=1 and kept SLURM's device assignment.
    log = (tmp_path / config["results_dir"] / "logs" / "extract_features" / "effnet_lite0_in1k" / "digits.log").read_text()
    assert "kept CUDA_VISIBLE_DEVICES=" in log
    assert (tmp_path / ".snakemake" / "slurm_logs").is_dir()
