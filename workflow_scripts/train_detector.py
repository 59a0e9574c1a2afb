"""Rule train_detector: one backbone × setting × lr, trained on a detection dataset, resumable.

detection: Mask R-CNN, scored on the dataset's own test split (box AP → task detection,
mask AP → task instance_segmentation). ood_detection: boxes only, scored on the test
splits of the training set's OOD sets (AP50 primary, as for Sim10k → Cityscapes cars).
"""

import dataclasses
import time
from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.cells import build_record, coco_entries  # noqa: E402
from bobench.detection.job import build, evaluate_on, train_on, uses_lsj  # noqa: E402
from bobench.detection.sources import read_manifest  # noqa: E402
from bobench.detection.train import options_from_params  # noqa: E402
from bobench.features import device_name, pick_device, resolve_precision  # noqa: E402
from bobench.io import write_json  # noqa: E402
from bobench.provenance import canonical_hash  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
task, setting, lr = sm.wildcards.detection_task, sm.wildcards.setting, float(sm.wildcards.lr)
spec, recipe = dict(sm.params.backbone), dict(sm.params.recipe)
options = options_from_params({**recipe, "lr": lr})
train_manifest = read_manifest(sm.input.train)
class_names = train_manifest["categories"]
masks = task == "detection" and train_manifest["masks"]

detector, backbone = build(sm.wildcards.backbone, spec, class_names, masks, setting, options, sm.params.seed)
device = pick_device()
lsj = uses_lsj(backbone, options)
result = train_on(detector, lsj, train_manifest, class_names, masks, options, sm.params.checkpoint, sm.params.seed, device)
autocast_dtype = resolve_precision(options.precision, device)

info = {
    **backbone.describe(),
    "device": device_name(device),
    "precision": result.precision,
    "channels_last": False,
    "fingerprint": canonical_hash({"backbone": spec, "detection_train": train_manifest["splits"]["train"]}),
}
# The results table's input size of a detector: the shorter side its test images are resized to.
info["transform"] = {**info["transform"], "size": detector.transform.min_size[-1]}
protocol_params = {
    **dataclasses.asdict(options),
    "detector": "Mask R-CNN" if masks else "Faster R-CNN",
    "pyramid": "ViTDet simple pyramid + FPN (LayerNorm)" if backbone.is_plain() else "FPN",
    "augmentation_used": "large-scale jitter" if lsj else "multi-scale AutoAugment (BoB)",
    "setting": setting,
    "trained_on": sm.wildcards.dataset,
    "selection": "last epoch (no selection on the test split)",
    "micro_batch_used": result.micro_batch,
    "resumed_from_epoch": result.resumed_from_epoch,
    "iterations": result.iterations,
    "history": result.history,
}
records, predictions = [], {}
for manifest_path in sm.input.test_sets:
    manifest = read_manifest(manifest_path)
    results, metrics, n_test = evaluate_on(detector, manifest, class_names, masks, options, device, autocast_dtype,
                                           n_boot=recipe["bootstrap_resamples"], seed=sm.params.seed)
    predictions[manifest["dataset"]] = results
    rows = [(task, metrics["bbox"], "ap" if task == "detection" else "ap50")]
    if "segm" in metrics:
        rows.append(("instance_segmentation", metrics["segm"], "ap"))
    for row_task, values, primary in rows:
        log.info("%s on %s: %s", row_task, manifest["dataset"], ", ".join(f"{k} {value:.4f}" for k, (value, _) in values.items()))
        records.append(build_record(
            task_name=row_task, backbone=sm.wildcards.backbone, dataset=manifest["dataset"],
            features_info={**info, "test_split": "test"}, protocol_params=protocol_params,
            metrics=coco_entries(values, sm.params.bootstrap["level"], primary), seed=sm.params.seed, started=started, protocol=setting,
            sizes={"train": train_manifest["splits"]["train"]["n_images"], "test": n_test},
        ))
# Predictions first: a record file is the sign of a finished job.
write_json(sm.output.predictions, predictions)
write_json(sm.output.record, records)
Path(sm.params.checkpoint).unlink(missing_ok=True)
