"""Rule prepare_detection_dataset: registry entry → COCO-format splits and their manifest."""

from bobench.detection.sources import prepare_detection_dataset
from bobench.rehearsal.standins import entry_for_preparation
from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
prepare_detection_dataset(
    sm.wildcards.dataset,
    entry_for_preparation(sm.params.entry, sm.params.raw_dir, sm.input.standin),
    raw_dir=sm.params.raw_dir,
    out_dir=folder(sm.output.manifest),
    prepared_dirs=sm.params.prepared_dirs,
    log=log,
)
