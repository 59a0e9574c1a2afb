"""Rule published_figures: the figures drawn from published numbers alone (no run needed)."""

from pathlib import Path

from bobench.figures import plot_published_retrieval
from bobench.retrieval.reference import load_published, published_scores
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
published = load_published(sm.input.reference)
paths = plot_published_retrieval(published_scores(published), dict(sm.params.methods), Path(sm.output[0]).with_suffix(""),
                                 metric=published.metric.upper())
log.info("wrote %s", ", ".join(map(str, paths)))
