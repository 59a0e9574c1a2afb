"""Rule extract_retrieval_features: one backbone × one retrieval benchmark → query and database descriptors
(bobench.jobs.retrieval_features)."""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.jobs.features import extraction_options  # noqa: E402
from bobench.jobs.retrieval_features import extract_retrieval_features  # noqa: E402

sm = snakemake  # noqa: F821
options, image_size = extraction_options(sm.params.extraction)
features = extract_retrieval_features(
    sm.wildcards.backbone, sm.params.backbone, folder(sm.input.split), options, image_size,
    transform=sm.params.transform, crop_queries=sm.params.crop_queries, dataset=sm.wildcards.dataset,
)
features.write(sm.output.features, sm.output.info)
