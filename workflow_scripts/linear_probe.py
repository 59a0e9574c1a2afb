"""Rule linear_probe: multinomial logistic regression on cached features."""

import dataclasses
import time

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.cells import auroc_entries, load_features, metric_entry, write_record  # noqa: E402
from bobench.features import pick_device  # noqa: E402
from bobench.tasks.linear_probe import ProbeOptions, linear_probe  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
arrays, info = load_features(sm.input.features, sm.input.info)
params = dict(sm.params.probe)
options = ProbeOptions(
    c_grid=tuple(float(c) for c in params["c_grid"]),
    max_iter=params["max_iter"],
    tolerance=params["tolerance"],
    standardize=params["standardize"],
    refit_on_train_val=params["refit_on_train_val"],
)
result = linear_probe(
    arrays["train_features"], arrays["train_labels"],
    arrays["val_features"], arrays["val_labels"],
    arrays["test_features"], arrays["test_labels"],
    num_classes=info["num_classes"], options=options, device=pick_device(),
)
multilabel = arrays["test_labels"].ndim == 2  # CheXpert: AUROC per finding and their mean
selection = "val mean AUROC" if multilabel else "val top-1"
log.info("test score %.4f with C=%g (%s per C: %s)", result.test_top1, result.chosen_c, selection, result.val_top1_per_c)
if multilabel:
    metrics = auroc_entries(result.test_scores, arrays["test_labels"], info["class_names"], sm.params.bootstrap, sm.params.seed)
else:
    metrics = [metric_entry("top1", result.test_correct, sm.params.bootstrap, sm.params.seed, primary=True)]
write_record(
    sm.output.record,
    task_name="linear_probe",
    backbone=sm.wildcards.backbone,
    dataset=sm.wildcards.dataset,
    features_info=info,
    protocol_params={
        **dataclasses.asdict(options),
        "solver": "torch L-BFGS (strong Wolfe), full batch, sklearn objective",
        "chosen_c": result.chosen_c,
        "val_top1_per_c": {str(c): v for c, v in result.val_top1_per_c.items()},
        "n_iter": result.n_iter,
        "selection": selection,
    },
    metrics=metrics,
    sizes={split: int(len(arrays[f"{split}_labels"])) for split in ("train", "val", "test")},
    seed=sm.params.seed,
    started=started,
)
