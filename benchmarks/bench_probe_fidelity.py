"""The cached-feature linear probe against BoB's frozen-backbone LARS probe, on the demo data.

Side by side in one process, same backbone, same splits, same image size:

* ``cached``: what rules ``extract_features`` + ``linear_probe`` do: one pass of the frozen
  backbone over each split, then full-batch L-BFGS logistic regression with C chosen on val.
* ``LARS``: what rule ``frozen_probe`` does (BoB §3.3, MAE's recipe): BatchNorm + linear head on
  the frozen backbone, LARS, 90 epochs with 10 warm-up, weak augmentation (random-resized crop
  and flip), so the images go through the backbone every epoch; best val epoch's test top-1.

    python benchmarks/bench_probe_fidelity.py [--backbone effnet_lite0_in1k] [--image-size 64] [--epochs 90]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.datasets import load_prepared  # noqa: E402
from bobench.features import ExtractionOptions, extract_features  # noqa: E402
from bobench.io import atomic_path  # noqa: E402
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions, attach_probe_head, finetune  # noqa: E402
from bobench.tasks.linear_probe import ProbeOptions, linear_probe  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "probe_fidelity.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="effnet_lite0_in1k")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    prepared = ROOT / "data" / "prepared" / args.dataset
    if not (prepared / "meta.json").exists():
        sys.exit(f"{prepared} is not prepared: run `snakemake --cores 2` (the default battle) first")
    dataset = load_prepared(prepared)
    splits = {name: dataset.split(name) for name in ("train", "val", "test")}
    entry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())[args.backbone]
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

    started = time.perf_counter()
    backbone = create_backbone(args.backbone, entry, image_size=args.image_size)
    arrays, _ = extract_features(backbone, splits, family=entry["family"], options=ExtractionOptions(batch_size=64))
    probe = linear_probe(
        arrays["train_features"], arrays["train_labels"], arrays["val_features"], arrays["val_labels"],
        arrays["test_features"], arrays["test_labels"], num_classes=dataset.num_classes,
        options=ProbeOptions(c_grid=tuple(demo["linear_probe"]["c_grid"])),
    )
    cached_seconds, cached_top1 = time.perf_counter() - started, probe.test_top1

    started = time.perf_counter()
    backbone = create_backbone(args.backbone, entry, image_size=args.image_size)
    model = attach_probe_head(backbone.model, backbone.feature_dim, dataset.num_classes, seed=0)
    options = dataclasses.replace(
        FinetuneOptions(**FROZEN_PROBE_RECIPE), epochs=args.epochs, warmup_epochs=max(1, args.epochs // 9),
        batch_size=args.batch_size, micro_batch=args.batch_size, lr=0.1 * args.batch_size / 256,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(model, splits, dataset.num_classes, backbone.transform, options, Path(tmp) / "lp.pt",
                          channels_last=entry["family"] == "CNN")
    lars_seconds = time.perf_counter() - started
    lars_top1 = float((result.test_probs.argmax(1) == result.test_labels).mean())

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    lines = [
        "# Linear probe: cached features (L-BFGS) vs BoB's frozen-backbone LARS probe",
        "",
        f"- {args.backbone} at {args.image_size} px on {args.dataset} "
        f"(train {len(splits['train'][1])}, val {len(splits['val'][1])}, test {len(splits['test'][1])}); {device}; torch {torch.__version__}",
        f"- LARS: {args.epochs} epochs, batch {args.batch_size}, lr {options.lr:g}, best epoch {result.best_epoch + 1} by val",
        "- wall time includes building the backbone and every forward pass over the images",
        "",
        "| protocol | wall time (s) | test top-1 |",
        "|---|---:|---:|",
        f"| cached features + L-BFGS (C on val, refit on train+val) | {cached_seconds:.1f} | {cached_top1:.3f} |",
        f"| frozen backbone + BN + linear, LARS, weak augmentation | {lars_seconds:.1f} | {lars_top1:.3f} |",
        "",
        f"**The cached-feature probe is {lars_seconds / cached_seconds:.1f}× faster; "
        f"top-1 difference (cached − LARS): {100 * (cached_top1 - lars_top1):+.1f} points.**",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
