"""Rules finetune and frozen_probe: one backbone trained on one dataset, resumable (bobench.jobs.finetune).

finetune: end to end, BoB's recipe (§3.2). frozen_probe: BatchNorm + linear head on the frozen backbone, LARS (§3.3).
"""

from bobench.workflow import folder, start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.jobs.finetune import finetune_recipe, train_classifier  # noqa: E402

sm = snakemake  # noqa: F821
options, image_size = finetune_recipe(sm.params.finetune, task=sm.params.task)
trained = train_classifier(
    sm.wildcards.backbone, sm.params.backbone, folder(sm.input.dataset), options, image_size,
    task=sm.params.task, dataset=sm.wildcards.dataset, checkpoint=sm.params.checkpoint,
    bootstrap=sm.params.bootstrap, seed=sm.params.seed,
    # The cache is an input (it changes what training draws from); the scratch budget for evaluation crops
    # changes no result, so it is read from the config, not passed as a param that would rerun jobs.
    input_cache=folder(sm.input.input_cache) if sm.input.input_cache else None,
    eval_crops_max_gb=sm.config["input_cache"]["eval_crops_max_gb"],
)
trained.write(sm.output.record, sm.output.weights)
