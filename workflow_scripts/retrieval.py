"""Rule retrieval: rank the database for every query and score it (bobench.jobs.retrieval)."""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.features import FeatureSet  # noqa: E402
from bobench.jobs.retrieval import retrieval_cell, retrieval_options  # noqa: E402

sm = snakemake  # noqa: F821
cell = retrieval_cell(
    FeatureSet.load(sm.input.features, sm.input.info),
    retrieval_options(sm.params.retrieval),
    backbone=sm.wildcards.backbone, dataset=sm.wildcards.dataset,
    split_dir=folder(sm.input.get("split")),  # a retrieval benchmark's split; none for a classification dataset
    bootstrap=sm.params.bootstrap, seed=sm.params.seed,
)
cell.write(sm.output.record, sm.output.predictions)
