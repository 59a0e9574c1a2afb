"""The frozen probe's defaults that became BoB's, side by side: head, input and schedule against their previous
values, one at a time.

Four runs of rule ``frozen_probe``'s job (:func:`bobench.jobs.finetune.train_classifier`, the recipe through
:func:`~bobench.jobs.finetune.finetune_recipe`) on the same backbone, splits, seed and steps:

- BoB (config/paper.yaml's ``frozen_probe``): ``head: bob`` (the registry's ``probe_head``: BoB's rule gives
  EfficientNet-Lite0, a CNN whose name has no "conv", the linear layer alone), ``input: bob`` (MAE's
  RandomResizedCrop + flip, Resize(int(size × 1.143)) → CenterCrop, ImageNet mean/std), ``schedule: mae``
  (half-cycle cosine set before every step, warm-up from 0);
- ``head: batchnorm``: BatchNorm1d (no affine) + linear, what every backbone got before;
- ``input: native``: the backbone's own eval transform and mean/std, timm's training crop with random
  interpolation, what every backbone got before;
- ``schedule: timm``: timm's cosine stepped per epoch, warm-up from 1e-6, what the probe ran before.

Offline: EfficientNet-Lite0's ImageNet weights come from a pip package and scikit-learn ships the digits.
MAE's LARS trust ratio is off here by default (``--trust-ratio`` turns it on): in a run of a hundred steps it
pins the head to its initialisation (``benchmarks/results/lars_trust_ratio.md``: 10.9% test top-1 on these
digits), which would hide the three switches measured here. A short CPU run at a small image size shows each
switch's mechanism, not the size of its effect on BoB's 90-epoch ImageNet probe at 224 px.

    python benchmarks/bench_probe_defaults.py [--image-size 32] [--epochs 20] [--warmup-epochs 2] [--batch-size 64]
                                               [--trust-ratio] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo_setup import prepared_dataset, registry, write_markdown  # noqa: E402

from bobench.jobs.finetune import finetune_recipe, resolved_probe_head, train_classifier  # noqa: E402
from bobench.stats import percentile_interval  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "probe_defaults.md"
SWITCHES = ("head", "input", "schedule")
#: What each switch was before it took BoB's value (docs/protocol.md §3.3).
PREVIOUS = {"head": "batchnorm", "input": "native", "schedule": "timm"}


def paper_defaults() -> dict[str, str]:
    """``frozen_probe.head``, ``input`` and ``schedule`` as config/paper.yaml sets them."""
    section = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["frozen_probe"]
    return {key: section[key] for key in SWITCHES}


def run(args: argparse.Namespace, dataset_dir: Path, switches: dict[str, str], bootstrap: dict) -> dict:
    """One frozen-probe job with these head/input/schedule values: test top-1 (with its bootstrap replicates),
    best epoch, the last epoch's training loss, wall and process CPU seconds."""
    section = {
        "image_size": args.image_size,
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "batch_size": args.batch_size,
        "micro_batch": args.batch_size,
        "lr": 0.1 * args.batch_size / 256,
        "lars_trust_ratio": args.trust_ratio,
        "precision": "fp32",
        **switches,
    }
    options, image_size = finetune_recipe(section, "frozen_probe")
    spec = registry("backbones")[args.backbone]
    wall, process = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_classifier(
            args.backbone,
            spec,
            dataset_dir,
            options,
            image_size,
            task="frozen_probe",
            dataset=args.dataset,
            checkpoint=Path(tmp) / "probe.pt",
            bootstrap=bootstrap,
            seed=0,
            device=torch.device("cpu"),
        )
    wall, process = time.perf_counter() - wall, time.process_time() - process
    top1 = next(m for m in trained.record.metrics if m["primary"])
    params = trained.record.protocol_params
    return {
        "options": options,
        "head": params["probe_head"],
        "top1": top1,
        "replicates": np.asarray(top1["replicates"]),
        "best_epoch": params["best_epoch"] + 1,
        "last_loss": params["history"][-1]["train_loss"],
        "sizes": trained.record.sizes,
        "wall": wall,
        "cpu": process,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="effnet_lite0_in1k")
    parser.add_argument("--dataset", default="digits", help="a registry dataset that prepares offline")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--trust-ratio", action="store_true", help="MAE's LARS trust ratio on (BoB's; off by default)")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's choice); 1 on a loaded machine")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bootstrap = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["bootstrap"]
    bob = paper_defaults()
    variants = {"bob": bob, **{key: {**bob, key: PREVIOUS[key]} for key in SWITCHES}}
    started, cpu_started = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = prepared_dataset(args.dataset, Path(tmp))
        runs = {}
        for name, switches in variants.items():
            runs[name] = run(args, dataset_dir, switches, bootstrap)
            print(name, {k: v for k, v in runs[name].items() if k not in ("options", "top1", "replicates")}, flush=True)
    total_wall, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    options, sizes = runs["bob"]["options"], runs["bob"]["sizes"]
    steps_per_epoch = sizes["train"] // args.batch_size  # the engine drops an incomplete last batch
    command = (
        f"python benchmarks/bench_probe_defaults.py --image-size {args.image_size} --epochs {args.epochs} "
        f"--warmup-epochs {args.warmup_epochs} --batch-size {args.batch_size}"
        f"{' --trust-ratio' if args.trust_ratio else ''}{f' --threads {args.threads}' if args.threads else ''}"
    )
    level = bootstrap["level"]
    lines = [
        "# Frozen probe: BoB's head, input and schedule vs their previous values, one at a time",
        "",
        f"`{command}` (run at `nice -n 19` on a shared 2-core machine)",
        "",
        f"- {args.backbone} at {args.image_size} px on {args.dataset} (train {sizes['train']}, val {sizes['val']}, "
        f"test {sizes['test']}); CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; seed 0 for every run",
        f"- rule `frozen_probe`'s job: {args.epochs} epochs ({args.warmup_epochs} warm-up) × {steps_per_epoch} steps, "
        f"batch {args.batch_size}, lr {options.lr:g} (0.1 × batch / 256), weight decay 0, fp32, "
        f"LARS trust ratio {'on' if args.trust_ratio else 'off (momentum SGD; see the module docstring)'}; "
        "test top-1 of the epoch best on val",
        f"- top-1 in %, with its {level:.0%} bootstrap interval; the difference's interval is paired (the same "
        f"{bootstrap['n_boot']} resamples of the test images for every run). Whole run: {total_wall:.0f} s wall, "
        f"{total_cpu:.0f} s process CPU",
        "",
        "| run | head / input / schedule | best epoch | last-epoch train loss | test top-1 | BoB − this run "
        "| wall s (CPU s) | CPU time × BoB's |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = runs["bob"]
    for name, r in runs.items():
        top1 = r["top1"]
        used = f"{r['head']}{' (bob)' if r['options'].head == 'bob' else ''} / {r['options'].input} / {r['options'].schedule}"
        label = "BoB (new defaults)" if name == "bob" else f"`{name}: {PREVIOUS[name]}` (before)"
        if name == "bob":
            diff = "—"
        else:
            low, high = percentile_interval(100 * (base["replicates"] - r["replicates"]), level)
            diff = f"{100 * (base['top1']['value'] - top1['value']):+.1f} [{low:+.1f}, {high:+.1f}]"
        lines.append(
            f"| {label} | {used} | {r['best_epoch']} | {r['last_loss']:.3f} | {100 * top1['value']:.1f} "
            f"[{100 * top1['ci_low']:.1f}, {100 * top1['ci_high']:.1f}] | {diff} | {r['wall']:.1f} ({r['cpu']:.1f}) | "
            f"{r['cpu'] / base['cpu']:.2f} |"
        )
    lines += [
        "",
        f"BoB's rule gives {args.backbone} the head `{resolved_probe_head('bob', registry('backbones')[args.backbone])}`. "
        f"{args.epochs * steps_per_epoch} steps on {sizes['train']} images at {args.image_size} px, one seed: the run "
        "shows which way each switch moves a short probe and what it costs, not the size of its effect on BoB's "
        "ImageNet probe (90 epochs × 620 steps at 224 px).",
    ]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
