"""Rule ood_classification: a fine-tuned classifier tested, without further training, on its OOD sets; one
record per set (bobench.jobs.ood)."""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.cells import write_records  # noqa: E402
from bobench.jobs.finetune import finetune_recipe  # noqa: E402
from bobench.jobs.ood import ood_cells  # noqa: E402

sm = snakemake  # noqa: F821
options, image_size = finetune_recipe(sm.params.finetune, task="finetune")
records = ood_cells(
    sm.wildcards.backbone, sm.params.backbone, folder(sm.input.dataset), sm.input.weights, options, image_size,
    sm.params.sets, dataset=sm.wildcards.dataset, prepared_dirs=sm.params.prepared_dirs,
    bootstrap=sm.params.bootstrap, seed=sm.params.seed,
)
write_records(sm.output.record, records)
