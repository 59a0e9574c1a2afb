"""The detection defaults that became BoB's, side by side on the demo's canvases: BoB's aligned RoIAlign and
training proposals per family against their previous values, one at a time.

Three detectors run the code of rule ``train_detector`` (:mod:`bobench.detection.job`) on the pretrained
EfficientNet-Lite0 with the demo's recipe (config/config.yaml: Mask R-CNN, AdamW lr 2e-4, 8 images per step,
BoB's augmentations × 0.16, 64 sampled RoIs per image, 100 proposals at test) with fewer warm-up steps, same
seed, same images in the same order:

- BoB (the schema's defaults, config/paper.yaml's): ``roi_align_aligned: true`` (mmcv's half-pixel offset,
  mmdet's level rule; :mod:`bobench.detection.roi`) and ``train_proposals_per_image: bob`` (2,000 RPN
  proposals kept per image in training for a hierarchical backbone);
- ``roi_align_aligned: false``: torchvision's ``MultiScaleRoIAlign`` (what every run used before);
- ``train_proposals_per_image`` = the test count (``proposals_per_image``, 100 here; what every run used
  before: config/paper.yaml kept 1,000 in training where BoB keeps 2,000).

A short training (minutes of CPU) on 128 px canvases: it shows what each switch changes in cost and in a
young detector's AP, not the size of the effect on COCO at 1,024-1,333 px. Training time: wall and process
CPU seconds of the whole training divided by its steps (each step with its data loading; process CPU time is
what other work on the machine moves least).

    python benchmarks/bench_detection_defaults.py [--train-images 80] [--epochs 2] [--warmup-iters 5] [--test-images 20]
                                                   [--threads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo_setup import canvases, demo_detection_options, train_and_score, write_markdown  # noqa: E402

from bobench.detection.model import train_proposals  # noqa: E402
from bobench.detection.train import DetectionOptions  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "detection_defaults.md"


def variants(base: DetectionOptions) -> dict[str, dict]:
    """BoB's defaults, then each switched back to its previous value alone: name → DetectionOptions overrides."""
    return {
        "bob": {"roi_align_aligned": True, "train_proposals_per_image": "bob"},
        "unaligned": {"roi_align_aligned": False, "train_proposals_per_image": "bob"},
        "test_count": {"roi_align_aligned": True, "train_proposals_per_image": base.proposals_per_image},
    }


LABELS = {
    "bob": "BoB (new defaults): aligned RoIAlign, `train_proposals_per_image: bob`",
    "unaligned": "`roi_align_aligned: false` (torchvision's MultiScaleRoIAlign)",
    "test_count": "`train_proposals_per_image` = the test count",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=80)
    parser.add_argument("--test-images", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup-iters", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's choice); 1 on a loaded machine")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    base = demo_detection_options(detector="mask_rcnn", epochs=args.epochs, steps=(args.epochs,), warmup_iters=args.warmup_iters)
    options = {name: dataclasses.replace(base, **overrides) for name, overrides in variants(base).items()}
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = canvases(Path(tmp), args.train_images, args.test_images)
        for name, opts in options.items():
            rows[name] = train_and_score(name, manifest, opts, Path(tmp))
            print(name, {k: v for k, v in rows[name].items() if k not in ("box", "mask")}, flush=True)
    total_wall, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    command = (
        f"python benchmarks/bench_detection_defaults.py --train-images {args.train_images} --epochs {args.epochs} "
        f"--warmup-iters {args.warmup_iters} --test-images {args.test_images}{f' --threads {args.threads}' if args.threads else ''}"
    )
    steps = rows["bob"]["steps"]
    lines = [
        "# Detection defaults: BoB's aligned RoIAlign and training proposals vs their previous values (CPU, demo canvases)",
        "",
        f"`{command}` (run at `nice -n 19` on a shared 2-core machine)",
        "",
        f"- Mask R-CNN on the pretrained EfficientNet-Lite0 (FPN), the demo's recipe ({base.batch_size} images per step, "
        f"BoB's augmentations × {base.augment_scale}, {base.rois_per_image} RoIs sampled per image, lr {base.lr:g}, "
        f"{args.warmup_iters} warm-up steps), {args.epochs} epochs of {args.train_images} canvases ({steps} steps), "
        f"{args.test_images} test canvases, {base.proposals_per_image} proposals per image at test; seed 0, fp32, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"- `bob` keeps {train_proposals('bob', plain=False)} RPN proposals per image in training for this hierarchical "
        f"backbone (on these canvases NMS leaves fewer: in effect all of them); the previous value kept the test count, "
        f"{base.proposals_per_image}",
        "- time per training step: the whole training's wall (process CPU) seconds / steps, data loading included; "
        f"AP in % (COCOeval) after that short training; loss: the last epoch's mean. Whole run: {total_wall:.0f} s wall, "
        f"{total_cpu:.0f} s process CPU",
        "",
        "| variant | step: wall s (CPU s) | last-epoch loss (RoI heads: cls + box + mask) | box AP | AP50 | AP75 | mask AP |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        box, mask, losses = row["box"], row["mask"], row["losses"]
        heads = sum(losses.get(key, 0.0) for key in ("loss_classifier", "loss_box_reg", "loss_mask"))
        lines.append(
            f"| {LABELS[name]} | {row['train_wall'] / row['steps']:.2f} ({row['train_cpu'] / row['steps']:.2f}) | "
            f"{losses['loss']:.3f} ({heads:.3f}) | {100 * box['ap'][0]:.1f} | {100 * box['ap50'][0]:.1f} | "
            f"{100 * box['ap75'][0]:.1f} | {100 * mask['ap'][0]:.1f} |"
        )
    bob = rows["bob"]
    lines.append("")
    for name in ("unaligned", "test_count"):
        row = rows[name]
        lines.append(
            f"- BoB − {LABELS[name].split(' (')[0]}: box AP {100 * (bob['box']['ap'][0] - row['box']['ap'][0]):+.1f} points, "
            f"mask AP {100 * (bob['mask']['ap'][0] - row['mask']['ap'][0]):+.1f}; CPU time per training step × "
            f"{bob['train_cpu'] / row['train_cpu']:.2f} (wall × {bob['train_wall'] / row['train_wall']:.2f})"
        )
    lines += [
        "",
        f"{steps} steps from the ImageNet backbone on a few canvases and one seed: a difference of a point or two "
        "of AP may be noise. The run shows the mechanism (what each switch costs per step, and which way it moves a "
        "young detector), not the size of the effect on BoB's COCO numbers.",
    ]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
