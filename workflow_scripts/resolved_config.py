"""Rule resolved_config: the run's merged, default-filled config, with the files it came from."""

from bobench.config import write_resolved_config
from bobench.workflow import start_job

start_job(snakemake)  # noqa: F821 (injected by Snakemake)
write_resolved_config(snakemake.output[0], snakemake.params.config, snakemake.params.sources)  # noqa: F821
