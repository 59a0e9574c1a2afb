"""End-to-end fine-tuning, BoB's recipe (docs/protocol.md §3.2), as a job that survives.

The recipe is timm's own machinery, as BoB's ``train.py`` used it: AdamW with
layer-wise lr decay (``create_optimizer_v2``), cosine schedule with warm-up
(``CosineLRScheduler``, stepped per epoch), RandAugment / random-resized crop /
colour jitter / random erasing (``create_transform``), mixup + cutmix with label
smoothing (``Mixup``), drop path, a fresh classifier head (xavier-normal weights,
zero bias), bf16 autocast. The effective batch is reached by gradient
accumulation over micro-batches.

What makes it survive:

* every epoch ends with an atomic checkpoint (model, optimiser, history, best
  epoch so far); a rerun resumes after the last completed epoch. All randomness
  of an epoch (shuffling, augmentation, mixup, drop path) is seeded from
  ``(seed, epoch)``, so a resumed run computes the same weights as one that was
  never interrupted;
* a non-finite loss, or an epoch whose mean loss exceeds ``divergence_factor``
  times where training started (chance-level cross-entropy ln C, or the loss of
  the first step, on the initial weights, where that is higher), stops the job
  with a message saying where and what to change. A frozen probe's linear head
  on features of a large scale starts far above chance without diverging (a
  random-init ResNet's, or a seeded stand-in's in the rehearsal);
* an out-of-memory error halves the forward chunk and redoes only the chunk that
  failed, on the same samples, so the effective batch (and the maths) stay the same.

The loaders collate micro-batches, not the effective batch (host memory per job:
workers × prefetch × micro-batch); gradients accumulate over them to the effective
batch (:func:`bobench.training.step_over_micro_batches`).

Model selection follows BoB: evaluate every epoch, keep the epoch with the best
validation top-1; the test set's class probabilities of that epoch are the result.
Multi-label data (CheXpert, §3.4) train with one sigmoid per class (binary
cross-entropy) and select on validation mean AUROC.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from bobench.training import (
    EpochDone,
    OptimisationSteps,
    TrainingDiverged,
    epoch_loader,
    run_epochs,
    step_over_micro_batches,
    training_precision,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneOptions:
    epochs: int = 100
    warmup_epochs: int = 5
    lr: float = 1e-3
    warmup_lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    layer_decay: float | None = 0.75  # None: one lr for every layer
    drop_path: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.8  # mixup alpha (0: off)
    cutmix: float = 1.0  # cutmix alpha (0: off)
    randaugment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    random_erasing: float = 0.25
    batch_size: int = 1024  # effective batch per optimiser step
    micro_batch: int = 128  # samples per loaded batch and forward/backward; the forward halved on out-of-memory
    eval_batch_size: int = 256
    num_workers: int = 0  # data-loading processes for the training augmentation (GPU runs want several)
    precision: str = "auto"  # auto: bf16 where fast (CUDA, CPUs with native bf16), else fp32
    divergence_factor: float = 10.0
    optimizer: str = "adamw"  # adamw (with layer decay) | lars (momentum 0.9: BoB's linear probe)
    # MAE's LARS scales each weight matrix's step by its trust ratio; False: momentum SGD (needs weight decay 0)
    lars_trust_ratio: bool = True
    freeze_backbone: bool = False  # train the head only; the backbone stays in eval mode
    # timm: CosineLRScheduler stepped per epoch (warm-up from warmup_lr, floor min_lr), fine-tuning's;
    # mae: MAE's half-cycle cosine set before every step, warm-up from 0 (lr_sched.adjust_learning_rate)
    schedule: str = "timm"
    # The frozen probe's head and input (None when fine-tuning): head bob (BoB's rule per backbone, the
    # registry's probe_head), batchnorm or linear (every backbone); input bob (BoB's transforms) or native
    head: str | None = None
    input: str | None = None
    max_steps: int | None = None  # a cap on the job's optimisation steps (the rehearsal's); None: every epoch


# BoB's frozen-backbone linear probe (MAE's recipe; docs/protocol.md §3.3, which lists where this one
# differs): BatchNorm (no affine) + linear head (linear alone for ResNets) on a frozen backbone, LARS, 90
# epochs with 10 warm-up, no weight decay, weak augmentation (random-resized crop + flip), plain
# cross-entropy, lr = 0.1 × batch / 256. Epochs, lr, batch, head, input and schedule stay configurable
# (warmup_lr and min_lr are the timm schedule's; MAE's warms up from 0 and ends at 0).
FROZEN_PROBE_RECIPE = {
    "optimizer": "lars", "freeze_backbone": True, "weight_decay": 0.0, "layer_decay": None, "drop_path": 0.0,
    "label_smoothing": 0.0, "mixup": 0.0, "cutmix": 0.0, "randaugment": None, "color_jitter": 0.0,
    "random_erasing": 0.0, "warmup_lr": 1e-6, "min_lr": 0.0,
}


@dataclass
class FinetuneResult:
    test_probs: np.ndarray  # (N, C) class probabilities of the selected epoch (sigmoids for multi-label data)
    test_labels: np.ndarray
    best_epoch: int  # 0-based
    best_val_score: float  # val top-1 (mean AUROC for multi-label data) of the selected epoch
    history: list[dict[str, float]] = field(default_factory=list)
    micro_batch: int = 0  # what it ended at (smaller than asked after an out-of-memory back-off)
    # The selected epoch's weights (CPU): the whole classifier, or the frozen probe's head alone.
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    precision: str = "fp32"  # what training ran in (auto resolves per device)
    resumed_from_epoch: int = 0


class FeatureClassifier(nn.Module):
    """A head on a backbone's pooled features: linear, or BatchNorm (no affine) + linear (BoB's probe)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, norm: bool = False):
        super().__init__()
        linear = nn.Linear(feature_dim, num_classes)
        self.backbone = backbone
        self.head = nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False, eps=1e-6), linear) if norm else linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class LayeredFeatureClassifier(FeatureClassifier):
    """A :class:`FeatureClassifier` on a timm backbone, with the backbone's layer groups (layer-wise lr
    decay); parameters no group matches, the backbone's own head and the new one, form the last group,
    as in the bare timm model."""

    def group_matcher(self, coarse: bool = False) -> dict[str, Any] | Callable[[str], Any]:
        import re

        inner = self.backbone.group_matcher(coarse=coarse)
        prefix = "backbone."
        if callable(inner):
            return lambda name: inner(name[len(prefix):]) if name.startswith(prefix) else (math.inf,)

        def prefixed(pattern: str) -> str:
            return "^" + re.escape(prefix) + pattern.removeprefix("^")

        return {
            group: [(prefixed(pattern), suffix) for pattern, suffix in spec] if isinstance(spec, (list, tuple)) else prefixed(spec)
            for group, spec in inner.items() if spec is not None
        }


