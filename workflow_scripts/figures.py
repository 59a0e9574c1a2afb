"""Rule figures: redraw every figure from the results table and the ranking."""

from bobench.figures import draw_all
from bobench.ranking import RankingOptions, compute_ranking
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
results = read_results(sm.input.results)
# The ranking is a cheap, deterministic function of the table; recomputing it
# with the same options gives exactly what rule rank wrote.
ranking = compute_ranking(results, RankingOptions.from_config(dict(sm.params.ranking)))
for path in draw_all(results, ranking, sm.params.out_dir):
    log.info("wrote %s", path)
