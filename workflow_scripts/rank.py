"""Rule rank: BoB z-scores per setting → per task → overall, top-k tables, bootstrap intervals and the IQM view
(bobench.jobs.ranking)."""

from bobench.jobs.ranking import rank_results, ranking_options
from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
options, bootstrap = ranking_options(sm.params.ranking, sm.params.bootstrap, seed=sm.params.seed)
ranked = rank_results(sm.input.results, sm.input.replicates, options, bootstrap)
ranked.write(folder(sm.output.overall))
