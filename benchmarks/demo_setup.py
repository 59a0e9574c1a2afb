"""What several benchmarks share: the demo's offline data, and a detector on the demo's canvases trained and
scored by rule ``train_detector``'s code (:mod:`bobench.detection.job`). Imported by the scripts next to it,
which put the repository root on ``sys.path`` first."""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

from bobench.datasets import prepare_dataset
from bobench.detection.data import CocoInstances, collate, eval_transform, train_transform
from bobench.detection.job import augmentation_used, build, evaluate_on, split_files, train_on
from bobench.detection.sources import prepare_detection_dataset, read_manifest
from bobench.detection.train import DetectionOptions
from bobench.io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
DEMO_BACKBONE = "effnet_lite0_in1k"  # ImageNet weights from a pip package: offline
LOG = logging.getLogger("bench")


def registry(name: str) -> dict:
    """A registry of config/ (``backbones``, ``datasets``) as a dict."""
    return yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())


def prepared_dataset(dataset: str, folder: Path) -> Path:
    """A registry dataset that prepares offline (scikit-learn's digits, Fashion-MNIST from its Debian
    package or the official mirror), prepared under ``folder``: the prepared folder."""
    prepare_dataset(dataset, registry("datasets")[dataset], out_dir=folder / dataset, raw_dir=folder / "raw")
    return folder / dataset


def canvases(folder: Path, n_train: int, n_test: int) -> dict:
    """The demo's synthetic_objects set (Fashion-MNIST trousers, sneakers and bags on 128 px canvases)."""
    datasets = registry("datasets")
    fashion = prepared_dataset("fashion_mnist", folder)
    entry = {**datasets["synthetic_objects"], "splits": {"train": n_train, "val": 0, "test": n_test}}
    prepare_detection_dataset(
        "synthetic_objects",
        entry,
        raw_dir=folder / "raw",
        out_dir=folder / "canvases",
        prepared_dirs={"fashion_mnist": str(fashion)},
        log=LOG,
    )
    return read_manifest(folder / "canvases" / "manifest.json")


def demo_detection_options(**overrides) -> DetectionOptions:
    """The demo's detection recipe (config/config.yaml: batch, micro-batch, augmentation scale, RoIs and
    proposals per image, its lr) with ``overrides`` (epochs, warm-up, detector, ...), in fp32."""
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["detection"]
    recipe = {key: demo[key] for key in ("batch_size", "micro_batch", "augment_scale", "rois_per_image", "proposals_per_image")}
    return DetectionOptions(**{"lr": demo["lrs"][0], "precision": "fp32", **recipe, **overrides})


def build_demo_detector(manifest: dict, options: DetectionOptions) -> tuple[torch.nn.Module, object]:
    """The fine-tuned setting's detector (``options.detector``) on the pretrained EfficientNet-Lite0, seed 0."""
    return build(DEMO_BACKBONE, registry("backbones")[DEMO_BACKBONE], manifest["categories"], True, "finetune", options, seed=0)


def train_and_score(name: str, manifest: dict, options: DetectionOptions, folder: Path) -> dict:
    """Train (seed 0) and score on the test canvases: RoI-head parameters, steps, the training's wall and
    process CPU seconds (each step with its data loading), the last epoch's losses, box and mask metrics."""
    model, backbone = build_demo_detector(manifest, options)
    classes, cpu = manifest["categories"], torch.device("cpu")
    wall, process = time.perf_counter(), time.process_time()
    result = train_on(
        model, augmentation_used(backbone, options), manifest, classes, True, options, folder / f"{name}.pt", seed=0, device=cpu
    )
    wall, process = time.perf_counter() - wall, time.process_time() - process
    _, metrics, _ = evaluate_on(model, manifest, classes, True, options, cpu, None)
    heads = sum(p.numel() for key, p in model.named_parameters() if key.startswith("roi_heads."))
    return {
        "heads": heads,
        "steps": result.iterations,
        "train_wall": wall,
        "train_cpu": process,
        "losses": result.history[-1],
        "box": metrics["bbox"],
        "mask": metrics["segm"],
    }


def interleaved_times(manifest: dict, options: dict[str, DetectionOptions], rounds: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of a training step (forward + backward) and of a test image, per entry
    of ``options``: one warm-up round, then ``rounds`` rounds taking each detector in turn, so that load
    from other work on the machine hits all alike."""
    classes = manifest["categories"]
    first = next(iter(options.values()))
    torch.manual_seed(0)
    train = CocoInstances(*split_files(manifest, "train"), classes, train_transform("multi_scale", first.augment_scale))
    images, targets = collate([train[i] for i in range(first.batch_size)])
    test_image = CocoInstances(*split_files(manifest, "test"), classes, eval_transform(), masks=False)[0][0]
    models = {name: build_demo_detector(manifest, opts)[0] for name, opts in options.items()}
    times: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in models}

    def step(model: torch.nn.Module) -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        sum(model(images, targets).values()).backward()

    @torch.inference_mode()
    def test(model: torch.nn.Module) -> None:
        model.eval()
        model([test_image])

    for _ in range(rounds + 1):
        for name, model in models.items():
            for what, run in (("step", step), ("test", test)):
                wall, process = time.perf_counter(), time.process_time()
                run(model)
                times[name][f"{what}_wall"].append(time.perf_counter() - wall)
                times[name][f"{what}_cpu"].append(time.process_time() - process)
    return {name: {key: statistics.median(values[1:]) for key, values in kinds.items()} for name, kinds in times.items()}


def write_markdown(out: Path, lines: list[str]) -> None:
    """A benchmark's result file, written atomically, and echoed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_out:
        Path(tmp_out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
