"""Job retrieval: rank the database for every query and score it (:mod:`bobench.retrieval.metrics`).

A retrieval benchmark brings its own queries, database and protocols (its split); a classification dataset
gets BoB's class-folder protocol on one split of the features cached for the probes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bobench.cells import CellRecord, retrieval_metrics
from bobench.features import FeatureSet, pick_device
from bobench.io import save_npz
from bobench.options import options_from_config, take
from bobench.retrieval.ground_truth import REVISITED_PROTOCOLS, GroundTruth
from bobench.retrieval.metrics import evaluate_retrieval
from bobench.retrieval.splits import class_folder_rule, class_folder_split, load_split

log = logging.getLogger(__name__)

#: Keys of config section ``retrieval`` that choose a retrieval benchmark's features (the rule hands them to
#: extract_retrieval_features as its transform and query crops, and the features' info records them).
FEATURE_KEYS = ("resize", "clip_imagenet_normalisation", "crop_revisited_queries")


@dataclass(frozen=True)
class RetrievalOptions:
    """How a retrieval cell is scored; defaults are the config schema's (section ``retrieval``)."""

    split: str = "test"  # classification datasets: the split searched in (class-folder protocol)
    query_fraction: float = 0.2  # classification datasets: the share of each class that queries
    revisited_protocol: str = "medium"  # ROxford5k / RParis6k: the primary protocol (BoB: medium)
    ks: tuple[int, ...] = (1, 5, 10)
    topk: int = 100  # database indices kept per query in the raw results


def retrieval_options(section: Mapping[str, Any]) -> RetrievalOptions:
    """Config section ``retrieval`` → the scoring options; the feature keys (:data:`FEATURE_KEYS`) belong to
    the extraction of the features, which records them."""
    _, rest = take(section, FEATURE_KEYS, where="retrieval")
    return options_from_config(RetrievalOptions, rest, where="retrieval")


@dataclass
class RetrievalCell:
    """The record and the raw per-query results (the top of each ranking and every metric of the primary
    protocol)."""

    record: CellRecord
    predictions: dict[str, np.ndarray]

    def write(self, record_path: str, predictions_path: str) -> None:
        """Predictions first: a record file is the sign of a finished job."""
        save_npz(predictions_path, **self.predictions)
        self.record.write(record_path)


def retrieval_cell(
    features: FeatureSet,
    options: RetrievalOptions,
    *,
    backbone: str,
    dataset: str,
    split_dir: str | Path | None,
    bootstrap: Mapping[str, Any],
    seed: int,
    device: torch.device | None = None,
) -> RetrievalCell:
    """Score ``features``: a retrieval benchmark's descriptors against its split in ``split_dir``, or (no
    split) a classification dataset's cached features by the class-folder protocol."""
    started = time.perf_counter()
    arrays, info = features.arrays, features.info
    if split_dir is not None:  # a retrieval benchmark: its own queries, database and protocols
        split, meta = load_split(split_dir)
        queries, database, protocols = arrays["query_features"], arrays["database_features"], split.ground_truth
        primary = options.revisited_protocol if set(protocols) == set(REVISITED_PROTOCOLS) else split.primary
        split_info = {"split_version": meta["split_version"], "split_sha256": meta["split_sha256"], "rule": meta["rule"]}
        test_split = f"retrieval split v{meta['split_version']} ({meta['split_sha256']})"
    else:  # a classification dataset: BoB's class-folder protocol on one cached split
        pool, labels = arrays[f"{options.split}_features"], arrays[f"{options.split}_labels"]
        query_idx, db_idx = class_folder_split(labels, query_fraction=options.query_fraction)
        queries, database = pool[query_idx], pool[db_idx]
        protocols, primary = {"default": GroundTruth.from_labels(labels[query_idx], labels[db_idx])}, "default"
        split_info = {"split": options.split, "query_fraction": options.query_fraction,
                      "rule": class_folder_rule(options.query_fraction)}
        test_split = info.get("test_split") if options.split == "test" else options.split

    results, top = evaluate_retrieval(queries, database, protocols, ks=options.ks, device=device or pick_device(),
                                      topk=options.topk)
    best = results[primary]
    log.info("mAP %.4f, MRR %.4f over %d queries (%s protocol)", best.metrics["map"], best.metrics["mrr"], len(best.scored),
             primary)
    record = CellRecord(
        task_name="retrieval",
        backbone=backbone,
        dataset=dataset,
        features_info={**info, "test_split": test_split},
        protocol_params={
            **split_info, "protocols": sorted(protocols), "primary_protocol": primary, "ks": list(options.ks),
            "descriptor": "L2-normalised pooled features", "similarity": "dot product, exact (stable sort)",
            "ap": "revisitop trapezoidal AP, junk removed", "transform": info.get("transform_params"),
            "cropped_queries": info.get("cropped_queries", False),
        },
        metrics=retrieval_metrics(results, primary, bootstrap, seed),
        sizes={"queries": best.n_queries, "scored_queries": len(best.scored), "database": best.n_database},
        seed=seed,
        started=started,
    )
    predictions = {"top": top, "scored": best.scored, **{f"per_query_{k}": v for k, v in best.per_query.items()}}
    return RetrievalCell(record, predictions)
