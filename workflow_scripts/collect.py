"""Rule collect: cell records → results/results.csv and results/results.parquet."""

from bobench.results import collect_results, write_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
frame = collect_results(sm.input.records, sm.params.backbones, sm.params.datasets)
write_results(frame, sm.output.csv, sm.output.parquet)
log.info("%d rows from %d cell records", len(frame), len(sm.input.records))
