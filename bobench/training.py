"""What every training job shares (fine-tuning, the frozen probe, detectors): one resumable epoch loop.

* :func:`epoch_loader` shuffles an epoch; with a micro-batch it collates micro-batches, which
  :class:`OptimisationSteps` groups into steps and :func:`step_over_micro_batches` accumulates, so host
  memory is bounded by the micro-batch, not the effective batch;
* :func:`run_epochs` is that loop: it resumes from the last epoch's checkpoint,
  seeds each epoch, runs the optimisation steps (out-of-memory back-off and
  divergence stop included), stops after ``max_steps`` steps, and writes a
  checkpoint after every epoch. The job supplies its batches, its step and what
  it records after an epoch (evaluation, selection, log line);
* :func:`seed_epoch` seeds every random source of one epoch from ``(seed, epoch)``,
  so a run resumed after epoch k computes what an uninterrupted run computes;
* :func:`save_checkpoint` / :func:`load_checkpoint` write the state after each
  epoch atomically and read it back only if it was made under the same protocol
  (options, seed and checkpoint format), else the job starts over.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

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


def step_over_micro_batches(optimizer: torch.optim.Optimizer, micro_batches: Iterable[tuple[torch.Tensor, ...]],
                            chunk: int, device: torch.device, backward: Callable[[tuple[torch.Tensor, ...]], float]
                            ) -> tuple[float, int]:
    """One optimiser step over the micro-batches a loader delivers (tuples of tensors, e.g. images and
    targets): ``backward(rows)`` runs forward and backward on a chunk of at most ``chunk`` rows of one and
    returns its (weighted) loss; the gradients of all chunks add up before the step.

    Out-of-memory: each chunk's gradient is computed into fresh buffers and added to the step's sum once its
    backward has finished (the same additions, in the same order, as autograd's own accumulation), so a chunk
    that fails halfway leaves nothing behind: ``chunk`` is halved and only that chunk is redone, on the same
    rows. Finished chunks stay, and the micro-batch already loaded is not needed again. The price is one
    gradient-sized buffer at the end of each backward, when the activations are already freed.
    Returns ``(summed loss, chunk used)``."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for part in micro_batches:
        start, n = 0, len(part[0])
        while start < n:
            stop = min(start + chunk, n)
            summed = [p.grad for p in params]
            for p in params:
                p.grad = None
            try:
                total += backward(tuple(t[start:stop] for t in part))
            except torch.OutOfMemoryError:
                for p, grad in zip(params, summed):
                    p.grad = grad
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if chunk == 1:
                    raise
                chunk //= 2
                log.warning("out of memory: micro-batch halved to %d (effective batch unchanged)", chunk)
                continue
            with torch.no_grad():
                for p, grad in zip(params, summed):
                    if grad is not None:
                        p.grad = grad if p.grad is None else grad.add_(p.grad)
            start = stop
    optimizer.step()
    return total, chunk


def step_cap_reached(max_steps: int | None, steps_done: int) -> bool:
    """Whether a job capped at ``max_steps`` optimisation steps (the rehearsal's cap) has done them all."""
    return max_steps is not None and steps_done >= max_steps



def training_precision(precision: str, device: torch.device, logger: logging.Logger = log) -> torch.dtype | None:
    """The autocast dtype to train in (``precision`` as the options name it), or None for fp32."""
    from bobench.features import resolve_precision

    autocast_dtype = resolve_precision(precision, device)
    if autocast_dtype == torch.float16:  # a GPU without bf16: fp16 training would need loss scaling
        logger.info("no bf16 on this device: training in fp32")
        autocast_dtype = None
    return autocast_dtype


def epoch_loader(dataset: torch.utils.data.Dataset, batch_size: int, generator: torch.Generator, num_workers: int,
                 micro_batch: int | None = None, **kwargs: Any) -> torch.utils.data.DataLoader:
    """One epoch's training batches: shuffled by the epoch's generator (:func:`seed_epoch`), workers seeded
    from it, the last incomplete batch dropped. ``kwargs`` go to the DataLoader (collate_fn, pin_memory).

    With ``micro_batch`` the loader collates micro-batches, each optimisation step's ``batch_size`` samples
    in consecutive pieces of ``micro_batch`` (:class:`MicroBatchSampler`; :class:`OptimisationSteps` groups
    them back into steps): the samples of every step are those of the whole-batch loader, and host memory
    holds about ``(num_workers × prefetch_factor + 2) × micro_batch`` images instead of that many batches."""
    if micro_batch is None:
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
            num_workers=num_workers, worker_init_fn=seed_worker if num_workers else None, **kwargs,
        )
    # The same RandomSampler the whole-batch loader makes, drawing the same permutation from the generator.
    sampler = MicroBatchSampler(torch.utils.data.RandomSampler(dataset, generator=generator), batch_size, micro_batch)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, generator=generator,
        num_workers=num_workers, worker_init_fn=seed_worker if num_workers else None, **kwargs,
    )


