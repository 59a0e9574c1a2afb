"""Training input from a shared input cache: what a 224-px job pays for reading a larger cached image.

config/paper.yaml's input cache is one per dataset at ``input_cache.shared_short_sides`` (bobench.plan
``InputCaches``): a 224-px job, which needs short side 256, may read the cache at 512, where ImageNet's
usual 500 × 375 images are kept as decoded (2.15 × the pixels of their 341 × 256 copy). The random-resized
crop then resizes a larger region at every epoch. This benchmark times, on the JPEGs of
``bench_input.py`` and its two training recipes (the frozen probe's random-resized crop + flip;
fine-tuning's, plus RandAugment and random erasing), per image and per core:

* the JPEG path (decode at every epoch), the cache at 256 (the job's own short side) and the cache at 512,
  alternating round by round in one process (one torch thread, no loader workers), so that a machine
  busy with other work slows all three alike;

and reports the speed-up of each cache over the JPEG path and ``source_pixel_cost``: the extra CPU of the
cached path per extra source pixel, (t512 / t256 − 1) / (pixels512 / pixels256 − 1), which config/cost.yaml
takes to cost a job reading a cache larger than its own (bobench/cost.py ``CostModel.training``).

    nice -n 19 python benchmarks/bench_shared_cache.py [--images 128] [--rounds 4]   →   benchmarks/results/shared_cache.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from bench_input import TRANSFORM, cpu_seconds, prepared_jpegs, train_pass

from bobench.datasets.input_cache import load_input_cache, write_input_cache
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions, train_transform

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "shared_cache.md"
OWN, SHARED = 256, 512  # a 224-px job's own short side (round(224 × 8/7)); the paper's shared cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench-shared-cache-") as tmp:
        tmp = Path(tmp)
        files, labels, prepared = prepared_jpegs(tmp, args.images)
        caches = {}
        for side in (OWN, SHARED):
            write_input_cache(prepared, tmp / f"short{side}", side)
            caches[side] = load_input_cache(tmp / f"short{side}", prepared, verify=True)
        pixel_ratio = caches[SHARED].pixels.nbytes / caches[OWN].pixels.nbytes

        recipes = {
            "frozen_probe": FinetuneOptions(
                **{k: v for k, v in FROZEN_PROBE_RECIPE.items() if k in FinetuneOptions.__dataclass_fields__}
            ),
            "finetune": FinetuneOptions(),
        }
        sources = {"JPEG": files, f"cache {OWN}": caches[OWN], f"cache {SHARED}": caches[SHARED]}
        totals = {(recipe, source): 0.0 for recipe in recipes for source in sources}
        for r in range(args.rounds):
            for recipe, options in recipes.items():
                transform = train_transform(options, 224, TRANSFORM.mean, TRANSFORM.std)
                for source, images in sources.items():
                    seconds = cpu_seconds(lambda images=images, t=transform, r=r: train_pass(images, labels, t, r))
                    totals[recipe, source] += seconds
                    print(f"round {r + 1}: {recipe}, {source}: {args.images / seconds:.0f} img/s", flush=True)

    n = args.images * args.rounds
    rows = []
    for recipe in recipes:
        jpeg, own, shared = (totals[recipe, s] for s in sources)
        extra = (shared / own - 1) / (pixel_ratio - 1)
        rows.append(
            f"| {recipe} | {n / jpeg:.0f} | {n / own:.0f} (**{jpeg / own:.1f}×**) | {n / shared:.0f} "
            f"(**{jpeg / shared:.1f}×**) | {shared / own:.2f} | {extra:.2f} |"
        )
    load = os.getloadavg()
    text = f"""# Training input from a shared cache: a 224-px job reading the cache at {SHARED} instead of {OWN}

`nice -n 19 python benchmarks/bench_shared_cache.py --images {args.images} --rounds {args.rounds}` ({time.strftime("%Y-%m-%d")}).
{args.images} JPEGs of 500 × 375 px (bench_input.py's), cached at short side {OWN} (341 × 256) and {SHARED} (kept as
decoded: {pixel_ratio:.2f} × the pixels); BoB's training transforms at 224 px through a DataLoader (batch 64);
torch {torch.__version__}, one thread, one process, {platform.processor() or platform.machine()}, {os.cpu_count()} cores.
Conditions: the machine was running another CPU job on both cores (load average {load[0]:.1f} at the end), this
one at nice 19; the three paths alternate round by round, CPU seconds summed (`time.process_time`).

| recipe | JPEG path, img/s per core | cache at {OWN}, img/s (speed-up) | cache at {SHARED}, img/s (speed-up) | CPU {SHARED} / {OWN} | source_pixel_cost |
|---|---|---|---|---|---|
{chr(10).join(rows)}

source_pixel_cost: the cached path's extra CPU per extra source pixel, (CPU {SHARED} / CPU {OWN} − 1) /
({pixel_ratio:.2f} − 1): the random-resized crop resizes a region of the larger image at every epoch; the rest
of the augmentation runs at 224 px either way.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
