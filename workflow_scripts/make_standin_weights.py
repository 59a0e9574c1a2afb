"""Rule make_standin_weights: a seeded checkpoint in the native layout of a backbone's weight source."""

from bobench.workflow import start_job

start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.rehearsal.standin_weights import write_standin_weights  # noqa: E402

sm = snakemake  # noqa: F821
write_standin_weights(sm.wildcards.backbone, sm.params.entry, sm.params.root, seed=sm.params.seed)
