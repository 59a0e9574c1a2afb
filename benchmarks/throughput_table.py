"""Write config/throughput.csv: the cost model's per-backbone table (bobench/cost.py reads it).

One row per registry backbone at its native resolution: forward GFLOPs of one image, parameters, feature
width, and inference images/s with peak GPU memory. Rows measured on a GPU (benchmarks/results/zoo_gpu.md,
bench_zoo_gpu.py) are marked ``measured``; the others are ``estimated`` from the measured row of the same
family nearest in FLOPs (the same architecture where there is one; any family for one with none measured):
its achieved FLOP rate (images/s × GFLOPs) divided by their own GFLOPs, and its peak memory scaled by the
FLOP ratio.

FLOPs are counted, not looked up: each architecture is built on torch's meta device (no weights, no
memory) and one (1, 3, S, S) image goes through it under ``torch.utils.flop_counter.FlopCounterMode``,
which adds up 2 × multiply-adds of every matmul and convolution from the shapes alone (elementwise ops,
norms and softmax are not counted). CPU only, a few seconds per backbone:

    python benchmarks/throughput_table.py [--zoo benchmarks/results/zoo_gpu.md] [--out config/throughput.csv]
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bobench.io import atomic_path  # noqa: E402

COLUMNS = [
    "backbone",
    "family",
    "resolution",
    "gflops",
    "params_m",
    "feature_dim",
    "images_per_s",
    "peak_gib",
    "status",
    "source",
]


def measured_rows(zoo: Path) -> tuple[str, dict[str, dict[str, float]]]:
    """The zoo benchmark's rows by backbone id, and the GPU it ran on (from its title)."""
    text = zoo.read_text()
    gpu = re.search(r"^# .* on (.+?) \(", text, re.M).group(1)
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[2].isdigit():
            rows[cells[0]] = {
                "resolution": int(cells[2]),
                "images_per_s": float(cells[5].replace(",", "")),
                "peak_gib": float(cells[6]),
            }
    return gpu, rows


def build_on_meta(entry: dict) -> torch.nn.Module:
    """The architecture with random (meta) parameters, as the registry entry builds it."""
    architecture = entry["architecture"]
    kwargs = dict(architecture.get("kwargs") or {})
    with torch.device("meta"):
        if architecture["library"] == "timm":
            import timm

            return timm.create_model(architecture["name"], pretrained=False, num_classes=0, **kwargs)
        module, function = architecture["entry_point"].split(":")
        import importlib

        return getattr(importlib.import_module(module), function)(**kwargs)


def count(entry: dict) -> tuple[int, float, float, int]:
    """(resolution, forward GFLOPs of one image, parameters in millions, feature width)."""
    model = build_on_meta(entry).eval()
    size = (entry.get("input") or {}).get("size") or model.pretrained_cfg["input_size"][-1]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(torch.empty(1, 3, size, size, device="meta"))
    features = entry.get("features") or {}
    dim = features.get("dim") if features.get("output") == "head" else out.reshape(1, -1).shape[1]
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return size, counter.get_total_flops() / 1e9, params, int(dim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ROOT / "benchmarks" / "results" / "zoo_gpu.md")
    parser.add_argument("--registry", type=Path, default=ROOT / "config" / "backbones.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "config" / "throughput.csv")
    args = parser.parse_args()
    gpu, measured = measured_rows(args.zoo)
    registry = yaml.safe_load(args.registry.read_text())
    rows = []
    for backbone, entry in registry.items():
        size, gflops, params, dim = count(entry)
        print(f"{backbone}: {size} px, {gflops:.1f} GFLOPs, {params:.1f} M, D={dim}", file=sys.stderr)
        row = {
            "backbone": backbone,
            "family": entry["family"],
            "resolution": size,
            "gflops": round(gflops, 2),
            "params_m": round(params, 1),
            "feature_dim": dim,
        }
        if backbone in measured and measured[backbone]["resolution"] == size:
            row |= {
                "images_per_s": measured[backbone]["images_per_s"],
                "peak_gib": measured[backbone]["peak_gib"],
                "status": "measured",
                "source": f"{args.zoo.relative_to(ROOT)} ({gpu}, bf16, batch 64)",
            }
        rows.append(row)
    for row in rows:
        if "status" in row:
            continue
        peers = [r for r in rows if r.get("status") == "measured" and r["family"] == row["family"]]
        peers = peers or [r for r in rows if r.get("status") == "measured"]
        # The measured row nearest in FLOPs (the same architecture where one was measured; of equals, the
        # slowest, so that a job asks for more time rather than less): its achieved FLOP rate and memory
        # per GFLOP carry over.
        peer = min(peers, key=lambda r: (abs(math.log(r["gflops"] / row["gflops"])), r["images_per_s"]))
        ratio = peer["gflops"] / row["gflops"]
        row |= {
            "images_per_s": round(peer["images_per_s"] * ratio, 1),
            "peak_gib": round(peer["peak_gib"] / ratio, 2),
            "status": "estimated",
            "source": f"{peer['backbone']}'s measured rate × its GFLOPs / these GFLOPs",
        }
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
