"""Job extract_retrieval_features: one backbone's query and database descriptors of a retrieval benchmark."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bobench.backbones.model import create_backbone
from bobench.features import ExtractionOptions, FeatureSet, extract_features
from bobench.jobs.features import extraction_protocol
from bobench.provenance import job_fingerprint
from bobench.retrieval.splits import load_split
from bobench.retrieval.transform import retrieval_transform

log = logging.getLogger(__name__)


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
            spec, meta["split_sha256"], {**extraction_protocol(options, image_size), "transform": transform, "crop_queries": cropped}
        ),
    )
    return FeatureSet({key: arrays[key] for key in ("query_features", "database_features")}, info)
