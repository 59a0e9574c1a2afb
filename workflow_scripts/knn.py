"""Rule knn: cosine kNN classifier on cached features, train + val as the bank (bobench.jobs.knn)."""

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.features import FeatureSet  # noqa: E402
from bobench.jobs.knn import KnnOptions, knn_cell  # noqa: E402
from bobench.options import options_from_config  # noqa: E402

sm = snakemake  # noqa: F821
record = knn_cell(
    FeatureSet.load(sm.input.features, sm.input.info),
    options_from_config(KnnOptions, sm.params.knn, where="knn"),
    backbone=sm.wildcards.backbone, dataset=sm.wildcards.dataset, bootstrap=sm.params.bootstrap, seed=sm.params.seed,
)
record.write(sm.output.record)
