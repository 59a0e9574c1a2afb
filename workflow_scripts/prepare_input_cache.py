"""Rule prepare_input_cache: a prepared dataset's train split decoded once at one short side (bobench.datasets.input_cache)."""

from bobench.datasets import load_prepared
from bobench.datasets.input_cache import write_input_cache
from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
meta = write_input_cache(
    load_prepared(folder(sm.input.dataset), verify=True),
    folder(sm.output),
    int(sm.wildcards.short_side),
    workers=sm.threads,
)
log.info("%d training images cached at short side %d: %.2f GB", meta["size"], meta["short_side"], meta["bytes"] / 1e9)
