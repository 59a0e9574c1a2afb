"""Rule collect in redraw mode (config results_table): an existing results table → results/results.{csv,parquet}
and its replicates, so the ranking, tables and figures are redrawn without running any task."""

from bobench.results import import_results, write_replicates, write_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
frame, replicates = import_results(sm.input.table)
write_results(frame, sm.output.csv, sm.output.parquet)
write_replicates(replicates, sm.output.replicates)
log.info("%d rows and %d replicate sets from %s", len(frame), len(replicates), sm.input.table)
