"""Rule extract_retrieval_features: one backbone × one retrieval benchmark → query and database descriptors."""

from pathlib import Path

import numpy as np

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.features import ExtractionOptions, extract_features  # noqa: E402
from bobench.io import save_npz, write_json  # noqa: E402
from bobench.provenance import canonical_hash  # noqa: E402
from bobench.retrieval.splits import load_split  # noqa: E402
from bobench.retrieval.transform import retrieval_transform  # noqa: E402

sm = snakemake  # noqa: F821
spec, extraction = dict(sm.params.backbone), dict(sm.params.extraction)
split, meta = load_split(Path(sm.input.split[0]).parent, verify=True)
backbone = create_backbone(sm.wildcards.backbone, spec, image_size=extraction["image_size"])
backbone.transform = retrieval_transform(backbone.transform, sm.params.transform)
log.info("retrieval transform %s (%s)", backbone.transform.as_dict(), sm.params.transform)
options = ExtractionOptions(
    batch_size=extraction["batch_size"],
    precision=extraction["precision"],
    channels_last=extraction["channels_last"],
    num_workers=extraction["num_workers"],
)
images = {
    "query": (split.query_files(crop=sm.params.crop_queries), np.arange(len(split.queries))),
    "database": (split.database_files(), np.arange(len(split.database))),
}
arrays, info = extract_features(backbone, images, family=spec["family"], options=options)
info.update(
    dataset=sm.wildcards.dataset,
    split_version=meta["split_version"],
    split_sha256=meta["split_sha256"],
    transform_params=dict(sm.params.transform),
    cropped_queries=bool(sm.params.crop_queries and split.query_boxes is not None),
    fingerprint=canonical_hash({
        "backbone": spec, "transform": dict(sm.params.transform), "split": meta["split_sha256"],
        "crop_queries": bool(sm.params.crop_queries and split.query_boxes is not None),
        "extraction": {k: v for k, v in extraction.items() if k != "num_workers"},
    }),
)
# The npz goes first and the json last: the json marks a complete pair.
save_npz(sm.output.features, query_features=arrays["query_features"], database_features=arrays["database_features"])
write_json(sm.output.info, info)
