"""Rule collect: cell records → results/results.{csv,parquet} and the primary metrics' bootstrap
replicates (results/replicates.parquet, read by the ranking's bootstrap)."""

from bobench.results import collect, write_replicates, write_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
frame, replicates = collect(sm.input.records, sm.params.backbones, sm.params.datasets)
write_results(frame, sm.output.csv, sm.output.parquet)
write_replicates(replicates, sm.output.replicates)
log.info("%d rows and %d replicate sets from %d cell records", len(frame), len(replicates), len(sm.input.records))
