# The rehearsal's stand-ins (config/rehearsal.yaml): data in each dataset's real layout, written where
# its real loader looks, and seeded checkpoints in each weight source's native layout. Only a
# rehearsal's jobs ask for them.


rule make_standin_data:
    input:
        code=code("make_standin_data.py"),
    output:
        f"{DATA}/raw/{{dataset}}/STANDIN.json",
    log:
        logfile("make_standin_data/{dataset}.log"),
    benchmark:
        logfile("benchmarks/make_standin_data/{dataset}.tsv")
    conda:
        "../environment.yml"
    resources:
        **job_resources("make_standin_data"),
    params:
        entry=lambda wc: bobench_config.canonical(DATASETS[wc.dataset]),
        raw_dir=lambda wc: f"{DATA}/raw/{wc.dataset}",
        seed=config["rehearsal"]["seed"],
        images_per_class=config["rehearsal"]["images_per_class"],
    script:
        "../workflow_scripts/make_standin_data.py"


rule make_standin_weights:
    input:
        code=code("make_standin_weights.py"),
    output:
        f"{STANDINS}/weights/{{backbone}}.json",
    log:
        logfile("make_standin_weights/{backbone}.log"),
    benchmark:
        logfile("benchmarks/make_standin_weights/{backbone}.tsv")
    conda:
        "../environment.yml"
    resources:
        **job_resources("make_standin_weights"),
    params:
        entry=lambda wc: bobench_config.canonical(
            bobench_config.task_entry(REGISTRY_BACKBONES[wc.backbone], None)
        ),
        # The stand-in's root: its manifest sits there, its files below (hub/, weights/).
        root=lambda wc, output: os.path.dirname(output[0]),
        seed=config["rehearsal"]["seed"],
    script:
        "../workflow_scripts/make_standin_weights.py"


# A task variant's own weights (BoB's DeiT and torchvision weights in detection: docs/protocol.md §2.2),
# under the first task that loads them (bobench.config.variant_weights_task).
use rule make_standin_weights as make_task_standin_weights with:
    output:
        f"{STANDINS}/weights/{{weights_task}}/{{backbone}}.json",
    log:
        logfile("make_standin_weights/{weights_task}/{backbone}.log"),
    benchmark:
        logfile("benchmarks/make_standin_weights/{weights_task}/{backbone}.tsv")
    params:
        entry=lambda wc: bobench_config.canonical(
            bobench_config.task_entry(REGISTRY_BACKBONES[wc.backbone], wc.weights_task)
        ),
        root=lambda wc, output: os.path.dirname(output[0]),
        seed=config["rehearsal"]["seed"],
