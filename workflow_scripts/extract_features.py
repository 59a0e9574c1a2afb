"""Rule extract_features: one backbone × one dataset → features of every split (bobench.jobs.features)."""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.jobs.features import extract_dataset_features, extraction_options  # noqa: E402

sm = snakemake  # noqa: F821
options, image_size = extraction_options(sm.params.extraction)
features = extract_dataset_features(
    sm.wildcards.backbone, sm.params.backbone, folder(sm.input.dataset), options, image_size, dataset=sm.wildcards.dataset
)
features.write(sm.output.features, sm.output.info)
