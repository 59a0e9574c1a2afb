# Battle of the Backbones as one workflow:
#   prepare datasets → extract features → linear probe / kNN / retrieval, fine-tuning → OOD
#   classification; detectors; retrieval benchmarks → collect → rank → figures, report tables
#   (`--config results_table=…`: collect imports an existing table instead; no task job runs)
# The stages live in rules/*.smk; helpers and config checks in rules/common.smk.

from snakemake.utils import min_version

from bobench.scheduler_timers import cancel_pending_timers

min_version("9.17")


# The demo battle is the run you get with no --configfile. A run given config files gets exactly
# those files (merged in order, so an overlay such as config/rehearsal.yaml works on any config)
# plus the schema's defaults, which are BoB's protocol: never a value of the demo's.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/rehearsal.smk"
include: "rules/data.smk"
include: "rules/features.smk"
include: "rules/classification.smk"
include: "rules/ood.smk"
include: "rules/detection.smk"
include: "rules/retrieval.smk"
include: "rules/results.smk"
include: "rules/figures.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


# Run on the submitting host under a cluster executor: `all` is a target only, and
# dataset preparation (classification, detection, retrieval) downloads data, which compute nodes
# often cannot do.
localrules:
    all,
    prepare_dataset,
    prepare_detection_dataset,
    prepare_retrieval_dataset,
    resolved_config,


rule all:
    default_target: True
    input:
        final_targets(),


# Snakemake's scheduler leaves re-evaluation timers pending when a run ends (bobench/scheduler_timers.py):
# cancel them, so that the command returns when the run is over, not when the last timer fires.
onsuccess:
    cancel_pending_timers()


onerror:
    cancel_pending_timers()
