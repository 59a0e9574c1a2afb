"""Cold-process extraction: a padded last batch (one input shape) against ragged last batches.

The extraction rule runs once per (backbone, dataset) in a fresh process, so
its cost includes everything a first pass pays: on CUDA, cuDNN selects and
compiles kernels for every new input shape. Splits whose size is not a multiple
of the batch size add one shape each unless the last batch is padded. Each
measurement here is a fresh subprocess extracting the demo battle's three
Fashion-MNIST splits (2000 / 500 / 1000 images, batch 64), so both sides start
cold; the two settings alternate over the rounds.

    python benchmarks/bench_first_pass.py [--backbone effnet_lite0_in1k] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.io import atomic_path  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "first_pass_padding.md"
SPLITS = {"train": 2000, "val": 500, "test": 1000}


def one_cold_run(backbone_id: str, image_size: int, batch_size: int, pad: bool) -> dict:
    """Runs in the child process: build, then time the extraction of every split."""
    import numpy as np
    import torch
    import yaml

    from bobench.backbones.model import create_backbone
    from bobench.features import extract_split, pick_device, resolve_channels_last, resolve_precision

    entry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())[backbone_id]
    device = pick_device()
    backbone = create_backbone(backbone_id, entry, image_size=image_size)
    channels_last = resolve_channels_last("auto", entry["family"])
    backbone.model = backbone.model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for n in SPLITS.values():
        images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
        extract_split(backbone, images, device, batch_size, resolve_precision("auto", device), channels_last, pad_last_batch=pad)
    seconds = time.perf_counter() - started
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return {"seconds": seconds, "device": name, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="effnet_lite0_in1k")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--child", choices=["padded", "ragged"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_cold_run(args.backbone, args.image_size, args.batch_size, args.child == "padded")))
        return

    seconds: dict[str, list[float]] = {"padded": [], "ragged": []}
    info: dict = {}
    for _ in range(args.rounds):
        for setting in ("ragged", "padded"):
            command = [sys.executable, __file__, "--child", setting, "--backbone", args.backbone,
                       "--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            info = json.loads(output.strip().splitlines()[-1])
            seconds[setting].append(info["seconds"])
            print(f"{setting}: {info['seconds']:.2f} s", flush=True)
    ragged, padded = min(seconds["ragged"]), min(seconds["padded"])
    n_images = sum(SPLITS.values())
    lines = [
        "# First-pass extraction: padded vs ragged last batch",
        "",
        f"- backbone: {args.backbone} at {args.image_size} px, batch {args.batch_size}; "
        f"splits {', '.join(f'{k} {v}' for k, v in SPLITS.items())} ({n_images} images, 28×28 uint8)",
        f"- device: {info['device']}; torch {info['torch']}",
        f"- each number: one fresh process (cold caches), extraction only (model built before timing); best of {args.rounds}",
        "",
        "| last batch | seconds | images/s |",
        "|---|---:|---:|",
        f"| ragged (one more input shape per split) | {ragged:.2f} | {n_images / ragged:,.0f} |",
        f"| padded to the batch size (one shape) | {padded:.2f} | {n_images / padded:,.0f} |",
        "",
        f"**Speed-up of padding: {ragged / padded:.2f}×**",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
