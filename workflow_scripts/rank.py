"""Rule rank: BoB z-scores per setting → per task → overall, plus top-k tables."""

from pathlib import Path

from bobench.ranking import RankingOptions, compute_ranking, write_ranking
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
ranking = compute_ranking(read_results(sm.input.results), RankingOptions.from_config(dict(sm.params.ranking)))
write_ranking(ranking, Path(sm.output.overall).parent)
log.info("overall ranking:\n%s", ranking.overall.to_string(index=False))
