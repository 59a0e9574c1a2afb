"""Rule linear_probe: multinomial logistic regression on cached features (bobench.jobs.linear_probe)."""

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.features import FeatureSet  # noqa: E402
from bobench.jobs.linear_probe import ProbeOptions, linear_probe_cell  # noqa: E402
from bobench.options import options_from_config  # noqa: E402

sm = snakemake  # noqa: F821
record = linear_probe_cell(
    FeatureSet.load(sm.input.features, sm.input.info),
    options_from_config(ProbeOptions, sm.params.probe, where="linear_probe"),
    backbone=sm.wildcards.backbone, dataset=sm.wildcards.dataset, bootstrap=sm.params.bootstrap, seed=sm.params.seed,
)
record.write(sm.output.record)
