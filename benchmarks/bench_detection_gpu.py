"""A short BoB detector training of ConvNeXt-B and ViT-B/16 (ViTDet) on CUDA at paper resolution: images/s, peak memory.

Runs the code the ``train_detector`` rule runs (BoB's Cascade Mask R-CNN, or ``--detector mask_rcnn``, on
the registry backbone, BoB's augmentations: multi-scale AutoAugment up to 1333 px for ConvNeXt,
large-scale jitter at 1024 px for the ViT; AdamW, warm-up, bf16 autocast, 2 images per forward, 16 per step) for
a few hundred iterations on synthetic 1024 × 768 canvases with boxes and masks, random
weights (the architectures decide speed and memory, not the weights). Skips cleanly
on a machine without a GPU.

    python benchmarks/bench_detection_gpu.py [--iterations 200] [--num-workers 8] [--detector cascade_mask_rcnn]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.detection.data import CocoInstances, train_transform  # noqa: E402
from bobench.detection.heads import detector_name  # noqa: E402
from bobench.detection.model import build_detector, detection_spec  # noqa: E402
from bobench.detection.synthetic import coco_annotations, make_canvases, write_canvases  # noqa: E402
from bobench.detection.train import DetectionOptions, train_detector  # noqa: E402
from bobench.io import atomic_path  # noqa: E402

ARCHITECTURES = {"ConvNeXt-B (FPN)": "convnext_base", "ViT-B/16 (ViTDet pyramid)": "vit_base_patch16_224"}


def synthetic_coco(folder: Path, n_images: int) -> Path:
    """Canvases of 1024 px with 3-8 objects of 64-400 px (blobs standing in for real objects)."""
    y, x = np.mgrid[0:28, 0:28]
    blobs = np.stack([((x - 14) ** 2 + (y - 14) ** 2 < 40 + 10 * i) * 220 for i in range(8)]).astype(np.uint8)
    canvases = make_canvases(blobs, np.arange(8) % 4, n_images, 1024, (3, 8), (64, 400), "texture", 0)
    write_canvases(canvases, folder / "images", "")
    path = folder / "train.json"
    path.write_text(json.dumps(coco_annotations(canvases, ["a", "b", "c", "d"], "")))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--detector", choices=["cascade_mask_rcnn", "mask_rcnn"], default="cascade_mask_rcnn")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "detection_gpu.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipping the GPU detection benchmark")
        return
    n_images = args.iterations * args.batch_size
    options = DetectionOptions(epochs=1, warmup_iters=min(1000, args.iterations), batch_size=args.batch_size,
                               micro_batch=args.micro_batch, num_workers=args.num_workers)
    lines = [
        f"# BoB detector training on {torch.cuda.get_device_name()} (torch {torch.__version__}, bf16)",
        "",
        f"{args.iterations} iterations of {args.batch_size} images ({args.micro_batch} per forward), "
        f"{detector_name(args.detector, True)}, "
        f"{args.num_workers} loader workers, 1024 px synthetic canvases.",
        "",
        "| backbone | params (M) | augmentation | train images/s | peak memory (GiB) |",
        "|---|---:|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        annotations = synthetic_coco(Path(tmp), min(n_images, 512))  # the loader cycles through them
        for label, name in ARCHITECTURES.items():
            entry = {"architecture": {"library": "timm", "name": name}, "weights": {"source": "random", "seed": 0},
                     "input": {"size": 224}}
            backbone = create_backbone(name, detection_spec(entry, drop_path=0.1))
            detector = build_detector(backbone, 4, detector=args.detector)
            lsj = backbone.is_plain()
            augmentation = "lsj" if lsj else "multi_scale"
            dataset = CocoInstances(annotations, Path(tmp) / "images", ["a", "b", "c", "d"], train_transform(augmentation))
            repeated = torch.utils.data.Subset(dataset, [i % len(dataset) for i in range(n_images)])
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            result = train_detector(detector, repeated, options, Path(tmp) / f"{name}.pt", device=torch.device("cuda"))
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            peak = torch.cuda.max_memory_allocated() / 2**30
            lines.append(f"| {label} | {backbone.n_params / 1e6:.1f} | {'LSJ 1024' if lsj else 'AutoAugment ≤1333'} | "
                         f"{result.iterations * args.batch_size / seconds:.1f} | {peak:.1f} |")
            print(lines[-1], flush=True)
            del detector, backbone
            torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp_out:
        Path(tmp_out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
