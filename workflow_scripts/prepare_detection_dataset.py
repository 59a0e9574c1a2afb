"""Rule prepare_detection_dataset: registry entry → COCO-format splits and their manifest."""

from pathlib import Path

from bobench.detection.sources import prepare_detection_dataset
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
prepare_detection_dataset(
    snakemake.wildcards.dataset,  # noqa: F821
    snakemake.params.entry,  # noqa: F821
    raw_dir=snakemake.params.raw_dir,  # noqa: F821
    out_dir=Path(snakemake.output.manifest).parent,  # noqa: F821
    prepared_dirs=snakemake.params.prepared_dirs,  # noqa: F821
    log=log,
)