def attach_head(model: nn.Module, feature_dim: int, num_classes: int, seed: int) -> nn.Module:
    """The backbone with a freshly initialised classifier (BoB: xavier-normal weights, zero bias).

    A timm model without its pretraining classifier (``num_classes`` 0: pooled features) gets the new one
    in the classifier's place. Any other model, among them a timm model whose head gives its features
    (registry ``features.output: head``: the CLIP ResNets keep CLIP's projection, docs/protocol.md §2.2),
    gets a linear head on its output.
    """
    if hasattr(model, "reset_classifier") and hasattr(model, "get_classifier") and getattr(model, "num_classes", None) == 0:
        model.reset_classifier(num_classes)
        head = model.get_classifier()
    else:
        wrapper = LayeredFeatureClassifier if hasattr(model, "group_matcher") else FeatureClassifier
        model = wrapper(model, feature_dim, num_classes)
        head = model.head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in [head] if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def attach_probe_head(model: nn.Module, feature_dim: int, num_classes: int, seed: int,
                      head: str = "batchnorm") -> FeatureClassifier:
    """BoB's linear-probe head (MAE's): BatchNorm1d(affine=False) + linear (``head="batchnorm"``) or the
    linear layer alone (``"linear"``: BoB's ResNets), weights trunc-normal (std 0.01), bias zero."""
    from bobench.backbones.probe_head import PROBE_HEADS

    if head not in PROBE_HEADS:
        raise ValueError(f"probe head {head!r}: expected one of {', '.join(PROBE_HEADS)}")
    classifier = FeatureClassifier(model, feature_dim, num_classes, norm=head == "batchnorm")
    linear = classifier.head[1] if head == "batchnorm" else classifier.head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nn.init.trunc_normal_(linear.weight, std=0.01)
        nn.init.zeros_(linear.bias)
    return classifier


