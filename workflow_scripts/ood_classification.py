"""Rule ood_classification: a fine-tuned classifier tested, without further training, on its OOD sets.

One job per classifier evaluates all of its sets (the model is built once) and writes one record per set.
"""

import time
from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bobench.cells import build_record, calibration_entries, metric_entry  # noqa: E402
from bobench.datasets import load_prepared  # noqa: E402
from bobench.features import device_name, pick_device, precision_name, resolve_channels_last, resolve_precision  # noqa: E402
from bobench.io import sha256_file, write_json  # noqa: E402
from bobench.ood import OODSet, apply_shift, class_subset, restricted_probs  # noqa: E402
from bobench.provenance import canonical_hash  # noqa: E402
from bobench.tasks.finetune import build_classifier, predict_logits  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
spec, recipe = dict(sm.params.backbone), dict(sm.params.finetune)
source = load_prepared(Path(sm.input.dataset[0]).parent, verify=True)
model, backbone = build_classifier(
    sm.wildcards.backbone, spec, source.num_classes, recipe["image_size"], frozen=False, drop_path=0.0, seed=sm.params.seed
)
model.load_state_dict(torch.load(sm.input.weights, map_location="cpu", weights_only=True))  # strict: every key
device = pick_device()
autocast_dtype = resolve_precision(recipe["precision"], device)
channels_last = resolve_channels_last("auto", spec["family"])
memory_format = torch.channels_last if channels_last else torch.contiguous_format
model = model.to(device, memory_format=memory_format)
classifier_sha256 = sha256_file(sm.input.weights)
test_images, test_labels = source.split("test")

records = []
for ood in (OODSet(**entry) for entry in sm.params.sets):
    if ood.kind == "shift":
        if not isinstance(test_images, np.ndarray):
            raise ValueError(f"shift {ood.shift!r}: {sm.wildcards.dataset} keeps its images as files; shifts need pixel arrays")
        images, labels, subset = apply_shift(test_images, ood.shift, ood.severity, sm.params.seed), test_labels, None
        test_split = f"{source.meta['test_split']}, shifted"
    else:
        target = load_prepared(sm.params.prepared_dirs[ood.dataset], verify=True)
        images, labels = target.split("test")
        test_split = target.meta["test_split"]
        # Labels index the set's own classes; the logits are restricted to those classes, in that order.
        subset = class_subset(source.class_names, target.class_names, f"OOD set {ood.dataset}")
    logits = predict_logits(
        model, images, backbone.transform, recipe["eval_batch_size"], device, autocast_dtype, memory_format, recipe["num_workers"]
    )
    probs = restricted_probs(logits, subset)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    log.info("%s: top-1 %.4f on %d images", ood.set_id, correct.mean(), len(labels))
    info = {
        **backbone.describe(),
        "device": device_name(device),
        "precision": precision_name(autocast_dtype),
        "channels_last": channels_last,
        "test_split": test_split,
        "fingerprint": canonical_hash({"classifier": classifier_sha256, "set": ood.describe()}),
    }
    records.append(
        build_record(
            task_name="ood",
            backbone=sm.wildcards.backbone,
            dataset=ood.set_id,
            features_info=info,
            protocol_params={
                "classifier": "finetune",
                "trained_on": sm.wildcards.dataset,
                "classifier_sha256": classifier_sha256,
                "ood_set": ood.describe(),
                "classes": len(subset) if subset is not None else source.num_classes,
                "image_size": backbone.transform.size,
            },
            metrics=[
                metric_entry("top1", correct, sm.params.bootstrap, sm.params.seed, primary=True),
                *calibration_entries(probs, labels, sm.params.bootstrap, sm.params.seed),
            ],
            sizes={"test": int(len(labels))},
            seed=sm.params.seed,
            started=started,
        )
    )
write_json(sm.output.record, records)
