"""Give each running GPU job its own device on a multi-GPU machine.

Snakemake counts GPUs (``resources: gpu=1`` against ``--resources gpu=K``) but
never says *which* GPU a job should use (snakemake/snakemake#281). Each GPU job
therefore claims devices itself from a pool of lock files, one per GPU, with an
exclusive ``flock``. The kernel drops the lock when the process exits, even on
``kill -9``, so a crashed job never leaks a GPU.

An assignment that already exists (``CUDA_VISIBLE_DEVICES`` set by SLURM, a
container runtime or the user) is the pool: a job step given exactly its own
devices keeps them, and jobs of a local run inside a larger allocation (four
GPUs of one SLURM job, say) each claim their own among the allocated devices,
never one outside it. On a machine without GPUs nothing happens and the job
runs on the CPU.

This module must not import torch: ``CUDA_VISIBLE_DEVICES`` only takes effect
if it is set before CUDA initialises.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@dataclass
class GpuClaim:
    devices: list[int | str] | None  # None: the environment's assignment (or no GPU) is kept
    reason: str
    _handles: list[IO] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()


def count_local_gpus() -> int:
    """Number of NVIDIA GPUs on this machine, without initialising CUDA.

    ``BOBENCH_NUM_GPUS`` overrides the probe (for tests and unusual drivers).
    """
    override = os.environ.get("BOBENCH_NUM_GPUS")
    if override is not None:
        return int(override)
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def default_lock_dir() -> Path:
    # Per machine, not per workflow: two workflows on one box must not share a GPU either.
    return Path(os.environ.get("BOBENCH_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / f"bobench-gpu-locks-{os.getuid()}"))


def claim_gpus(
    n_requested: int,
    lock_dir: Path | None = None,
    timeout_s: float = 24 * 3600,
    poll_s: float = 2.0,
) -> GpuClaim:
    """Pin this process to ``n_requested`` free GPUs by setting ``CUDA_VISIBLE_DEVICES``.

    Blocks (polling) while all GPUs are held by other jobs, e.g. when more GPU
    jobs run than ``--resources gpu=K`` allows for, or when another workflow
    holds some.
    """
    if n_requested <= 0:
        return GpuClaim(None, "the job requests no GPU")
    preset = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if preset.strip():
        pool = [device.strip() for device in preset.split(",") if device.strip()]
        if len(pool) == n_requested:
            return GpuClaim(None, f"kept CUDA_VISIBLE_DEVICES={preset} from the environment (exactly this job's devices)")
        if len(pool) < n_requested:
            raise RuntimeError(f"the job requests {n_requested} GPUs but CUDA_VISIBLE_DEVICES={preset} allows {len(pool)}")
        where = f"the {len(pool)} of CUDA_VISIBLE_DEVICES"
    else:
        n_gpus = count_local_gpus()
        if n_gpus == 0:
            return GpuClaim(None, "no GPU on this machine: running on the CPU")
        if n_requested > n_gpus:
            raise RuntimeError(f"the job requests {n_requested} GPUs but this machine has {n_gpus}")
        pool, where = [str(d) for d in range(n_gpus)], f"{n_gpus}"
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        claim = _try_claim(n_requested, pool, where, lock_dir)
        if claim is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in claim.devices)
            return claim
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n_requested} free GPU(s) among {where} within {timeout_s:.0f} s (locks in {lock_dir})")
        time.sleep(poll_s)


def _try_claim(n_requested: int, pool: list[str], where: str, lock_dir: Path) -> GpuClaim | None:
    """Lock ``n_requested`` devices of ``pool`` (indices or UUIDs as CUDA_VISIBLE_DEVICES names them);
    the lock files are named by the device, so every job on the machine agrees on who holds which."""
    handles: list[IO] = []
    devices: list[int | str] = []
    for device in pool:
        handle = open(lock_dir / f"gpu{device.replace('/', '_')}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handles.append(handle)
        devices.append(int(device) if device.isdigit() else device)
        if len(devices) == n_requested:
            return GpuClaim(devices, f"claimed GPU(s) {devices} of {where}", handles)
    for handle in handles:
        handle.close()
    return None
