"""Rule figures: redraw every figure from the results table and the ranking files."""

from pathlib import Path

from bobench.figures import draw_all
from bobench.ranking import RankingOptions, read_ranking
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
ranking = read_ranking(Path(sm.input.overall).parent, RankingOptions.from_config(dict(sm.params.ranking)))
for path in draw_all(read_results(sm.input.results), ranking, sm.params.out_dir):
    log.info("wrote %s", path)
