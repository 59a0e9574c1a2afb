"""Rule prepare_retrieval_dataset: registry entry → versioned query/database split."""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.rehearsal.standins import entry_for_preparation  # noqa: E402
from bobench.retrieval.sources import prepare_retrieval_dataset  # noqa: E402

sm = snakemake  # noqa: F821
prepare_retrieval_dataset(
    sm.wildcards.dataset,
    entry_for_preparation(sm.params.entry, sm.params.raw_dir, sm.input.standin),
    out_dir=folder(sm.output),
    raw_dir=sm.params.raw_dir,
    log=log,
    prepared_dirs=sm.params.prepared_dirs,
    max_images=sm.params.max_images,
)
