"""Glue for the thin ``workflow_scripts``: logging to the rule's log, GPU claim, threads."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bobench.gpu import GpuClaim, claim_gpus

# Claims must live as long as the job: closing a lock file releases its GPU.
_HELD_CLAIMS: list[GpuClaim] = []


def start_job(snakemake: Any) -> logging.Logger:
    """Send stdout, stderr (tqdm progress included) and logging to the rule's
    ``log:`` file; for GPU rules, claim the device(s) before torch is imported
    and give torch the rule's thread count."""
    if snakemake.log:
        sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logger = logging.getLogger(f"bobench.rule.{snakemake.rule}")
    logger.info("rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards), snakemake.threads)
    gpus = int(getattr(snakemake.resources, "gpu", 0) or 0)
    if gpus:
        claim = claim_gpus(gpus)
        _HELD_CLAIMS.append(claim)
        logger.info("GPU: %s", claim.reason)
        import torch  # only now: CUDA_VISIBLE_DEVICES must be set first

        torch.set_num_threads(int(snakemake.threads))
        atexit.register(_log_peak_gpu_memory, logger)
    return logger


def job_threads(setting: str | int, entry: dict[str, Any], rehearsal: bool) -> int:
    """CPU threads of a job on a backbone (config ``job_threads``; ``entry``: the registry entry as the task
    builds it). A number is used as it is. ``auto`` is 2, except in a rehearsal (on a CPU), where a light
    backbone (timm, under 384 px, not a large variant) gets 1, so that two of its jobs share a 2-core CPU side
    by side (start-up is much of their time, and two single-threaded jobs do more than one with both threads);
    larger inputs and models, and Stable Diffusion, keep both cores and so run alone, which also keeps two
    memory-heavy jobs apart (two light training jobs peak under 16 GB)."""
    if setting != "auto":
        return int(setting)
    architecture = entry["architecture"]
    light = (
        architecture["library"] == "timm"
        and (entry.get("input") or {}).get("size", 1024) < 384
        and not re.search(r"large|huge|giant|x64", architecture["name"])
    )
    return 1 if rehearsal and light else 2


def _log_peak_gpu_memory(logger: logging.Logger) -> None:
    """One line per GPU job with its peak device memory (benchmarks/gpu_checks.sh gathers them)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        logger.info("peak GPU memory: %.2f GiB", torch.cuda.max_memory_allocated() / 2**30)


def folder(files: str | os.PathLike | Sequence[str | os.PathLike] | None) -> Path | None:
    """The folder that a rule's file input or output (one path, or a list of paths in one folder: a prepared
    dataset, a retrieval split) lies in; None for an input the rule does not have (``input.get(name)``)."""
    if files is None:
        return None
    paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
    parents = {path.parent for path in paths}
    if len(parents) != 1:
        raise ValueError(f"expected files in one folder, got {sorted(map(str, paths))}")
    return parents.pop()
