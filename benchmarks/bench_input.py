"""Input paths side by side: images per CPU-second (per core), today's JPEG path against the input cache.

On ImageNet-like JPEGs made here (500 × 375, quality 90, smooth colour fields with noise), single-threaded
torch, in one process (no loader workers: the CPU time of the process is the input path's cost):

* evaluation, the backbone's eval transform (224 px, crop_pct 0.875, bicubic): today each evaluation
  decodes the JPEG and resizes it (``eval_batches`` over ``ImageFiles``); with the cache a training job
  crops once (``crop_once``, timed separately as the one-time cost) and every later evaluation only
  normalises the stored crops. Every batch of the two paths is compared with ``torch.equal``.
* training, ``AugmentedImages`` + BoB's training transform at 224 px through a DataLoader (batch 64):
  today from the JPEGs, with the cache from the train split decoded once at short side 256
  (``write_input_cache``, timed separately). Both recipes: the frozen probe's (random-resized crop +
  flip) and fine-tuning's (plus RandAugment, colour jitter off under RandAugment, random erasing).

The paths alternate round by round, so a machine busy with other work slows both alike; the ratio is
of their summed CPU seconds.

    nice -n 19 python benchmarks/bench_input.py [--images 256] [--rounds 5]   →   benchmarks/results/input.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bobench.backbones.transforms import EvalTransform
from bobench.datasets import load_prepared, write_prepared
from bobench.datasets.images import ImageFiles
from bobench.datasets.input_cache import load_input_cache, write_input_cache
from bobench.eval_crops import crop_once
from bobench.features import eval_batches
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, AugmentedImages, FinetuneOptions, train_transform

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "input.md"
TRANSFORM = EvalTransform(224, 0.875, "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SHORT_SIDE = 256  # cache_short_side(224, 8/7)
CPU = torch.device("cpu")


def make_jpegs(root: Path, n: int) -> ImageFiles:
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        coarse = rng.uniform(0, 255, size=(25, 33, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)).astype(np.int16)
        image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        name = f"{i:05d}.JPEG"
        Image.fromarray(image).save(root / name, quality=90)
        names.append(name)
    return ImageFiles(root, np.array(names))


def cpu_seconds(fn) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def drain(batches) -> None:
    for _ in batches:
        pass


def train_pass(images, labels, transform, seed: int) -> None:
    loader = torch.utils.data.DataLoader(
        AugmentedImages(images, labels, transform),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    drain(loader)


def prepared_jpegs(root: Path, n: int):
    """``n`` JPEGs from :func:`make_jpegs` under ``root/raw``, prepared under ``root/prepared`` as a 10-class
    dataset whose three splits are all of them. Returns the files, their labels and the prepared dataset."""
    (root / "raw").mkdir()
    files = make_jpegs(root / "raw", n)
    labels = np.arange(n, dtype=np.int64) % 10
    write_prepared(root / "prepared", {s: (files, labels) for s in ("train", "val", "test")}, [str(c) for c in range(10)],
                   {"test_split": "test"})  # fmt: skip
    return files, labels, load_prepared(root / "prepared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp:
        tmp = Path(tmp)
        files, labels, prepared = prepared_jpegs(tmp, args.images)
        jpeg_bytes = sum((files.root / p).stat().st_size for p in files.paths)

        # One-time costs of the new paths.
        holder = {}
        crop_seconds = cpu_seconds(lambda: holder.update(crops=crop_once(files, TRANSFORM, tmp, "val", 10**12, 64)))
        crops = holder["crops"]
        cache_seconds = cpu_seconds(lambda: write_input_cache(prepared, tmp / "cache", SHORT_SIDE))
        cached = load_input_cache(tmp / "cache", prepared, verify=True)
        cache_bytes = cached.pixels.nbytes

        identical = all(
            torch.equal(a, b)
            for (a, _), (b, _) in zip(
                eval_batches(files, TRANSFORM, 64, CPU), eval_batches(crops, TRANSFORM, 64, CPU), strict=True
            )
        )
        recipes = {
            "frozen probe (random-resized crop + flip)": FinetuneOptions(
                **{k: v for k, v in FROZEN_PROBE_RECIPE.items() if k in FinetuneOptions.__dataclass_fields__}
            ),
            "fine-tuning (+ RandAugment, random erasing)": FinetuneOptions(),
        }
        paths = {
            "evaluation": (
                lambda r: drain(eval_batches(files, TRANSFORM, 64, CPU)),
                lambda r: drain(eval_batches(crops, TRANSFORM, 64, CPU)),
            ),
        }
        for name, options in recipes.items():
            transform = train_transform(options, 224, TRANSFORM.mean, TRANSFORM.std)
            paths[f"training, {name}"] = (
                lambda r, t=transform: train_pass(files, labels, t, r),
                lambda r, t=transform: train_pass(cached, labels, t, r),
            )
        totals = {name: [0.0, 0.0] for name in paths}
        per_round = {name: [] for name in paths}
        for r in range(args.rounds):
            for name, (old, new) in paths.items():
                a = cpu_seconds(lambda old=old, r=r: old(r))
                b = cpu_seconds(lambda new=new, r=r: new(r))
                totals[name][0] += a
                totals[name][1] += b
                per_round[name].append(a / b)
                print(f"round {r + 1}: {name}: JPEG {args.images / a:.0f} img/s, cache {args.images / b:.0f} img/s", flush=True)

    n = args.images * args.rounds
    rows = [
        f"| {name} | {n / old:.0f} | {n / new:.0f} | **{old / new:.1f}×** | "
        f"{min(per_round[name]):.1f}–{max(per_round[name]):.1f}× |"
        for name, (old, new) in totals.items()
    ]
    load = os.getloadavg()
    text = f"""# Input paths: images per CPU-second, today's JPEG path against the input cache

`nice -n 19 python benchmarks/bench_input.py --images {args.images} --rounds {args.rounds}` ({time.strftime("%Y-%m-%d")}).
{args.images} JPEGs of 500 × 375 px (quality 90; {jpeg_bytes / args.images / 1e3:.0f} kB each), made by the benchmark;
torch {torch.__version__}, one thread, one process, {platform.processor() or platform.machine()}, {os.cpu_count()} cores.
Conditions: the machine was running another CPU benchmark on both cores (load average {load[0]:.1f} at the end),
this one at nice 19; the two paths alternate round by round and the ratio is of their summed CPU seconds
(`time.process_time`), i.e. images/s per core.

| input path (224 px) | JPEG path, img/s per core | cache, img/s per core | ratio | ratio per round |
|---|---|---|---|---|
{chr(10).join(rows)}

Evaluation tensors identical (`torch.equal`, every batch): **{identical}**.

One-time costs of the cache, per image: the evaluation crops {crop_seconds / args.images * 1e3:.1f} ms of CPU
(once per training job and split: today's cost of one evaluation), 602 kB of scratch disk; the training cache
{cache_seconds / args.images * 1e3:.1f} ms of CPU (once per dataset and resolution, by the rule
`prepare_input_cache`), {cache_bytes / args.images / 1e3:.0f} kB of disk (the JPEG: {jpeg_bytes / args.images / 1e3:.0f} kB).
Evaluation with the cache only normalises stored crops; training still runs BoB's augmentation at every
epoch, on an image decoded once and (when its shorter side exceeds 256 px) resized once.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
