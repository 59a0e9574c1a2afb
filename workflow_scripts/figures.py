"""Rule figures: redraw every figure from the results table and the ranking files."""

from pathlib import Path

import pandas as pd

from bobench.figures import draw_all
from bobench.ranking import ALL_TASKS, RankingOptions, read_ranking
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
ranking = read_ranking(Path(sm.input.overall).parent, RankingOptions.from_config(dict(sm.params.ranking)))
# The overall scores' bootstrap intervals become the ranking figure's error bars.
intervals = pd.read_csv(sm.input.intervals)
intervals = intervals[intervals["task"] == ALL_TASKS].set_index("backbone")
ranking.overall["score_ci_low"] = ranking.overall["backbone"].map(intervals["ci_low"])
ranking.overall["score_ci_high"] = ranking.overall["backbone"].map(intervals["ci_high"])
for path in draw_all(read_results(sm.input.results), ranking, sm.params.out_dir):
    log.info("wrote %s", path)
