"""What every training job shares (fine-tuning, the frozen probe, detectors): seeding, divergence, checkpoints.

* :func:`seed_epoch` seeds every random source of one epoch from ``(seed, epoch)``,
  so a run resumed after epoch k computes what an uninterrupted run computes;
* :func:`save_checkpoint` / :func:`load_checkpoint` write the state after each
  epoch atomically and read it back only if it was made under the same protocol
  (options, seed and checkpoint format), else the job starts over.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import nn

from bobench.io import atomic_path

log = logging.getLogger(__name__)
T = TypeVar("T")


class TrainingDiverged(RuntimeError):
    """The loss became non-finite or ran away."""


def seed_worker(worker_id: int) -> None:
    """numpy in a loader worker, seeded from the worker's torch seed (itself from the epoch's generator)."""
    np.random.seed(torch.initial_seed() % 2**32)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed every random source of one epoch from (seed, epoch); the shuffling generator."""
    value = seed * 100_003 + epoch
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def save_checkpoint(path: Path, state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                    protocol: dict[str, Any]) -> None:
    payload = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "protocol": protocol}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, protocol: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None (none yet, or made under another protocol)."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("protocol") != protocol:
        log.warning("%s was made with other training options: starting over", path)
        return None
    return state


def step_with_oom_backoff(optimizer: torch.optim.Optimizer, micro_batch: int, device: torch.device,
                          accumulate: Callable[[int], T]) -> tuple[T, int]:
    """One optimiser step; ``accumulate(micro_batch)`` runs forward and backward over the whole batch in
    micro-batches of that size and returns what it summed. On out-of-memory the gradients are dropped,
    the micro-batch halved and the step redone on the same samples (the effective batch stays).
    Returns ``(accumulated, micro_batch used)``."""
    while True:
        try:
            optimizer.zero_grad(set_to_none=True)
            accumulated = accumulate(micro_batch)
            optimizer.step()
            return accumulated, micro_batch
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if micro_batch == 1:
                raise
            micro_batch //= 2
            log.warning("out of memory: micro-batch halved to %d (effective batch unchanged)", micro_batch)


def step_cap_reached(max_steps: int | None, steps_done: int) -> bool:
    """Whether a job capped at ``max_steps`` optimisation steps (the rehearsal's cap) has done them all."""
    return max_steps is not None and steps_done >= max_steps
