"""The cost model: each job's GPU time, input-decoding CPU time, host memory, CPU cores and outputs on disk,
from its shape (backbone throughput, images, epochs, resolution).

One model for two readers: the rules' ``resources:`` (``job_resources`` in rules/common.smk: what SLURM is
asked for) and the planner (``python -m bobench.plan``: what a run will cost). The numbers come from two
files kept in the repository: ``config/throughput.csv`` (each backbone's bf16 forward images/s at its native
resolution, measured on a GPU or estimated from FLOPs: benchmarks/throughput_table.py) and
``config/cost.yaml`` (the assumptions, each stated there, and the datasets' sizes).

Scaling laws, all linear: GPU time ∝ images × (resolution / native resolution)² × passes / images/s (a training
step is ``train_factor`` forward passes, a frozen backbone one); the detector's neck and heads add FLOPs per
megapixel at the backbone's achieved FLOP rate; the L-BFGS probe, kNN and retrieval are fp32 matrix
products at ``matmul_tflops``; decoding ∝ megapixels of JPEG per core (``decode``), each input path (evaluation,
fine-tuning's and the frozen probe's augmentation) at its measured rate, and with the input cache
(config ``input_cache``) at its measured speed-up. Host memory of a training job follows its loaders' law
(:func:`bobench.training.epoch_loader`: micro-batches in flight), the linear probe's device memory the
probe's own law (:mod:`bobench.tasks.probe_memory`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from bobench.tasks.probe_memory import device_bytes_needed, fits_on_device

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT_TABLE = ROOT / "config" / "throughput.csv"
COST_MODEL = ROOT / "config" / "cost.yaml"
MB = 2**20


@dataclass(frozen=True)
class Throughput:
    """One row of config/throughput.csv."""

    backbone: str
    family: str
    resolution: int
    gflops: float  # forward FLOPs of one image at ``resolution`` (2 × multiply-adds)
    params_m: float
    feature_dim: int
    images_per_s: float  # bf16 forward, batch 64, on the table's GPU
    peak_gib: float
    status: str  # measured | estimated
    source: str


@dataclass(frozen=True)
class JobCost:
    """What one job costs and asks for. ``gpu_s`` and ``cpu_s`` are the estimate; ``runtime_min`` is what
    the scheduler is asked for (the estimate with a safety margin and start-up)."""

    gpu: int  # GPUs the job holds
    gpu_s: float  # seconds on the table's GPU
    cpu_s: float  # core-seconds of input decoding (loader workers)
    mem_mb: int  # peak host memory
    cpus: int  # cores to ask for: loader workers that keep the GPU fed, plus the main process
    runtime_min: int
    disk_gb: float  # what the job writes (features, weights, checkpoints, the input cache)
    device_mb: float = 0.0  # peak device memory, where it is modelled (the linear probe); 0: not modelled
    streamed: bool = False  # the linear probe's features too large for the GPU: streamed from host memory


@dataclass(frozen=True)
class CostModel:
    constants: dict[str, Any]
    throughput: dict[str, Throughput]

    def row(self, backbone: str) -> Throughput:
        """The backbone's throughput row; one missing from the table (a backbone of your own) gets the
        conservative ``unknown_backbone`` of config/cost.yaml, marked ``unknown`` (the planner lists them;
        ``python benchmarks/throughput_table.py`` adds their rows)."""
        if backbone in self.throughput:
            return self.throughput[backbone]
        default = self.constants["unknown_backbone"]
        return Throughput(
            backbone=backbone,
            family="unknown",
            status="unknown",
            source=f"no row in {THROUGHPUT_TABLE.name}: unknown_backbone of {COST_MODEL.name}",
            **default,
        )

    def dataset(self, dataset: str) -> dict[str, Any]:
        """The dataset's sizes; one missing from config/cost.yaml gets its ``unknown_dataset`` (the planner
        lists them)."""
        return self.constants["datasets"].get(dataset) or self.constants["unknown_dataset"]

    def known_dataset(self, dataset: str) -> bool:
        return dataset in self.constants["datasets"]

    # ------------------------------------------------------------------ building blocks

    def forward_s(self, backbone: str, images: float, resolution: int, passes: float = 1.0) -> float:
        """GPU seconds of ``images`` forward passes (× ``passes``) at ``resolution``."""
        row = self.row(backbone)
        pixels = (resolution / row.resolution) ** 2
        return images * passes * pixels / (row.images_per_s * self.constants["utilisation"])

    def matmul_s(self, flops: float) -> float:
        return flops / (self.constants["matmul_tflops"] * 1e12)

    def files(self, dataset: str) -> bool:
        """Whether the dataset is kept as image files (decoded per pass), not as a prepared pixel array."""
        return self.dataset(dataset)["storage"] == "files"

    def decode_s(
        self, dataset: str, images: float, path: str = "evaluation", cached: bool = False, source_pixels: float = 1.0
    ) -> float:
        """Core-seconds to decode and transform ``images`` of ``dataset`` (one pass each) on an input
        ``path`` (``decode.path_factor``: evaluation, finetune, frozen_probe, detection); ``cached``: from
        the input cache (training) or the job's stored crops (evaluation), ``input_cache.speedup`` faster.
        ``source_pixels``: a cached training image's pixels over those of the job's own short side (a shared
        cache larger than it needs), each extra one costing ``input_cache.source_pixel_cost`` of the cached
        path. A pixel-array dataset is only cropped and resized, whatever the path."""
        info, decode = self.dataset(dataset), self.constants["decode"]
        if info["storage"] == "array":
            return images / decode["array_images_per_core_s"]
        per_image = info["megapixels"] / decode["jpeg_megapixels_per_core_s"] * decode["path_factor"][path]
        if cached:
            options = self.constants["input_cache"]
            per_image /= options["speedup"][path]
            if source_pixels != 1.0:
                per_image *= 1 + options["source_pixel_cost"][path] * (source_pixels - 1)
        return images * per_image

    def cpus(self, gpu_s: float, cpu_s: float, workers: int) -> int:
        """Cores for a GPU job: the loader workers the decoding needs to keep pace with the GPU (never more
        than the recipe's ``num_workers``, nor ``decode.max_cpus_per_gpu``), plus the main process."""
        needed = math.ceil(cpu_s / gpu_s) if gpu_s > 0 else 0
        return 1 + min(needed, workers, self.constants["decode"]["max_cpus_per_gpu"] - 1)

    def loader_mb(self, workers: int, batch: int, resolution: int, held: int = 1) -> float:
        """Host memory of collated float32 batches: each worker prefetches ``prefetch_factor`` batches (one
        batch in the main process without workers), plus ``held`` outside the queue: the pinned batch being
        copied, and for training also the step's current micro-batch (``held=2``: ``epoch_loader``'s
        ``(num_workers × prefetch_factor + 2) × micro_batch``)."""
        memory = self.constants["memory"]
        in_flight = workers * memory["prefetch_factor"] if workers else 1
        return (in_flight + held) * batch * 3 * resolution**2 * memory["float_bytes"] / MB

    def weights_mb(self, backbone: str, copies: float) -> float:
        return copies * self.row(backbone).params_m * 1e6 * self.constants["memory"]["float_bytes"] / MB

    def features_mb(self, rows: int, dim: int) -> float:
        return rows * dim * self.constants["memory"]["float_bytes"] / MB

    def finish(self, *, gpu_s: float, cpu_s: float, mem_mb: float, workers: int, disk_gb: float = 0.0, gpu: int = 1) -> JobCost:
        """The job's asks: memory rounded up to 100 MB; runtime from the slower of the GPU and the decoding
        workers, with the safety margin and start-up."""
        memory = self.constants["memory"]
        runtime = max(gpu_s, cpu_s / max(workers, 1)) * memory["runtime_safety"] / 60 + memory["startup_min"]
        return JobCost(
            gpu=gpu,
            gpu_s=gpu_s,
            cpu_s=cpu_s,
            mem_mb=int(math.ceil(mem_mb / 100) * 100),
            cpus=self.cpus(gpu_s, cpu_s, workers) if gpu else 1,
            runtime_min=int(max(math.ceil(runtime), memory["min_runtime_min"])),
            disk_gb=disk_gb,
        )

    # ------------------------------------------------------------------ job classes

    def extraction(self, backbone: str, dataset: str, *, images: int, resolution: int, batch: int, workers: int) -> JobCost:
        """Pooled features of every image (extract_features, extract_retrieval_features)."""
        dim = self.row(backbone).feature_dim
        files = self.dataset(dataset)["storage"] == "files"
        mem = (
            self.constants["memory"]["base_mb"]
            + self.weights_mb(backbone, 2)
            + self.features_mb(images, dim)
            + (self.loader_mb(workers, batch, resolution) if files else 0)
        )
        return self.finish(
            gpu_s=self.forward_s(backbone, images, resolution),
            cpu_s=self.decode_s(dataset, images),
            mem_mb=mem,
            workers=workers,
            disk_gb=self.features_mb(images, dim) * MB / 1e9,
        )

    def linear_probe(
        self,
        backbone: str,
        *,
        n_train: int,
        n_val: int,
        n_test: int,
        classes: int,
        grid: int,
        max_iter: int,
        refit: bool,
        multilabel: bool = False,
    ) -> JobCost:
        """L-BFGS over the C grid on cached features: 4·N·D·K FLOPs per iteration (forward and gradient),
        ``max_iter`` iterations per fit (an upper bound), one fit per C plus the refit on train + val.

        Device memory is the probe's own law (``device_bytes_needed``: one feature matrix, row blocks,
        L-BFGS buffers, labels). Where it exceeds 90% of ``gpu_memory_gb`` the probe keeps the features in
        pinned host memory and streams them to the GPU at every L-BFGS iteration (``host_to_device_gb_s``),
        as the job itself decides. Host memory: the loaded features, the val and test scores, and the
        pinned copy when the features are streamed."""
        dim, itemsize = self.row(backbone).feature_dim, self.constants["memory"]["float_bytes"]
        fits = grid * n_train + ((n_train + n_val) if refit else 0)
        flops = 4 * fits * dim * classes * max_iter
        rows = n_train + n_val + n_test
        device = device_bytes_needed(rows, dim, classes, itemsize, multilabel=multilabel)
        on_device = fits_on_device(device, self.constants["gpu_memory_gb"] * 1e9)
        gpu_s = self.matmul_s(flops)
        features = self.features_mb(rows, dim)
        mem = self.constants["memory"]["base_mb"] + features + (n_val + n_test) * classes * itemsize / MB
        if not on_device:
            gpu_s += fits * dim * itemsize * max_iter / (self.constants["host_to_device_gb_s"] * 1e9)
            mem += features
            device -= rows * dim * itemsize  # the blocks, buffers and labels stay; the matrix streams through
        cost = self.finish(gpu_s=gpu_s, cpu_s=0.0, mem_mb=mem, workers=0)
        return JobCost(**{**cost.__dict__, "device_mb": device / MB, "streamed": not on_device})

    def similarity(self, backbone: str, *, queries: int, database: int, rows: int) -> JobCost:
        """kNN and retrieval: every query against every database row (2·Q·N·D FLOPs) on cached features."""
        dim = self.row(backbone).feature_dim
        mem = self.constants["memory"]["base_mb"] + 2 * self.features_mb(rows, dim)
        return self.finish(gpu_s=self.matmul_s(2 * queries * database * dim), cpu_s=0.0, mem_mb=mem, workers=0)

    def training(
        self,
        backbone: str,
        dataset: str,
        *,
        train: int,
        val: int,
        test: int,
        epochs: int,
        batch: int,
        resolution: int,
        workers: int,
        frozen: bool,
        max_steps: int | None,
        micro_batch: int | None = None,
        eval_batch: int = 256,
        cached: bool = False,
        cache_pixels: float = 1.0,
        eval_crops_max_gb: float = 0.0,
    ) -> JobCost:
        """Fine-tuning (``frozen``: BoB's frozen-backbone LARS probe, whose head costs nothing beside the
        backbone): ``epochs`` passes over the training split in steps of ``batch`` (``max_steps`` caps them),
        the validation split after every epoch, the test split once.

        Decoding: each pass through the recipe's augmentation (``decode_s``). With the input cache
        (``cached``, a dataset of image files) the training images come decoded from the cache (one larger than
        the job's own short side: ``cache_pixels`` × its pixels, :meth:`cached_megapixels`), and val and
        test are cropped once (``input_cache.crop_once_factor`` × one evaluation) and then only normalised at
        each evaluation, for a split whose crops fit in ``eval_crops_max_gb`` (else read from its files as
        before), as ``bobench.eval_crops.crop_once`` decides. Host memory: the model's copies (weights,
        checkpoint with two Adam moments) and the larger of the two loaders: training's micro-batches
        (``epoch_loader``: ``(workers × prefetch + 2) × micro_batch``) and evaluation's batches."""
        steps = epochs * (train // batch)
        if max_steps is not None:
            steps = min(steps, max_steps)
        trained = steps * batch
        evaluations = min(epochs, math.ceil(steps / max(train // batch, 1)))
        evaluated = evaluations * val + test
        passes = 1.0 if frozen else self.constants["train_factor"]
        gpu_s = self.forward_s(backbone, trained, resolution, passes) + self.forward_s(backbone, evaluated, resolution)
        path = "frozen_probe" if frozen else "finetune"
        cached = cached and self.files(dataset)
        cpu_s = self.decode_s(dataset, trained, path, cached=cached, source_pixels=cache_pixels)
        crop_once = self.constants["input_cache"]["crop_once_factor"]
        for images, times in ((val, evaluations), (test, 1)):
            if cached and images * 3 * resolution**2 * 4 <= eval_crops_max_gb * 1e9:
                cpu_s += crop_once * self.decode_s(dataset, images) + times * self.decode_s(dataset, images, cached=True)
            else:
                cpu_s += times * self.decode_s(dataset, images)
        loaders = max(
            self.loader_mb(workers, min(micro_batch or batch, batch), resolution, held=2),
            self.loader_mb(workers, eval_batch, resolution),
        )
        mem = self.constants["memory"]["base_mb"] + self.weights_mb(backbone, 1 if frozen else 4) + loaders
        return self.finish(
            gpu_s=gpu_s,
            cpu_s=cpu_s,
            mem_mb=mem,
            workers=workers,
            disk_gb=self.weights_mb(backbone, 1 if frozen else 4) * MB / 1e9,
        )

    def evaluation(self, backbone: str, sets: list[tuple[str, int]], *, resolution: int, batch: int, workers: int) -> JobCost:
        """A trained classifier on test sets, ``(dataset whose images they are, images)`` each (OOD)."""
        images = sum(n for _, n in sets)
        mem = self.constants["memory"]["base_mb"] + self.weights_mb(backbone, 2) + self.loader_mb(workers, batch, resolution)
        return self.finish(
            gpu_s=self.forward_s(backbone, images, resolution),
            cpu_s=sum(self.decode_s(d, n) for d, n in sets),
            mem_mb=mem,
            workers=workers,
        )

    def detector_megapixels(self, backbone_family: str, recipe: dict[str, Any]) -> float:
        """Training pixels per image of a detector's augmentation (``auto``: LSJ for plain ViTs)."""
        augmentation = recipe.get("augmentation", "auto")
        if augmentation == "auto":
            augmentation = "lsj" if backbone_family == "ViT" else "multi_scale"
        scale = recipe.get("augment_scale", 1.0) ** 2
        if augmentation == "single_scale":
            return recipe.get("single_scale_size", 512) ** 2 / 1e6 * 0.75 * scale  # a 4:3 image fit in the square
        return self.constants["detection_megapixels"][augmentation] * scale

    def detection(
        self,
        backbone: str,
        dataset: str,
        test_sets: list[tuple[str, int]],
        *,
        train: int,
        epochs: int,
        batch: int,
        megapixels: float,
        frozen: bool,
        workers: int,
        max_steps: int | None,
    ) -> JobCost:
        """One detector (Cascade Mask R-CNN): the backbone at ``megapixels`` per image (× ``train_factor``
        when fine-tuned, one pass when frozen) plus the neck and heads, trained; then the test sets."""
        row = self.row(backbone)
        steps = epochs * (train // batch)
        if max_steps is not None:
            steps = min(steps, max_steps)
        trained = steps * batch
        pixels_resolution = math.sqrt(megapixels * 1e6)
        rate = row.images_per_s * row.gflops * self.constants["utilisation"]  # achieved GFLOP/s
        head_gflops = self.constants["detection_head_gflops_per_mp"] * megapixels
        backbone_passes = 1.0 if frozen else self.constants["train_factor"]
        train_factor = self.constants["train_factor"]
        tested = sum(n for _, n in test_sets)
        gpu_s = (
            self.forward_s(backbone, trained, pixels_resolution, backbone_passes)
            + trained * head_gflops * train_factor / rate
            + self.forward_s(backbone, tested, pixels_resolution)
            + tested * head_gflops / rate
        )
        cpu_s = self.decode_s(dataset, trained, "detection") + sum(self.decode_s(d, n) for d, n in test_sets)
        mem = (
            self.constants["memory"]["detection_base_mb"]
            + self.weights_mb(backbone, 4)
            + self.loader_mb(workers, batch, int(pixels_resolution))
        )
        return self.finish(gpu_s=gpu_s, cpu_s=cpu_s, mem_mb=mem, workers=workers, disk_gb=self.weights_mb(backbone, 4) * MB / 1e9)

    def input_cache(self, dataset: str, *, images: int, short_side: int) -> JobCost:
        """``prepare_input_cache``: the train split of a dataset of image files decoded once, its images'
        shorter side brought down to ``short_side`` (``input_cache.write_s_per_megapixel`` of CPU per source
        megapixel, on ``input_cache.threads`` cores); disk: 3 bytes a cached pixel, the images taken at
        ``input_cache.aspect`` (ImageNet's mean 0.18 MP at 256 px: 262 kB an image). A dataset of pixel
        arrays needs no cache: its job only writes a cache.json."""
        options, memory = self.constants["input_cache"], self.constants["memory"]
        if not self.files(dataset):
            return JobCost(
                gpu=0,
                gpu_s=0.0,
                cpu_s=0.0,
                mem_mb=self.constants["light_job"]["mem_mb"],
                cpus=1,
                runtime_min=memory["min_runtime_min"],
                disk_gb=0.0,
            )
        megapixels = self.dataset(dataset)["megapixels"]
        cached = self.cached_megapixels(dataset, short_side)
        cpu_s = images * megapixels * options["write_s_per_megapixel"]
        runtime = cpu_s / options["threads"] * memory["runtime_safety"] / 60 + memory["startup_min"]
        return JobCost(
            gpu=0,
            gpu_s=0.0,
            cpu_s=cpu_s,
            mem_mb=options["mem_mb"],
            cpus=options["threads"],
            runtime_min=int(max(math.ceil(runtime), memory["min_runtime_min"])),
            disk_gb=images * cached * 1e6 * 3 / 1e9,
        )

    def cached_megapixels(self, dataset: str, short_side: int) -> float:
        """Mean megapixels of a cached image of ``dataset`` at ``short_side``: the images' own, their shorter
        side brought down to ``short_side`` (taken at ``input_cache.aspect``)."""
        megapixels = self.dataset(dataset)["megapixels"]
        return min(megapixels, short_side**2 * self.constants["input_cache"]["aspect"] / 1e6)

    def light(self) -> JobCost:
        """An aggregate rule (collect, rank, figures, tables): fixed, small."""
        job = self.constants["light_job"]
        return JobCost(gpu=0, gpu_s=0.0, cpu_s=0.0, mem_mb=job["mem_mb"], cpus=1, runtime_min=job["runtime"], disk_gb=0.0)

    def standin(self) -> JobCost:
        """A rehearsal's stand-in data or weights (built on the CPU: Stable Diffusion's are the largest)."""
        job = self.constants["standin_job"]
        return JobCost(gpu=0, gpu_s=0.0, cpu_s=0.0, mem_mb=job["mem_mb"], cpus=1, runtime_min=job["runtime"], disk_gb=0.0)

    def preparation(self, dataset: str) -> JobCost:
        """Verifying and unpacking a dataset's archives (a CPU job, on the submitting host)."""
        job, memory = self.constants["prepare_job"], self.constants["memory"]
        disk = self.dataset(dataset)["disk_gb"]
        runtime = max(math.ceil(disk * job["runtime_min_per_gb"]) + memory["startup_min"], memory["min_runtime_min"])
        mem = job["mem_mb"] if disk >= job["large_gb"] else self.constants["light_job"]["mem_mb"]
        return JobCost(gpu=0, gpu_s=0.0, cpu_s=0.0, mem_mb=mem, cpus=1, runtime_min=runtime, disk_gb=disk)


@lru_cache(maxsize=4)
def load_cost_model(table: Path = THROUGHPUT_TABLE, model: Path = COST_MODEL) -> CostModel:
    """The cost model from its two files (cached: the rules ask it once per job)."""
    constants = yaml.safe_load(Path(model).read_text())
    rows = {}
    with open(table, newline="") as f:
        for raw in csv.DictReader(f):
            rows[raw["backbone"]] = Throughput(
                backbone=raw["backbone"],
                family=raw["family"],
                resolution=int(raw["resolution"]),
                gflops=float(raw["gflops"]),
                params_m=float(raw["params_m"]),
                feature_dim=int(raw["feature_dim"]),
                images_per_s=float(raw["images_per_s"]),
                peak_gib=float(raw["peak_gib"]),
                status=raw["status"],
                source=raw["source"],
            )
    return CostModel(constants=constants, throughput=rows)
