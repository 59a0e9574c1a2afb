"""Rules finetune and frozen_probe: one backbone trained on one dataset, resumable.

finetune: end to end, BoB's recipe (§3.2). frozen_probe: BatchNorm + linear head on the frozen
backbone, LARS (§3.3). Same engine, same survival (bobench.tasks.finetune).
"""

import dataclasses
import time
from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bobench.cells import auroc_entries, calibration_entries, metric_entry, write_record  # noqa: E402
from bobench.datasets import load_prepared  # noqa: E402
from bobench.features import device_name, pick_device, resolve_channels_last  # noqa: E402
from bobench.io import atomic_path  # noqa: E402
from bobench.provenance import canonical_hash  # noqa: E402
from bobench.tasks.finetune import (  # noqa: E402
    FROZEN_PROBE_RECIPE,
    FinetuneOptions,
    build_classifier,
    finetune,
)

sm = snakemake  # noqa: F821
started = time.perf_counter()
spec, params = dict(sm.params.backbone), dict(sm.params.finetune)
image_size = params.pop("image_size")
frozen = sm.params.task == "frozen_probe"
if frozen:
    params.update(FROZEN_PROBE_RECIPE)
options = FinetuneOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
dataset = load_prepared(Path(sm.input.dataset[0]).parent, verify=True)
splits = {name: dataset.split(name) for name in ("train", "val", "test")}

model, backbone = build_classifier(
    sm.wildcards.backbone, spec, dataset.num_classes, image_size, frozen, options.drop_path, sm.params.seed
)
device = pick_device()
channels_last = resolve_channels_last("auto", spec["family"])
result = finetune(
    model, splits, dataset.num_classes, backbone.transform, options, sm.params.checkpoint,
    seed=sm.params.seed, device=device, channels_last=channels_last,
)
# The selected epoch's classifier is the job's product (for OOD evaluation); the resume
# checkpoint, with its optimiser state, has served its purpose once the record is written.
with atomic_path(sm.output.weights) as tmp:
    torch.save(result.best_state, tmp)
if dataset.multilabel:  # CheXpert: AUROC per finding and their mean
    metrics = auroc_entries(result.test_probs, result.test_labels, dataset.class_names, sm.params.bootstrap, sm.params.seed)
else:
    correct = (result.test_probs.argmax(axis=1) == result.test_labels).astype(np.float64)
    metrics = [
        metric_entry("top1", correct, sm.params.bootstrap, sm.params.seed, primary=True),
        *calibration_entries(result.test_probs, result.test_labels, sm.params.bootstrap, sm.params.seed),
    ]
log.info("test %s %.4f at epoch %d (best val %.4f)", metrics[0]["metric"], metrics[0]["value"], result.best_epoch + 1, result.best_val_score)
info = {
    **backbone.describe(),
    "device": device_name(device),
    "precision": result.precision,
    "channels_last": channels_last,
    "test_split": dataset.meta["test_split"],
    "fingerprint": canonical_hash({"backbone": spec, "image_size": image_size, "dataset": dataset.meta["manifest"]}),
}
write_record(
    sm.output.record,
    task_name=sm.params.task,
    backbone=sm.wildcards.backbone,
    dataset=sm.wildcards.dataset,
    features_info=info,
    protocol_params={
        **dataclasses.asdict(options),
        "image_size": backbone.transform.size,
        "selection": f"val {'mean AUROC' if dataset.multilabel else 'top-1'} over epochs",
        "best_epoch": result.best_epoch,
        "micro_batch_used": result.micro_batch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "history": result.history,
    },
    metrics=metrics,
    sizes={split: int(len(labels)) for split, (_, labels) in splits.items()},
    seed=sm.params.seed,
    started=started,
)
Path(sm.params.checkpoint).unlink(missing_ok=True)
