"""Job linear_probe: multinomial logistic regression on cached features (:mod:`bobench.tasks.linear_probe`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import torch

from bobench.cells import CellRecord, classification_metrics
from bobench.features import FeatureSet, pick_device
from bobench.names import TEST_SPLIT_IS_VAL
from bobench.tasks.linear_probe import ProbeOptions, linear_probe

log = logging.getLogger(__name__)


def linear_probe_cell(
    features: FeatureSet,
    options: ProbeOptions,
    *,
    backbone: str,
    dataset: str,
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
) -> CellRecord:
    """C chosen on val, refit on train + val (``options``), scored on test: top-1, or mean AUROC on
    multi-label data (CheXpert). Where the test split is the val split, the refit would train on the test
    images: the train-only fit of the chosen C is scored instead."""
    started = time.perf_counter()
    arrays, info = features.arrays, features.info
    if options.refit_on_train_val and info.get("test_split") == TEST_SPLIT_IS_VAL:
        options = dataclasses.replace(options, refit_on_train_val=False)
    result = linear_probe(
        arrays["train_features"], arrays["train_labels"],
        arrays["val_features"], arrays["val_labels"],
        arrays["test_features"], arrays["test_labels"],
        num_classes=info["num_classes"], options=options, device=device or pick_device(),
    )
    selection = "val mean AUROC" if arrays["test_labels"].ndim == 2 else "val top-1"
    log.info("test score %.4f with C=%g (%s per C: %s)", result.test_top1, result.chosen_c, selection, result.val_top1_per_c)
    return CellRecord(
        task_name="linear_probe",
        backbone=backbone,
        dataset=dataset,
        features_info=info,
        protocol_params={
            **dataclasses.asdict(options),
            "solver": "torch L-BFGS (strong Wolfe), full batch, sklearn objective",
            "chosen_c": result.chosen_c,
            "val_top1_per_c": {str(c): v for c, v in result.val_top1_per_c.items()},
            "n_iter": result.n_iter,
            "selection": selection,
        },
        metrics=classification_metrics(
            "linear_probe", arrays["test_labels"], scores=result.test_scores, correct=result.test_correct,
            class_names=info["class_names"], bootstrap=bootstrap, seed=seed,
        ),
        sizes={split: int(len(arrays[f"{split}_labels"])) for split in ("train", "val", "test")},
        seed=seed,
        started=started,
    )
