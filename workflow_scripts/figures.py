"""Rule figures: redraw every figure from the results table and the ranking files (bobench.jobs.figures)."""

from bobench.jobs.figures import draw_figures
from bobench.options import options_from_config
from bobench.ranking import RankingOptions
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
options = options_from_config(RankingOptions, sm.params.ranking, where="ranking")
draw_figures(sm.input.results, sm.input.overall, sm.input.intervals, options, sm.params.out_dir)
