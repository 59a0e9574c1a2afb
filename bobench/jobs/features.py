"""Jobs extract_features and extract_retrieval_features: one backbone's pooled features of a dataset's splits,
or of a retrieval benchmark's queries and database."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bobench.backbones.model import create_backbone
from bobench.cells import FeatureSet
from bobench.datasets import load_prepared
from bobench.features import ExtractionOptions, extract_features
from bobench.options import options_from_config, take
from bobench.provenance import job_fingerprint
from bobench.retrieval.splits import load_split
from bobench.retrieval.transform import retrieval_transform

log = logging.getLogger(__name__)


def extraction_options(section: Mapping[str, Any]) -> tuple[ExtractionOptions, int | None]:
    """Config section ``extraction`` → (options, input size); ``image_size`` (null: each backbone's own) is
    the backbone's to apply, not the extractor's."""
    taken, rest = take(section, ["image_size"], where="extraction")
    return options_from_config(ExtractionOptions, rest, where="extraction"), taken["image_size"]


def _protocol(options: ExtractionOptions, image_size: int | None) -> dict[str, Any]:
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
        fingerprint=job_fingerprint(spec, prepared.meta["manifest"], _protocol(options, image_size)),
    )
    return FeatureSet(arrays, info)


def extract_retrieval_features(
    backbone_id: str,
    spec: Mapping[str, Any],
    split_dir: str | Path,
    options: ExtractionOptions,
    image_size: int | None,
    *,
    transform: Mapping[str, str],
    crop_queries: bool,
    dataset: str,
) -> FeatureSet:
    """Query and database descriptors of the retrieval split in ``split_dir``, through the backbone's
    retrieval transform (``transform``: :func:`bobench.retrieval.transform.transform_params`); queries are
    cropped to their boxes where ``crop_queries`` and the split has boxes."""
    spec, transform = dict(spec), dict(transform)
    split, meta = load_split(split_dir, verify=True)
    backbone = create_backbone(backbone_id, spec, image_size=image_size)
    backbone.transform = retrieval_transform(backbone.transform, transform)
    log.info("retrieval transform %s (%s)", backbone.transform.as_dict(), transform)
    cropped = bool(crop_queries and split.query_boxes is not None)
    images = {
        "query": (split.query_files(crop=crop_queries), np.arange(len(split.queries))),
        "database": (split.database_files(), np.arange(len(split.database))),
    }
    arrays, info = extract_features(backbone, images, family=spec["family"], options=options)
    info.update(
        dataset=dataset,
        split_version=meta["split_version"],
        split_sha256=meta["split_sha256"],
        transform_params=transform,
        cropped_queries=cropped,
        fingerprint=job_fingerprint(
            spec, meta["split_sha256"], {**_protocol(options, image_size), "transform": transform, "crop_queries": cropped}
        ),
    )
    return FeatureSet({key: arrays[key] for key in ("query_features", "database_features")}, info)