class MicroBatchSampler(torch.utils.data.Sampler[list[int]]):
    """The index lists of ``BatchSampler(sampler, batch_size, drop_last=True)``, each cut into consecutive
    micro-batches of ``micro_batch`` (the last one of a step shorter where ``micro_batch`` does not divide it)."""

    def __init__(self, sampler: torch.utils.data.Sampler[int], batch_size: int, micro_batch: int):
        if batch_size < 1 or micro_batch < 1:
            raise ValueError(f"batch_size and micro_batch must be positive, got {batch_size} and {micro_batch}")
        self.batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True)
        self.batch_size, self.micro_batch = batch_size, min(micro_batch, batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            for start in range(0, len(batch), self.micro_batch):
                yield batch[start : start + self.micro_batch]

    def __len__(self) -> int:
        return len(self.batches) * -(-self.batch_size // self.micro_batch)


class OptimisationSteps:
    """A micro-batch loader (:func:`epoch_loader` with ``micro_batch``) as optimisation steps: each step is
    an iterator over its micro-batches, read from the loader as the step consumes them, so one micro-batch
    at a time is on the host outside the loader's prefetch queue. Steps must be consumed in order."""

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader, self.sampler = loader, loader.batch_sampler
        if not isinstance(self.sampler, MicroBatchSampler):
            raise TypeError("OptimisationSteps needs a loader made by epoch_loader(..., micro_batch=...)")

    def __len__(self) -> int:
        return len(self.sampler.batches)

    def __iter__(self) -> Iterator[Iterator[Any]]:
        parts = iter(self.loader)
        per_step = -(-self.sampler.batch_size // self.sampler.micro_batch)
        for _ in range(len(self)):
            yield itertools.islice(parts, per_step)


@dataclass
class EpochDone:
    """What :func:`run_epochs` hands ``end_epoch`` after an epoch's optimisation steps."""

    index: int  # 0-based
    results: list[Any]  # what train_step returned, one per optimisation step of this epoch
    steps: int  # optimisation steps of the job so far (resumed ones included)
    started: float  # time.perf_counter() at the epoch's start
    state: dict[str, Any]  # what the checkpoint will hold: end_epoch adds to it (history, best epoch)


@dataclass
class EpochsRun:
    """Where :func:`run_epochs` left the job."""

    state: dict[str, Any]  # the last checkpoint's state (history, best epoch, …)
    micro_batch: int  # what it ended at (smaller than asked after an out-of-memory back-off)
    resumed_from_epoch: int
    steps: int  # optimisation steps of the job


def run_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    seed: int,
    micro_batch: int,
    max_steps: int | None,
    checkpoint_path: str | Path,
    protocol: dict[str, Any],
    start_epoch: Callable[[int, torch.Generator], Iterable[Any]],
    train_step: Callable[[Any, int, int, int], tuple[Any, int]],
    end_epoch: Callable[[EpochDone], None],
    steps_key: str = "steps",
    extra_state: dict[str, Any] | None = None,
    position: str = "step",
    on_epoch_end: Callable[[int], None] | None = None,
    logger: logging.Logger = log,
    checkpointed: nn.Module | None = None,
) -> EpochsRun:
    """The resumable epoch loop of a training job.

    * ``start_epoch(epoch, generator)`` sets epoch ``epoch`` up (lr schedule, train mode) and returns its
      batches, shuffled by ``generator`` (see :func:`epoch_loader`; a step's batch may arrive as its
      micro-batches, :class:`OptimisationSteps`); every random source is already seeded from ``(seed, epoch)``;
    * ``train_step(batch, micro_batch, epoch, steps_done)`` runs one optimisation step (see
      :func:`step_over_micro_batches`, :func:`step_with_oom_backoff`) and returns ``(result, micro_batch
      used)``; ``micro_batch`` is what the forward pass runs at once, halved on out-of-memory; a
      :class:`TrainingDiverged` it raises stops the job with where it happened, the lr and what to change;
    * ``end_epoch(done)`` records the epoch into ``done.state`` (history, evaluation, selection), logs it,
      and may raise :class:`TrainingDiverged`; then the state is checkpointed and ``on_epoch_end(epoch)``
      called. A job capped at ``max_steps`` stops after that many steps, ending its epoch as any other.

    The checkpoint (``checkpoint_path``, made under ``protocol``) holds ``epoch``, ``micro_batch``, the
    step count under ``steps_key``, ``history``, ``extra_state``'s keys, the weights of ``checkpointed``
    (default: the whole model; a frozen probe's head alone, its backbone never changes) and the optimiser. A
    divergence message places the step by ``position``: ``"step"`` counts within the epoch,
    ``"iteration"`` within the job.
    """
    checkpoint_path = Path(checkpoint_path)
    checkpointed = model if checkpointed is None else checkpointed
    state = load_checkpoint(checkpoint_path, protocol)
    if state is not None:
        checkpointed.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        logger.info("resuming after epoch %d from %s", state["epoch"], checkpoint_path)
    else:
        state = {"epoch": 0, steps_key: 0, "history": [], "micro_batch": micro_batch, **(extra_state or {})}
    resumed_from, micro_batch, steps = state["epoch"], state["micro_batch"], state.get(steps_key, 0)

    for epoch in range(state["epoch"], epochs):
        started = time.perf_counter()
        batches = start_epoch(epoch, seed_epoch(seed, epoch))
        results: list[Any] = []
        for batch in tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="step", mininterval=5):
            if step_cap_reached(max_steps, steps):
                break
            try:
                result, micro_batch = train_step(batch, micro_batch, epoch, steps)
            except TrainingDiverged as error:
                where = f"step {len(results) + 1}" if position == "step" else f"{position} {steps + 1}"
                raise TrainingDiverged(
                    f"{error} in epoch {epoch + 1}, {where} (lr {optimizer.param_groups[0]['lr']:.3g}); "
                    "lower the lr or use precision fp32"
                ) from None
            results.append(result)
            steps += 1
            state[steps_key] = steps
        end_epoch(EpochDone(index=epoch, results=results, steps=steps, started=started, state=state))
        state.update(epoch=epoch + 1, micro_batch=micro_batch)
        save_checkpoint(checkpoint_path, state, checkpointed, optimizer, protocol)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if step_cap_reached(max_steps, steps):
            logger.info("stopping after epoch %d: max_steps = %d optimisation steps done", epoch + 1, max_steps)
            break

    return EpochsRun(state=state, micro_batch=micro_batch, resumed_from_epoch=resumed_from, steps=steps)
