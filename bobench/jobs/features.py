"""Job extract_features: one backbone's pooled features of every split of a prepared dataset.

(A retrieval benchmark's features: :mod:`bobench.jobs.retrieval_features`, a module of its own so that an edit
of the retrieval code reruns no classification extraction.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bobench.backbones.model import create_backbone
from bobench.datasets import load_prepared
from bobench.features import ExtractionOptions, FeatureSet, extract_features
from bobench.options import options_from_config, take
from bobench.provenance import job_fingerprint


def extraction_options(section: Mapping[str, Any]) -> tuple[ExtractionOptions, int | None]:
    """Config section ``extraction`` → (options, input size); ``image_size`` (null: each backbone's own) is
    the backbone's to apply, not the extractor's."""
    taken, rest = take(section, ["image_size"], where="extraction")
    return options_from_config(ExtractionOptions, rest, where="extraction"), taken["image_size"]


def extraction_protocol(options: ExtractionOptions, image_size: int | None) -> dict[str, Any]:
    """What of an extraction goes into the features' fingerprint (:func:`bobench.provenance.job_fingerprint`)."""
    return {"image_size": image_size, **dataclasses.asdict(options)}


def extract_dataset_features(
    backbone_id: str,
    spec: Mapping[str, Any],
    dataset_dir: str | Path,
    options: ExtractionOptions,
    image_size: int | None,
    *,
    dataset: str,
) -> FeatureSet:
    """Features of the train, val and test splits of the prepared dataset in ``dataset_dir``.

    ``spec``: the backbone's feature spec (:func:`bobench.config.feature_spec`). Torch's thread count is the
    rule's (:func:`bobench.workflow.start_job`)."""
    spec = dict(spec)
    prepared = load_prepared(dataset_dir, verify=True)
    backbone = create_backbone(backbone_id, spec, image_size=image_size)
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    arrays, info = extract_features(backbone, splits, family=spec["family"], options=options)
    info.update(
        dataset=dataset,
        num_classes=prepared.num_classes,
        class_names=prepared.class_names,
        test_split=prepared.meta["test_split"],
        # What the features depend on; downstream records cite it as their origin.
        fingerprint=job_fingerprint(spec, prepared.meta["manifest"], extraction_protocol(options, image_size)),
    )
    return FeatureSet(arrays, info)
