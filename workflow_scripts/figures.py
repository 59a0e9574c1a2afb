"""Rule figures: redraw every figure from the results table and the ranking files."""

from pathlib import Path

import pandas as pd

from bobench.figures import draw_all, with_score_intervals
from bobench.ranking import RankingOptions, read_ranking
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
ranking = read_ranking(Path(sm.input.overall).parent, RankingOptions.from_config(dict(sm.params.ranking)))
# The overall scores' bootstrap intervals become the ranking figures' error bars.
ranking = with_score_intervals(ranking, pd.read_csv(sm.input.intervals))
for path in draw_all(read_results(sm.input.results), ranking, sm.params.out_dir):
    log.info("wrote %s", path)
