"""Detector training, BoB's schedule (docs/protocol.md §4), as a job that survives.

AdamW (betas 0.9/0.999, weight decay 0.05), a linear warm-up over the first
``warmup_iters`` iterations from ``warmup_ratio`` × lr, then steps of ×0.1 at
the epochs in ``steps`` (BoB: 36 epochs, steps at 27 and 33, 1000 warm-up
iterations); bf16 autocast where the device runs it (BoB: fp16 with a static
loss scale; bf16 needs none). The model after the last epoch is the result, as
in MMDetection.

What makes it survive (as :mod:`bobench.tasks.finetune`): an atomic checkpoint
after every epoch, resumed by a rerun, with every random source of an epoch
seeded from ``(seed, epoch)`` so a resumed run equals an uninterrupted one; a
non-finite loss stops the job with a message; an out-of-memory error halves the
micro-batch and redoes the step on the same images (the effective batch stays;
each micro-batch's loss is weighted by its share of the images).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bobench.training import EpochDone, TrainingDiverged, epoch_loader, run_epochs, step_with_oom_backoff, training_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionOptions:
    detector: str = "cascade_mask_rcnn"  # a name of bobench.detection.heads.DETECTORS (OOD detection: cascade_rcnn)
    epochs: int = 36
    steps: tuple[int, ...] = (27, 33)  # epochs after which the lr drops ×0.1
    warmup_iters: int = 1000
    warmup_ratio: float = 0.001
    lr: float = 1e-4
    weight_decay: float = 0.05
    batch_size: int = 16  # images per optimiser step (BoB: 8 GPUs × 2)
    micro_batch: int = 2  # images per forward/backward; halved on out-of-memory
    drop_path: float = 0.1
    rois_per_image: int = 512  # proposals sampled per image to train the box head (mmdet and torchvision: 512)
    proposals_per_image: int = 1000  # RPN proposals kept after NMS at test time (BoB: 1,000)
    # ... and in training: "bob" = 2,000 for hierarchical backbones, 1,000 for plain ViTs (ViTDet); or a number
    train_proposals_per_image: int | str = "bob"
    roi_align_aligned: bool = True  # BoB's RoIAlign (half-pixel offset, mmdet's levels); False: torchvision's
    frozen_stages: int = 0  # fine-tuned setting: the stem and this many first stages frozen (mmdet's; 0: none)
    norm_eval: bool | str = "auto"  # backbone BatchNorm in eval mode; auto: except for random-init backbones
    window_size: tuple[int, ...] | None = None  # a SwinV2's windows per stage (BoB's); None: the timm model's
    augmentation: str = "auto"  # auto: LSJ for plain ViTs, multi-scale AutoAugment otherwise; else the one named, for all
    single_scale_size: int = 512  # augmentation single_scale: images fit in this square (BoB's SD: 512)
    augment_scale: float = 1.0  # every augmentation and test size × this (1: BoB's 1024 / 480-800 / 1333)
    num_workers: int = 0
    precision: str = "auto"
    max_steps: int | None = None  # a cap on the job's optimisation steps (the rehearsal's); None: every epoch


CHECKPOINT_FORMAT = 1


@dataclass
class DetectionResult:
    model_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    micro_batch: int = 0
    precision: str = "fp32"
    resumed_from_epoch: int = 0
    iterations: int = 0


def lr_factor(iteration: int, epoch: int, options: DetectionOptions) -> float:
    """mmdet's step schedule with linear warm-up: the multiplier of the base lr."""
    factor = 0.1 ** sum(epoch >= step for step in options.steps)
    if iteration < options.warmup_iters:
        progress = iteration / options.warmup_iters
        factor *= options.warmup_ratio + (1 - options.warmup_ratio) * progress
    return factor


def _train_step(model, optimizer, images, targets, micro_batch, device, autocast_dtype) -> tuple[dict[str, float], int]:
    """One optimiser step over the batch in micro-batches (each loss weighted by its share of the images);
    halve them on out-of-memory."""

    def accumulate(micro_batch: int) -> dict[str, float]:
        totals: dict[str, float] = {}
        for start in range(0, len(images), micro_batch):
            xb = [image.to(device) for image in images[start : start + micro_batch]]
            tb = [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
                  for t in targets[start : start + micro_batch]]
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                losses = model(xb, tb)
            weight = len(xb) / len(images)
            loss = sum(value.float() for value in losses.values()) * weight
            if not torch.isfinite(loss):
                bad = [name for name, value in losses.items() if not torch.isfinite(value)]
                raise TrainingDiverged(f"non-finite {', '.join(bad)}")
            loss.backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * weight
        return totals

    return step_with_oom_backoff(optimizer, micro_batch, device, accumulate)


def train_detector(
    model: nn.Module,
    train_set: torch.utils.data.Dataset,
    options: DetectionOptions,
    checkpoint_path: str | Path,
    seed: int = 0,
    device: torch.device | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> DetectionResult:
    """Train ``model`` (torchvision R-CNN) on ``train_set`` (a CocoInstances with the training transform)."""
    from bobench.detection.data import collate
    from bobench.features import pick_device, precision_name

    device = device or pick_device()
    autocast_dtype = training_precision(options.precision, device, log)  # fp16 would need loss scaling
    model = model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, betas=(0.9, 0.999), weight_decay=options.weight_decay)
    batch = min(options.batch_size, len(train_set))

    def start_epoch(epoch: int, generator: torch.Generator) -> torch.utils.data.DataLoader:
        loader = epoch_loader(train_set, batch, generator, options.num_workers, collate_fn=collate)
        model.train()
        return loader

    def train_step(pairs: tuple[list, list], micro_batch: int, epoch: int, iteration: int) -> tuple[dict[str, float], int]:
        images, targets = pairs
        for group in optimizer.param_groups:
            group["lr"] = options.lr * lr_factor(iteration, epoch, options)
        return _train_step(model, optimizer, images, targets, micro_batch, device, autocast_dtype)

    def end_epoch(done: EpochDone) -> None:
        sums: dict[str, float] = {}
        for losses in done.results:
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
        steps = len(done.results)
        record = {"epoch": done.index, "lr": optimizer.param_groups[0]["lr"], "iterations": done.steps,
                  "loss": float(sum(sums.values()) / max(steps, 1)),
                  **{name: value / max(steps, 1) for name, value in sums.items()},
                  "seconds": time.perf_counter() - done.started}
        done.state["history"].append(record)
        log.info("epoch %d/%d: loss %.4f (%s)", done.index + 1, options.epochs, record["loss"],
                 ", ".join(f"{k} {v / max(steps, 1):.3f}" for k, v in sums.items()))

    run = run_epochs(
        model, optimizer, epochs=options.epochs, seed=seed, micro_batch=options.micro_batch, max_steps=options.max_steps,
        checkpoint_path=checkpoint_path, protocol=_protocol(options, seed), start_epoch=start_epoch,
        train_step=train_step, end_epoch=end_epoch, steps_key="iteration", position="iteration",
        on_epoch_end=on_epoch_end, logger=log,
    )
    return DetectionResult(
        model_state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        history=run.state["history"], micro_batch=run.micro_batch, precision=precision_name(autocast_dtype),
        resumed_from_epoch=run.resumed_from_epoch, iterations=run.steps,
    )


def _protocol(options: DetectionOptions, seed: int) -> dict[str, Any]:
    return {**dataclasses.asdict(options), "seed": seed, "checkpoint_format": CHECKPOINT_FORMAT}
