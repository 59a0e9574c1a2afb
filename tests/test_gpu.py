"""GPU claim: distinct devices per concurrent job, environment assignments win, CPU fallback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from bobench import gpu


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    # setenv (not delenv) so that pytest restores the variable's absence afterwards:
    # claim_gpus sets it, and it must not leak into later tests. Empty means unset.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("BOBENCH_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path


def test_no_gpu_means_cpu(clean_env, monkeypatch):
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "0")
    claim = gpu.claim_gpus(1)
    assert claim.devices is None
    assert "CPU" in claim.reason
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_existing_assignment_wins(clean_env, monkeypatch):
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    claim = gpu.claim_gpus(1)
    assert claim.devices is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_jobs_inside_an_allocation_share_out_its_devices(clean_env, monkeypatch):
    """A local run inside a 4-GPU SLURM allocation (CUDA_VISIBLE_DEVICES=4,5,6,7 preset for the whole run):
    each job claims its own allocated device, never one outside the allocation, and never all on the first."""
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "8")
    claims = []
    for _ in range(4):  # four concurrent jobs, each started with the run's environment
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
        claims.append(gpu.claim_gpus(1, poll_s=0.01, timeout_s=1))
        assert os.environ["CUDA_VISIBLE_DEVICES"] == str(claims[-1].devices[0])
    assert sorted(c.devices[0] for c in claims) == [4, 5, 6, 7]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    with pytest.raises(TimeoutError, match="among the 4 of CUDA_VISIBLE_DEVICES"):
        gpu.claim_gpus(1, poll_s=0.01, timeout_s=0.05)
    with pytest.raises(RuntimeError, match="allows 4"):
        gpu.claim_gpus(5)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b,GPU-3c4d")  # UUIDs work too
    assert gpu.claim_gpus(1, poll_s=0.01, timeout_s=1).devices == ["GPU-1a2b"]


def test_concurrent_claims_get_distinct_devices(clean_env, monkeypatch):
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "3")
    claims = []
    for _ in range(3):  # each claim stands for a separate job process
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        claims.append(gpu.claim_gpus(1, poll_s=0.01, timeout_s=1))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert sorted(c.devices[0] for c in claims) == [0, 1, 2]
    with pytest.raises(TimeoutError):
        gpu.claim_gpus(1, poll_s=0.01, timeout_s=0.05)
    claims[1].release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.claim_gpus(1, poll_s=0.01, timeout_s=1).devices == [1]


def test_multi_gpu_claim(clean_env, monkeypatch):
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "4")
    first = gpu.claim_gpus(2)
    assert first.devices == [0, 1]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    second = gpu.claim_gpus(2)
    assert second.devices == [2, 3]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    with pytest.raises(RuntimeError, match="requests 5 GPUs but this machine has 4"):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        gpu.claim_gpus(5)


def test_lock_is_released_when_a_job_is_killed(clean_env, monkeypatch):
    """A killed job (kill -9) never leaks its GPU: the kernel drops the flock."""
    monkeypatch.setenv("BOBENCH_NUM_GPUS", "1")
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from bobench.gpu import claim_gpus
            claim = claim_gpus(1)
            print(claim.devices, flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    assert child.stdout.readline().strip() == "[0]"
    with pytest.raises(TimeoutError):
        gpu.claim_gpus(1, poll_s=0.01, timeout_s=0.05)
    child.kill()
    child.wait()
    assert gpu.claim_gpus(1, poll_s=0.01, timeout_s=2).devices == [0]


@pytest.mark.slow
def test_a_local_run_inside_an_allocation_uses_exactly_its_devices(tmp_path):
    """A whole run inside a GPU allocation: CUDA_VISIBLE_DEVICES=5,7 preset (as SLURM sets it for a job given
    two GPUs) on a machine faked to have 8 (BOBENCH_NUM_GPUS; the jobs then compute on the CPU). Every GPU job
    claims one of the two allocated devices and says so in its log, never another one. tests/test_slurm.py
    does the same inside a real SLURM allocation."""
    from small_battle import small_battle_config, snakemake, write_config

    config = small_battle_config(tasks=("knn",))
    write_config(tmp_path, config)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5,7", "BOBENCH_NUM_GPUS": "8", "BOBENCH_GPU_LOCK_DIR": str(tmp_path / "locks")}
    targets = [f"{config['results_dir']}/features/{backbone}/digits.json" for backbone in config["backbones"]]
    run = subprocess.run(snakemake(tmp_path, *targets, "--cores", "2", "--resources", "gpu=2"), env=env,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for backbone in config["backbones"]:
        log = (tmp_path / config["results_dir"] / "logs" / "extract_features" / backbone / "digits.log").read_text()
        claimed = re.findall(r"GPU: claimed GPU\(s\) \[(\d+)\] of the 2 of CUDA_VISIBLE_DEVICES", log)
        assert claimed in (["5"], ["7"]), log[:500]
