"""Rule published_figures: the figures drawn from published numbers alone (no run needed)."""

from bobench.jobs.figures import draw_published_figures
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
draw_published_figures(sm.input.reference, sm.params.methods, sm.output[0])
