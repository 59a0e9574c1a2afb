"""Job ood_classification: a fine-tuned classifier tested, without further training, on its OOD sets.

One job per classifier evaluates all of its sets (the model is built once) and returns one record per set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bobench.cells import CellRecord, classification_metrics
from bobench.datasets import load_prepared
from bobench.features import device_name, pick_device, precision_name, resolve_channels_last, resolve_precision
from bobench.io import sha256_file
from bobench.ood import OODSet, apply_shift, class_subset, restricted_probs
from bobench.provenance import job_fingerprint
from bobench.tasks.finetune import FinetuneOptions, build_classifier, predict_logits

log = logging.getLogger(__name__)


def ood_cells(
    backbone_id: str,
    spec: Mapping[str, Any],
    dataset_dir: str | Path,
    weights: str | Path,
    options: FinetuneOptions,
    image_size: int | None,
    sets: Sequence[OODSet | Mapping[str, Any]],
    *,
    dataset: str,
    prepared_dirs: Mapping[str, str | Path],
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
) -> list[CellRecord]:
    """Top-1 (with calibration) of the classifier ``weights`` (trained on the prepared dataset in
    ``dataset_dir`` with recipe ``options``, ``image_size``) on each OOD set: a shift of the dataset's own
    test split, or the test split of a registry dataset (in ``prepared_dirs``), its classes matched by name
    and the logits restricted to them. ``sets``: :class:`bobench.ood.OODSet` or their ``describe()``."""
    started = time.perf_counter()
    spec = dict(spec)
    sets = [s if isinstance(s, OODSet) else OODSet(**s) for s in sets]
    source = load_prepared(dataset_dir, verify=True)
    model, backbone = build_classifier(
        backbone_id, spec, source.num_classes, image_size, frozen=False, drop_path=0.0, seed=seed
    )
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))  # strict: every key
    device = device or pick_device()
    autocast_dtype = resolve_precision(options.precision, device)
    channels_last = resolve_channels_last("auto", spec["family"])
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    classifier_sha256 = sha256_file(weights)
    # What the evaluation itself chooses (the rest of the recipe made the classifier, hashed in its sha256).
    protocol = {"image_size": image_size, "eval_batch_size": options.eval_batch_size, "precision": options.precision,
                "num_workers": options.num_workers, "seed": seed}
    test_images, test_labels = source.split("test")

    records = []
    for ood in sets:
        if ood.kind == "shift":
            if not isinstance(test_images, np.ndarray):
                raise ValueError(f"shift {ood.shift!r}: {dataset} keeps its images as files; shifts need pixel arrays")
            images, labels, subset = apply_shift(test_images, ood.shift, ood.severity, seed), test_labels, None
            test_split, manifest = f"{source.meta['test_split']}, shifted", source.meta["manifest"]
        else:
            target = load_prepared(prepared_dirs[ood.dataset], verify=True)
            images, labels = target.split("test")
            test_split, manifest = target.meta["test_split"], target.meta["manifest"]
            # Labels index the set's own classes; the logits are restricted to those classes, in that order.
            subset = class_subset(source.class_names, target.class_names, f"OOD set {ood.dataset}")
        logits = predict_logits(
            model, images, backbone.transform, options.eval_batch_size, device, autocast_dtype, memory_format,
            options.num_workers,
        )
        probs = restricted_probs(logits, subset)
        metrics = classification_metrics("ood", labels, probs=probs, bootstrap=bootstrap, seed=seed)
        log.info("%s: top-1 %.4f on %d images", ood.set_id, metrics[0]["value"], len(labels))
        info = {
            **backbone.describe(),
            "device": device_name(device),
            "precision": precision_name(autocast_dtype),
            "channels_last": channels_last,
            "test_split": test_split,
            "fingerprint": job_fingerprint(
                spec, {"classifier": classifier_sha256, "set": ood.describe(), "manifest": manifest}, protocol
            ),
        }
        records.append(
            CellRecord(
                task_name="ood",
                backbone=backbone_id,
                dataset=ood.set_id,
                features_info=info,
                protocol_params={
                    "classifier": "finetune",
                    "trained_on": dataset,
                    "classifier_sha256": classifier_sha256,
                    "ood_set": ood.describe(),
                    "classes": len(subset) if subset is not None else source.num_classes,
                    "image_size": backbone.transform.size,
                },
                metrics=metrics,
                sizes={"test": int(len(labels))},
                seed=seed,
                started=started,
            )
        )
    return records
