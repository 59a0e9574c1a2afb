"""Rule prepare_dataset: registry entry → prepared, memory-mappable dataset."""

from pathlib import Path

from bobench.datasets import prepare_dataset
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
prepare_dataset(
    snakemake.wildcards.dataset,  # noqa: F821
    snakemake.params.entry,  # noqa: F821
    out_dir=Path(snakemake.output[0]).parent,  # noqa: F821
    raw_dir=Path(snakemake.params.raw_dir),  # noqa: F821
    log=log,
)
