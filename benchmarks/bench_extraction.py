"""Feature extraction throughput: the extraction rule's path against a bare forward pass.

Both sides run the same model, precision and memory layout on the same images,
in one process, one after the other:

* ``extraction``: what rule ``extract_features`` does per image: read uint8
  images from the prepared memory-mapped arrays, apply the backbone's eval
  transform (resize, crop, normalise) batch by batch, forward, copy features
  back to a numpy array.
* ``bare forward``: the model alone on ready, already-transformed tensors.

The ratio (extraction img/s ÷ bare img/s) is the share of time left for the
network itself; 1.0 would mean the data path is free.

    python benchmarks/bench_extraction.py [--backbone effnet_lite0_in1k] [--image-size 128] [--n 1024]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.features import extract_split, resolve_channels_last, resolve_precision  # noqa: E402
from bobench.io import atomic_path  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "extraction_vs_bare_forward.md"


def load_images(n: int) -> tuple[np.ndarray, str]:
    """Real Fashion-MNIST images if prepared by the workflow, else seeded random 28×28 images."""
    prepared = ROOT / "data" / "prepared" / "fashion_mnist" / "test_images.npy"
    if prepared.exists():
        images = np.load(prepared, mmap_mode="r")[:n]
        return images, f"Fashion-MNIST test split (memory-mapped, {images.shape[1]}×{images.shape[2]})"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), "random uint8 28×28 (workflow data not prepared)"


def images_per_second(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up: oneDNN / cuDNN pick kernels on the first call
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return n_images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="effnet_lite0_in1k")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()

    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    entry = registry[args.backbone]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = create_backbone(args.backbone, entry, image_size=args.image_size)
    autocast_dtype = resolve_precision(args.precision, device)
    channels_last = resolve_channels_last("auto", entry["family"])
    layout = torch.channels_last if channels_last else torch.contiguous_format
    backbone.model = backbone.model.to(device, memory_format=layout)
    images, source = load_images(args.n)

    def extraction() -> None:
        extract_split(backbone, images, device, args.batch_size, autocast_dtype, channels_last)

    ready = [
        backbone.transform(torch.from_numpy(np.array(images[i : i + args.batch_size])))
        .to(device)
        .contiguous(memory_format=layout)
        for i in range(0, len(images), args.batch_size)
    ]

    @torch.inference_mode()
    def bare_forward() -> None:
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for batch in ready:
                backbone.model(batch)

    # Interleave the two so that machine load drifts hit both alike.
    rates = {"extraction": [], "bare forward": []}
    for _ in range(2):
        rates["extraction"].append(images_per_second(extraction, len(images), args.repeats))
        rates["bare forward"].append(images_per_second(bare_forward, len(images), args.repeats))
    extraction_rate, bare_rate = max(rates["extraction"]), max(rates["bare forward"])

    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})"
    lines = [
        "# Feature extraction: rule path vs bare forward pass",
        "",
        f"- backbone: {args.backbone} at {args.image_size} px, batch {args.batch_size}, {precision}, channels_last={channels_last}",
        f"- images: {len(images)} × {source}",
        f"- device: {device_name}; torch {torch.__version__}",
        f"- best of {args.repeats} timed passes, two interleaved rounds, after a warm-up pass",
        "",
        "| path | images/s |",
        "|---|---:|",
        f"| extraction (uint8 memmap → transform → forward → numpy) | {extraction_rate:.1f} |",
        f"| bare forward on ready tensors | {bare_rate:.1f} |",
        "",
        f"**Ratio extraction / bare forward: {extraction_rate / bare_rate:.2f}**",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
