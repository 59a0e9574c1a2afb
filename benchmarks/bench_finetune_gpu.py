"""A short BoB fine-tune of ViT-B/16 and ConvNeXt-B on CUDA: images/s and peak memory.

Runs the fine-tuning code the ``finetune`` rule runs (BoB's recipe: AdamW with
layer decay, RandAugment, mixup/cutmix, random erasing, bf16 autocast) for one
epoch on synthetic 224 px images, with random weights (the architectures decide
speed and memory, not the weights). Skips cleanly on a machine without a GPU.

    python benchmarks/bench_finetune_gpu.py [--images 2048] [--batch-size 128] [--num-workers 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.io import atomic_path  # noqa: E402
from bobench.tasks.finetune import FinetuneOptions, attach_head, finetune  # noqa: E402

ARCHITECTURES = {"ViT-B/16": ("vit_base_patch16_224", "ViT"), "ConvNeXt-B": ("convnext_base", "CNN")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_gpu.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipping the GPU fine-tuning benchmark")
        return
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 224, 224, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, args.images)
    splits = {"train": (images, labels), "val": (images[:256], labels[:256]), "test": (images[:256], labels[:256])}
    options = FinetuneOptions(epochs=1, warmup_epochs=0, batch_size=args.batch_size, micro_batch=args.batch_size,
                              num_workers=args.num_workers)
    lines = [
        f"# BoB fine-tuning on {torch.cuda.get_device_name()} (torch {torch.__version__}, bf16)",
        "",
        f"One epoch of {args.images} synthetic 224 px images, batch {args.batch_size}, {args.num_workers} loader workers; "
        "images/s counts training steps only (evaluation excluded).",
        "",
        "| backbone | params (M) | train images/s | peak memory (GiB) |",
        "|---|---:|---:|---:|",
    ]
    for label, (name, family) in ARCHITECTURES.items():
        entry = {"architecture": {"library": "timm", "name": name, "kwargs": {"drop_path_rate": 0.1}},
                 "weights": {"source": "random", "seed": 0}, "input": {"size": 224}}
        backbone = create_backbone(name, entry)
        model = attach_head(backbone.model, backbone.feature_dim, 100, seed=0)
        torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            result = finetune(model, splits, 100, backbone.transform, options, Path(tmp) / "ckpt.pt",
                              device=torch.device("cuda"), channels_last=family == "CNN")
        rate = (args.images - args.images % args.batch_size) / result.history[0]["train_seconds"]
        peak = torch.cuda.max_memory_allocated() / 2**30
        lines.append(f"| {label} | {backbone.n_params / 1e6:.1f} | {rate:,.0f} | {peak:.1f} |")
        print(lines[-1], flush=True)
        del model, backbone
        torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
