"""Every registry backbone on CUDA: images/s and peak memory of pooled-feature inference.

Builds each backbone of config/backbones.yaml on the GPU (its real weights when
they can be fetched, else random weights of the same architecture, said in the
output), runs warm-up and timed batches at the backbone's native resolution in
bf16 autocast (channels-last for CNNs, as the extraction rule does), and prints
a markdown table. Skips cleanly on a machine without a GPU.

    HF_HUB_OFFLINE=1 python benchmarks/bench_zoo_gpu.py [--batch-size 64] [--backbones a,b] [--out path.md]

On a machine without internet set HF_HUB_OFFLINE=1, or each hub download is
retried for about 45 s before the random-weights fallback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.io import atomic_path  # noqa: E402


def build(backbone_id: str, entry: dict) -> tuple[object, str]:
    """The backbone with its registry weights, or random weights of the same architecture
    when those cannot be fetched; the second value says which (the weight source's name)."""
    source = entry["weights"]["source"]
    try:
        return create_backbone(backbone_id, entry), source
    except Exception as error:  # no network, no cache: measure the architecture instead
        print(f"{backbone_id}: {source} weights unavailable ({type(error).__name__}); using random weights", file=sys.stderr)
        return create_backbone(backbone_id, {**entry, "weights": {"source": "random", "seed": 0}}), f"random ({source} unavailable)"


@torch.inference_mode()
def measure(backbone, family: str, batch_size: int, steps: int) -> tuple[float, float]:
    device = torch.device("cuda")
    layout = torch.channels_last if family == "CNN" else torch.contiguous_format
    model = backbone.model.to(device, memory_format=layout)
    size = backbone.transform.size
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=layout)
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            model(x)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    backbone.model = model.cpu()
    torch.cuda.empty_cache()
    return batch_size * steps / seconds, peak_gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backbones", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "zoo_gpu.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipping the GPU zoo benchmark")
        return
    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    ids = args.backbones.split(",") if args.backbones else list(registry)
    lines = [
        f"# Backbone zoo on {torch.cuda.get_device_name()} (bf16, torch {torch.__version__})",
        "",
        f"Batch {args.batch_size} (halved until it fits), {args.steps} timed steps after 5 warm-up steps.",
        "",
        "| backbone | weights | resolution | batch | params (M) | images/s | peak memory (GiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backbone_id in ids:
        entry = registry[backbone_id]
        backbone, weights = build(backbone_id, entry)
        batch_size = args.batch_size
        while True:
            try:
                rate, peak = measure(backbone, entry["family"], batch_size, args.steps)
                break
            except torch.OutOfMemoryError:  # e.g. SAM's global attention at 1024 px: halve the batch
                backbone.model = backbone.model.cpu()
                torch.cuda.empty_cache()
                if batch_size == 1:
                    raise
                batch_size //= 2
        lines.append(
            f"| {backbone_id} | {weights} | {backbone.transform.size} | {batch_size} | {backbone.n_params / 1e6:.1f} "
            f"| {rate:,.0f} | {peak:.2f} |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
