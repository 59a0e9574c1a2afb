"""Rule prepare_dataset: registry entry → prepared, memory-mappable dataset."""

from bobench.datasets import prepare_dataset
from bobench.rehearsal.standins import entry_for_preparation
from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
prepare_dataset(
    sm.wildcards.dataset,
    entry_for_preparation(sm.params.entry, sm.params.raw_dir, sm.input.standin),
    out_dir=folder(sm.output[0]),
    raw_dir=sm.params.raw_dir,
    log=log,
)