def build_classifier(backbone_id: str, spec: dict[str, Any], num_classes: int, image_size: int | None,
                     frozen: bool, drop_path: float, seed: int, probe_head: str = "batchnorm") -> tuple[nn.Module, Any]:
    """A registry backbone with a fresh head: BoB's fine-tuning head, or its probe head (``probe_head``:
    batchnorm or linear) when ``frozen``.

    Returns ``(classifier, backbone)``; the backbone carries the eval transform and
    description. BoB's drop path applies to timm architectures (it changes no weight names).
    """
    from bobench.backbones.model import create_backbone
    from bobench.backbones.sizes import any_input_size_spec

    if image_size is not None:  # a dataset's own resolution (CheXpert's 256 px): transformers interpolate
        spec = any_input_size_spec(spec)
    if spec["architecture"]["library"] == "timm" and drop_path:
        architecture = spec["architecture"]
        spec = {**spec, "architecture": {**architecture, "kwargs": {**architecture.get("kwargs", {}), "drop_path_rate": drop_path}}}
    backbone = create_backbone(backbone_id, spec, image_size=image_size)
    if frozen:
        return attach_probe_head(backbone.model, backbone.feature_dim, num_classes, seed=seed, head=probe_head), backbone
    return attach_head(backbone.model, backbone.feature_dim, num_classes, seed=seed), backbone


class AugmentedImages(torch.utils.data.Dataset):
    """uint8 NHWC arrays (grey or RGB) → the training transform of each image as RGB PIL."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = np.asarray(self.images[index])
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")
        label = self.labels[index]
        return self.transform(pil), (torch.as_tensor(label, dtype=torch.float32) if np.ndim(label) else int(label))


def train_transform(options: FinetuneOptions, size: int, mean: tuple, std: tuple) -> Callable:
    from timm.data import create_transform

    return create_transform(
        input_size=size, is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
        color_jitter=options.color_jitter, auto_augment=options.randaugment, interpolation="random",
        mean=mean, std=std, re_prob=options.random_erasing, re_mode="pixel", re_count=1,
    )


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, transform: Callable, batch_size: int,
                   device: torch.device, autocast_dtype: torch.dtype | None, memory_format: torch.memory_format,
                   num_workers: int = 0) -> np.ndarray:
    """float32 logits for uint8 NHWC images (or image files) with the backbone's eval transform. On
    out-of-memory the forward batch is halved and only the failed chunk redone (:class:`ForwardInChunks`)."""
    from bobench.features import ForwardInChunks, eval_batches

    model.eval()
    forward = ForwardInChunks(model, batch_size, device, autocast_dtype, memory_format)
    return np.concatenate([forward(x) for x, _ in eval_batches(images, transform, batch_size, device, num_workers)])


def predict_probs(model: nn.Module, images: np.ndarray, transform: Callable, batch_size: int,
                  device: torch.device, autocast_dtype: torch.dtype | None, memory_format: torch.memory_format,
                  num_workers: int = 0, multilabel: bool = False) -> np.ndarray:
    """Class probabilities: softmax of :func:`predict_logits`, or per-class sigmoids for multi-label data."""
    logits = torch.from_numpy(predict_logits(model, images, transform, batch_size, device, autocast_dtype, memory_format, num_workers))
    return (logits.sigmoid() if multilabel else logits.softmax(dim=1)).numpy()


def selection_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """What picks the epoch: top-1, or mean AUROC for multi-label data."""
    if np.ndim(labels) == 2:
        from bobench.tasks.linear_probe import mean_auroc

        return mean_auroc(probs, labels, defined_only=True)
    return float((probs.argmax(1) == labels).mean())


def mae_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """MAE's ``lr_sched.adjust_learning_rate`` at ``epoch`` (fractional: step / steps per epoch + epoch):
    linear warm-up from 0, then half-cycle cosine from ``lr`` to ``min_lr``."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


