"""Glue for the thin ``workflow_scripts``: logging to the rule's log, GPU claim."""

from __future__ import annotations

import logging
import sys
from typing import Any

from bobench.gpu import claim_gpus


def start_job(snakemake: Any) -> logging.Logger:
    """Send stdout, stderr (tqdm progress) and logging to the rule's ``log:`` file,
    and claim the job's GPU(s) before torch is imported."""
    if snakemake.log:
        stream = open(snakemake.log[0], "w", buffering=1)
        sys.stdout = sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logger = logging.getLogger(f"bobench.rule.{snakemake.rule}")
    logger.info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    gpus = int(getattr(snakemake.resources, "gpu", 0) or 0)
    claim = claim_gpus(gpus)
    logger.info("GPU: %s", claim.reason)
    # Keep the lock files open for the life of the job.
    logger.gpu_claim = claim  # type: ignore[attr-defined]
    if "threads" in dir(snakemake) and snakemake.threads:
        import torch

        torch.set_num_threads(int(snakemake.threads))
    return logger
