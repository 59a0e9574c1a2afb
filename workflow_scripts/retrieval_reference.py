"""Rule retrieval_reference: our retrieval results beside the published table (figure, CSVs, markdown)."""

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.jobs.figures import compare_retrieval  # noqa: E402

sm = snakemake  # noqa: F821
comparison = compare_retrieval(sm.input.results, sm.input.reference)
comparison.write(sm.output.figure[0], sm.output.comparison, sm.output.correlations, sm.output.markdown)
