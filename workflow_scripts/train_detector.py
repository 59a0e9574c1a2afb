"""Rule train_detector: one backbone × setting × lr, trained on a detection dataset, resumable; one record per
test set and row task (bobench.jobs.detection)."""

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.jobs.detection import detector_cells, detector_recipe  # noqa: E402

sm = snakemake  # noqa: F821
task = sm.wildcards.detection_task
options, bootstrap_resamples = detector_recipe(sm.params.recipe, task, lr=sm.wildcards.lr)
cells = detector_cells(
    sm.wildcards.backbone, sm.params.backbone, sm.input.train, sm.input.test_sets, options,
    task=task, setting=sm.wildcards.setting, dataset=sm.wildcards.dataset, checkpoint=sm.params.checkpoint,
    bootstrap_resamples=bootstrap_resamples, bootstrap=sm.params.bootstrap, seed=sm.params.seed,
)
cells.write(sm.output.record, sm.output.predictions)
