"""Mask R-CNN against BoB's Cascade Mask R-CNN on the demo's synthetic canvases: time per step and AP.

Both detectors run the code of rule ``train_detector`` (:mod:`bobench.detection.job`) on the pretrained
EfficientNet-Lite0 with the demo's recipe (config/config.yaml: AdamW lr 2e-4, 8 images per step, BoB's
AutoAugment × 0.16, 64 sampled RoIs per image, 100 proposals) but fewer warm-up iterations, same seed,
same images in the same order, on the demo's canvases (Fashion-MNIST trousers, sneakers and bags on
128 px canvases). A short training (minutes of CPU): the numbers compare the detectors, they are no
converged APs. Times are measured apart, interleaved so that load from other work on the machine hits
both alike: a training step (forward and backward on the same 8 augmented canvases) and a test image of
each detector in turn, ``--rounds`` times after one warm-up round; medians of wall and process CPU time.

    python benchmarks/bench_cascade_vs_mask.py [--train-images 80] [--epochs 2] [--warmup-iters 5] [--test-images 30]
                                               [--rounds 3] [--lr-steps EPOCH ...] [--detectors NAME ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo_setup import canvases, demo_detection_options, interleaved_times, train_and_score, write_markdown  # noqa: E402

from bobench.detection.heads import detector_name  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "cascade_vs_mask.md"
DETECTORS = ("mask_rcnn", "cascade_mask_rcnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=80)
    parser.add_argument("--test-images", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup-iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[], help="epochs after which the lr drops ×0.1")
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    options = {detector: demo_detection_options(detector=detector, epochs=args.epochs, warmup_iters=args.warmup_iters,
                                                steps=tuple(args.lr_steps) or (args.epochs,))
               for detector in args.detectors}
    recipe = options[args.detectors[0]]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = canvases(Path(tmp), args.train_images, args.test_images)
        times = interleaved_times(manifest, options, args.rounds)
        print(times, flush=True)
        rows = {}
        for detector in args.detectors:
            rows[detector] = train_and_score(detector, manifest, options[detector], Path(tmp))
            print(detector, {k: v for k, v in rows[detector].items() if k not in ("box", "mask", "losses")}, flush=True)
    lines = [
        "# Mask R-CNN against BoB's Cascade Mask R-CNN (CPU, demo canvases)",
        "",
        f"`python benchmarks/bench_cascade_vs_mask.py --train-images {args.train_images} --epochs {args.epochs} "
        f"--warmup-iters {args.warmup_iters} --test-images {args.test_images} --rounds {args.rounds}"
        f"{' --lr-steps ' + ' '.join(map(str, args.lr_steps)) if args.lr_steps else ''} --detectors {' '.join(args.detectors)}`: pretrained "
        f"EfficientNet-Lite0 (FPN), the demo's recipe ({recipe.batch_size} images per step, BoB's augmentations × "
        f"{recipe.augment_scale}, {recipe.rois_per_image} RoIs per image, lr {recipe.lr:g}, "
        f"{args.warmup_iters} warm-up steps), {args.epochs} epochs of {args.train_images} canvases "
        f"({rows[args.detectors[0]]['steps']} steps), {args.test_images} test canvases; fp32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Times: medians of {args.rounds} interleaved rounds of wall and process "
        "CPU seconds (module docstring); AP in % (COCOeval) after that short training.",
        "",
        "| detector | RoI-head params (M) | training step: wall s (CPU s) | test image: wall s (CPU s) | box AP | AP50 | AP75 | mask AP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for detector, row in rows.items():
        box, mask, t = row["box"], row["mask"], times[detector]
        lines.append(f"| {detector_name(detector, True)} (`{detector}`) | {row['heads'] / 1e6:.1f} | "
                     f"{t['step_wall']:.2f} ({t['step_cpu']:.2f}) | {t['test_wall']:.3f} ({t['test_cpu']:.3f}) | "
                     f"{100 * box['ap'][0]:.1f} | {100 * box['ap50'][0]:.1f} | {100 * box['ap75'][0]:.1f} | "
                     f"{100 * mask['ap'][0]:.1f} |")
    if set(times) == set(DETECTORS):
        base, cascade = times["mask_rcnn"], times["cascade_mask_rcnn"]
        lines += ["", f"The cascade costs {cascade['step_cpu'] / base['step_cpu']:.2f}× the CPU time of a training step "
                  f"({cascade['step_wall'] / base['step_wall']:.2f}× its wall time) and "
                  f"{cascade['test_cpu'] / base['test_cpu']:.2f}× the CPU time per test image "
                  f"({cascade['test_wall'] / base['test_wall']:.2f}× wall)."]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