SCHEDULES = ("timm", "mae")

LARS_MOMENTUM = 0.9
LARS_TRUST_COEFFICIENT = 0.001


def mae_lars(model: nn.Module, lr: float, weight_decay: float, trust_ratio: bool = True) -> torch.optim.Optimizer:
    """MAE's LARS (``util/lars.py``; docs/protocol.md §3.3) as timm's ``Lars`` with two parameter groups.

    Weight matrices (ndim > 1): weight decay added to the gradient, the update scaled by the trust ratio
    0.001 × ||p|| / ||update|| (1 where either norm is 0), at any weight decay (``always_adapt``). Biases and
    norm parameters: momentum SGD, no weight decay, no trust ratio. Momentum 0.9, no dampening or Nesterov.
    timm divides by ``||grad|| + weight_decay × ||p|| + 1e-8`` where MAE divides by ``||grad + weight_decay × p||``:
    equal up to the 1e-8 at the probe's weight decay of 0. ``trust_ratio=False`` drops the ratio, i.e.
    plain momentum SGD (what timm's ``Lars`` does at weight decay 0 with its default flags).
    """
    from timm.optim import Lars

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trust_ratio and weight_decay != 0:
        raise ValueError("LARS without the trust ratio is momentum SGD, which has no weight decay here: "
                         f"set weight_decay to 0 (got {weight_decay:g}) or keep the trust ratio")
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, "always_adapt": trust_ratio},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, "always_adapt": False},
    ]
    return Lars([g for g in groups if g["params"]], lr=lr, momentum=LARS_MOMENTUM, trust_coeff=LARS_TRUST_COEFFICIENT)


def divergence_bound(factor: float, chance_loss: float, start_loss: float) -> float:
    """The mean epoch loss above which training counts as diverged: ``factor`` times where it started, chance
    level or the first step's loss (on the initial weights), whichever is higher."""
    return factor * max(chance_loss, start_loss)


