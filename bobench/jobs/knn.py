"""Job knn: cosine kNN classifier on cached features (:mod:`bobench.tasks.knn`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bobench.cells import CellRecord, classification_metrics
from bobench.features import FeatureSet, pick_device
from bobench.names import TEST_SPLIT_IS_VAL
from bobench.tasks.knn import KnnOptions, knn_classify

log = logging.getLogger(__name__)


def knn_cell(
    features: FeatureSet,
    options: KnnOptions,
    *,
    backbone: str,
    dataset: str,
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
) -> CellRecord:
    """Test top-1 of a weighted vote among the test images' cosine neighbours in train + val: no
    hyperparameter is tuned on val, so val joins the bank (as the probe refits on train + val), unless
    the test split is the val split (each test image would find itself): then the bank is train."""
    started = time.perf_counter()
    arrays, info = features.arrays, features.info
    bank_splits = ("train",) if info.get("test_split") == TEST_SPLIT_IS_VAL else ("train", "val")
    bank_x = np.concatenate([arrays[f"{split}_features"] for split in bank_splits])
    bank_y = np.concatenate([arrays[f"{split}_labels"] for split in bank_splits])
    result = knn_classify(
        bank_x, bank_y, arrays["test_features"], arrays["test_labels"],
        num_classes=info["num_classes"], options=options, device=device or pick_device(),
    )
    log.info("test top-1 %.4f (k=%d, T=%g)", result.top1, result.k, result.temperature)
    return CellRecord(
        task_name="knn",
        backbone=backbone,
        dataset=dataset,
        features_info=info,
        protocol_params={
            "k": result.k, "temperature": result.temperature, "similarity": "cosine",
            "voting": "exp(sim / T) weighted", "bank": "+".join(bank_splits),
        },
        metrics=classification_metrics("knn", arrays["test_labels"], correct=result.correct, bootstrap=bootstrap, seed=seed),
        sizes={"bank": int(len(bank_y)), "test": int(len(arrays["test_labels"]))},
        seed=seed,
        started=started,
    )
