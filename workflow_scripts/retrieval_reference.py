"""Rule retrieval_reference: our retrieval results beside the published table (figure, CSVs, markdown)."""

from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.figures import plot_retrieval_vs_published  # noqa: E402
from bobench.io import atomic_path  # noqa: E402
from bobench.results import read_results  # noqa: E402
from bobench.retrieval.reference import compare_with_published, comparison_markdown, load_published, rank_correlations  # noqa: E402

sm = snakemake  # noqa: F821
published = load_published(sm.input.reference)
comparison = compare_with_published(read_results(sm.input.results), published)
correlations = rank_correlations(comparison)
for frame, path in ((comparison, sm.output.comparison), (correlations, sm.output.correlations)):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
with atomic_path(sm.output.markdown) as tmp:
    Path(tmp).write_text(comparison_markdown(comparison, correlations, published))
plot_retrieval_vs_published(comparison, correlations, Path(sm.output.figure[0]).with_suffix(""), metric=published.metric.upper())
log.info("ours vs published: %s", correlations.to_dict("records"))