def _train_step(model, optimizer, micro_batches, batch, loss_fn, chunk, device, autocast_dtype, memory_format):
    """One optimiser step over a batch of ``batch`` samples that arrives as micro-batches ``(x, targets)``;
    forward and backward in chunks of ``chunk``, halved on out-of-memory (:func:`step_over_micro_batches`)."""

    def backward(rows: tuple[torch.Tensor, ...]) -> float:
        xb, yb = rows[0].to(device).contiguous(memory_format=memory_format), rows[1].to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(xb)
        loss = loss_fn(logits.float(), yb) * (len(xb) / batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged("non-finite loss")
        loss.backward()
        return float(loss.detach())

    return step_over_micro_batches(optimizer, micro_batches, chunk, device, backward)


def finetune(
    model: nn.Module,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    eval_transform: Callable,
    options: FinetuneOptions,
    checkpoint_path: str | Path,
    seed: int = 0,
    device: torch.device | None = None,
    channels_last: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    augmentation: Callable | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` (a classifier with ``num_classes`` outputs) on ``splits['train']``,
    select the epoch on ``splits['val']``, return ``splits['test']`` probabilities.

    ``eval_transform`` is the backbone's :class:`~bobench.backbones.transforms.EvalTransform`
    (its size, mean and std also shape the training transform, unless ``augmentation``, a PIL → tensor
    transform, replaces it: the frozen probe's BoB input). ``on_epoch_end`` is called after each epoch's
    checkpoint is written.
    """
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    from bobench.features import pick_device, precision_name

    if options.schedule not in SCHEDULES:
        raise ValueError(f"schedule {options.schedule!r}: expected one of {', '.join(SCHEDULES)}")
    device = device or pick_device()
    autocast_dtype = training_precision(options.precision, device, log)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    if options.freeze_backbone:
        if not isinstance(model, FeatureClassifier):
            raise TypeError("freeze_backbone needs a FeatureClassifier (see attach_probe_head)")
        model.backbone.requires_grad_(False)
    layer_decay = options.layer_decay if hasattr(model, "group_matcher") else None
    if options.layer_decay is not None and layer_decay is None:
        log.info("the model has no timm layer groups: layer-wise lr decay is off")
    if options.optimizer == "lars":
        optimizer = mae_lars(model, options.lr, options.weight_decay, trust_ratio=options.lars_trust_ratio)
    else:
        optimizer = create_optimizer_v2(model, opt="adamw", lr=options.lr, weight_decay=options.weight_decay, layer_decay=layer_decay)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=options.epochs, lr_min=options.min_lr,
        warmup_t=options.warmup_epochs, warmup_lr_init=options.warmup_lr,
    )
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = splits["train"], splits["val"], splits["test"]
    multilabel = np.ndim(train_y) == 2
    mixing = options.mixup > 0 or options.cutmix > 0
    if multilabel and mixing:
        raise ValueError("mixup/cutmix need single-label data; set finetune mixup and cutmix to 0 for multi-label datasets")
    score_name = "val_mean_auroc" if multilabel else "val_top1"
    # A frozen backbone is the registry's pretrained weights: checkpoints and the saved model hold the head.
    checkpointed = model.head if options.freeze_backbone else model
    mixup = Mixup(
        mixup_alpha=options.mixup, cutmix_alpha=options.cutmix, prob=1.0, switch_prob=0.5, mode="batch",
        label_smoothing=options.label_smoothing, num_classes=num_classes,
    ) if mixing else None
    if multilabel:  # one sigmoid per finding (CheXpert); label smoothing does not apply
        loss_fn: nn.Module = nn.BCEWithLogitsLoss()
    elif mixing:
        loss_fn = SoftTargetCrossEntropy()
    else:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)

    train_set = AugmentedImages(
        train_x, train_y,
        augmentation or train_transform(options, eval_transform.size, eval_transform.mean, eval_transform.std),
    )
    batch = min(options.batch_size, len(train_set) - len(train_set) % 2)  # mixup pairs need an even batch
    if mixing and options.micro_batch % 2 and options.micro_batch < batch:
        raise ValueError(f"finetune micro_batch {options.micro_batch} is odd: mixup/cutmix pair the samples of a "
                         "micro-batch, so it must be even")
    chance_loss = math.log(num_classes)

    position = {"step": 0, "per_epoch": 1}  # the MAE schedule's place within the epoch

    def start_epoch(epoch: int, generator: torch.Generator) -> OptimisationSteps:
        if options.schedule == "timm":
            scheduler.step(epoch)
        # The loader collates micro-batches (host memory: workers × prefetch × micro-batch); each step's
        # samples are the whole-batch loader's. The micro-batch it loads stays options.micro_batch after an
        # out-of-memory back-off, which only cuts what is loaded into smaller forward chunks.
        loader = epoch_loader(train_set, batch, generator, options.num_workers, micro_batch=options.micro_batch,
                              pin_memory=device.type == "cuda")
        steps = OptimisationSteps(loader)
        position.update(step=0, per_epoch=max(1, len(steps)))
        model.train()
        if options.freeze_backbone:
            model.backbone.eval()  # frozen means frozen: no BatchNorm statistics move either
        return steps

    def train_step(micro_batches, chunk: int, epoch: int, steps_done: int) -> tuple[float, int]:
        if options.schedule == "mae":  # per iteration, as MAE's engine: epoch + step / steps per epoch
            lr = mae_lr(epoch + position["step"] / position["per_epoch"], options.lr, options.min_lr,
                        options.warmup_epochs, options.epochs)
            for group in optimizer.param_groups:  # layer-decay groups keep their scale, as in MAE
                group["lr"] = lr * group.get("lr_scale", 1.0)
            position["step"] += 1
        # Mixup/cutmix mix within each micro-batch (one lambda per micro-batch), as timm does within each
        # GPU's batch in distributed training.
        mixed = (mixup(x, y) if mixup is not None else (x, y) for x, y in micro_batches)
        return _train_step(model, optimizer, mixed, batch, loss_fn, chunk, device, autocast_dtype, memory_format)

    def end_epoch(done: EpochDone) -> None:
        epoch, state = done.index, done.state
        train_seconds = time.perf_counter() - done.started
        train_loss = float(np.mean(done.results))
        if state.get("start_loss") is None and done.results:  # the first step's loss, on the initial weights
            state["start_loss"] = float(done.results[0])
        start_loss = state.get("start_loss") or chance_loss
        max_loss = divergence_bound(options.divergence_factor, chance_loss, start_loss)
        if train_loss > max_loss:
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1}: mean loss {train_loss:.3g} > {max_loss:.3g} "
                f"({options.divergence_factor:g} × the larger of ln({num_classes}), chance level, and the first step's "
                f"loss {start_loss:.3g}); lower the lr"
            )
        val_probs = predict_probs(model, val_x, eval_transform, options.eval_batch_size, device, autocast_dtype, memory_format,
                                  options.num_workers, multilabel)
        val_score = selection_score(val_probs, val_y)
        record = {"epoch": epoch, "train_loss": train_loss, score_name: val_score,
                  "lr": optimizer.param_groups[0]["lr"], "train_seconds": train_seconds,
                  "seconds": time.perf_counter() - done.started}
        state["history"].append(record)
        if state["best"] is None or val_score > state["best"]["val_score"]:
            test_probs = predict_probs(model, test_x, eval_transform, options.eval_batch_size, device, autocast_dtype, memory_format,
                                       options.num_workers, multilabel)
            state["best"] = {
                "epoch": epoch, "val_score": val_score, "test_probs": torch.from_numpy(test_probs),
                "model": {k: v.detach().to("cpu", copy=True) for k, v in checkpointed.state_dict().items()},
            }
        log.info("epoch %d/%d: train loss %.4f, %s %.4f (best %.4f at epoch %d)", epoch + 1, options.epochs,
                 train_loss, score_name, val_score, state["best"]["val_score"], state["best"]["epoch"] + 1)

    run = run_epochs(
        model, optimizer, epochs=options.epochs, seed=seed, micro_batch=options.micro_batch, max_steps=options.max_steps,
        checkpoint_path=checkpoint_path, protocol=_protocol(options, seed), start_epoch=start_epoch,
        train_step=train_step, end_epoch=end_epoch, steps_key="steps", extra_state={"best": None, "start_loss": None},
        position="step", on_epoch_end=on_epoch_end, logger=log, checkpointed=checkpointed,
    )
    best = run.state["best"]
    return FinetuneResult(
        test_probs=best["test_probs"].numpy(), test_labels=np.asarray(test_y), best_epoch=best["epoch"],
        best_val_score=best["val_score"], history=run.state["history"], micro_batch=run.micro_batch,
        resumed_from_epoch=run.resumed_from_epoch, best_state=best["model"], precision=precision_name(autocast_dtype),
    )


#: Bumped when the checkpoint's content changes, so that an older one is not resumed from.
CHECKPOINT_FORMAT = 3


def _protocol(options: FinetuneOptions, seed: int) -> dict[str, Any]:
    return {**dataclasses.asdict(options), "seed": seed, "checkpoint_format": CHECKPOINT_FORMAT}
