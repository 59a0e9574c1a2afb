"""Rule make_standin_data: a paper dataset's stand-in, in its real layout, where its loader looks."""

from bobench.rehearsal.standins import make_standin_data
from bobench.workflow import start_job

start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
make_standin_data(sm.wildcards.dataset, sm.params.entry, sm.params.raw_dir, seed=sm.params.seed,
                  images_per_class=sm.params.images_per_class)
