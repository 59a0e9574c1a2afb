"""Frozen-backbone feature extraction: the only step that touches images.

Features of every split are computed once per (backbone, dataset) and cached;
probes, kNN and retrieval all read the cache.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from bobench.data_faults import unseal
from bobench.io import read_json, save_npz, write_json

if TYPE_CHECKING:  # types only: the probe rules import this module and need not depend on backbones/
    from bobench.backbones.model import Backbone
    from bobench.datasets.images import ImageFiles

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHANNELS_LAST = ("auto", True, False)


@dataclass(frozen=True)
class ExtractionOptions:
    batch_size: int = 64
    precision: str = "auto"  # auto: bf16 where the device runs it fast, else fp32
    channels_last: str | bool = "auto"  # auto: on for CNNs (faster), off for ViTs (no gain)
    num_threads: int | None = None
    num_workers: int = 0  # image-decoding processes for datasets kept as files


class FeatureCacheError(ValueError):
    """A cached feature pair cannot be read: damaged, truncated or failing its checksum."""


@dataclass(frozen=True)
class FeatureSet:
    """Cached features: arrays (``<split>_features``, ``<split>_labels``; a retrieval benchmark's
    ``query_features``, ``database_features``) and the record of how they were made (``info``, with the
    fingerprint that downstream records cite)."""

    arrays: dict[str, np.ndarray]
    info: dict[str, Any]

    @classmethod
    def load(cls, npz_path: str, info_path: str) -> FeatureSet:
        """Read a cached pair. An unreadable one (a zip member failing its CRC-32 checksum, a truncated or
        damaged file) is unsealed, its json removed (:mod:`bobench.data_faults`): the next run extracts it again."""
        rule = "extract_retrieval_features" if Path(npz_path).parent.parent.name == "retrieval_features" else "extract_features"
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            info = read_json(info_path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
            if not Path(info_path).is_file():
                raise
            raise FeatureCacheError(unseal(info_path, rule, f"cached features {npz_path}: cannot be read ({exc})")) from exc
        return cls(arrays, info)

    def write(self, npz_path: str, info_path: str) -> None:
        """The npz first and the json last: the json marks a complete pair."""
        save_npz(npz_path, **self.arrays)
        write_json(info_path, self.info)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_supports_fast_bf16() -> bool:
    """bf16 pays off on CPUs with native bf16 (AVX512-BF16 / AMX); elsewhere it is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"extraction.precision {precision!r} is not valid; choose from {PRECISIONS}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_fast_bf16() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def device_name(device: torch.device) -> str:
    """How results name the device: ``cpu``, or the GPU's model."""
    return str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]


def resolve_channels_last(setting: str | bool, family: str) -> bool:
    if setting == "auto":
        return family == "CNN"
    return bool(setting)


class _EvalItems(torch.utils.data.Dataset):
    """One transformed image per item (files differ in size, so the transform runs per image)."""

    def __init__(self, files: ImageFiles, transform: Callable):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(torch.from_numpy(self.files[index])[None])[0]


def eval_batches(
    images: np.ndarray | ImageFiles, transform: Callable, batch_size: int, device: torch.device, num_workers: int = 0, pad_to_batch: bool = False
) -> Iterator[tuple[torch.Tensor, int]]:
    """``(batch, n_real)`` pairs: transformed float images on ``device``, in order.

    Pixel arrays are moved as uint8 and transformed on the device (one call per
    batch); files are decoded and transformed in ``num_workers`` loader processes;
    :class:`~bobench.eval_crops.EvalCrops` (a job's stored crops) are only normalised.
    With ``pad_to_batch`` a short last batch is padded with blank images, so the
    model sees one input shape only (see :func:`bobench.features.extract_split`).
    """
    from bobench.datasets.images import ImageFiles

    # Crops stored once by the job (EvalCrops, which itself crops through this function, hence no import
    # of it here) hand out their normalised batches: normalising is all that is left.
    if callable(getattr(images, "batches", None)):
        for batch in images.batches(transform, batch_size):
            n_real = len(batch)
            if pad_to_batch and n_real < batch_size:
                batch = torch.cat([batch, batch.new_zeros((batch_size - n_real, *batch.shape[1:]))])
            yield batch.to(device, non_blocking=True), n_real
        return
    if isinstance(images, ImageFiles):
        loader = torch.utils.data.DataLoader(
            _EvalItems(images, transform), batch_size=batch_size, num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        for batch in loader:
            n_real = len(batch)
            if pad_to_batch and n_real < batch_size:
                batch = torch.cat([batch, batch.new_zeros((batch_size - n_real, *batch.shape[1:]))])
            yield batch.to(device, non_blocking=True), n_real
        return
    for start in range(0, len(images), batch_size):
        # np.array copies the (read-only, memory-mapped) slice into a writable buffer.
        chunk = np.array(images[start : start + batch_size])
        n_real = len(chunk)
        if pad_to_batch and n_real < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n_real, *chunk.shape[1:]), chunk.dtype)])
        yield transform(torch.from_numpy(chunk).to(device, non_blocking=True)), n_real


@torch.inference_mode()
def extract_split(
    backbone: Backbone,
    images: np.ndarray,
    device: torch.device,
    batch_size: int,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
    desc: str = "",
    pad_last_batch: bool = True,
    num_workers: int = 0,
) -> np.ndarray:
    """Pooled float32 features ``(N, D)`` for uint8 images ``(N, H, W, C)`` (may be a memmap), or
    for :class:`~bobench.datasets.images.ImageFiles` (decoded by ``num_workers`` loader processes).

    With ``pad_last_batch`` a short last batch is padded with blank images to the
    full batch size, so that the model only ever sees one input shape: on CUDA each
    new shape costs seconds of cuDNN kernel selection and compilation (measured in
    benchmarks/bench_first_pass.py). Eval-mode backbones treat samples
    independently, so the padding does not change the real images' features.
    """
    features = np.empty((len(images), backbone.feature_dim), dtype=np.float32)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batches = eval_batches(images, backbone.transform, batch_size, device, num_workers, pad_to_batch=pad_last_batch)
    start = 0
    total = -(-len(images) // batch_size)
    forward = ForwardInChunks(backbone.model, batch_size, device, autocast_dtype, memory_format)
    for x, n_real in tqdm(batches, total=total, desc=desc, unit="batch", mininterval=5):
        features[start : start + n_real] = forward(x)[:n_real]
        start += n_real
    return features


class ForwardInChunks:
    """A model's forward pass over a loaded batch, in chunks that fit: on out-of-memory the chunk is
    halved and only the failed chunk is redone, so nothing finished is lost, and later batches keep the
    smaller chunk (SAM at 1,024 px does not fit the paper's batch of 256 on every GPU)."""

    def __init__(self, model: torch.nn.Module, chunk: int, device: torch.device, autocast_dtype: torch.dtype | None,
                 memory_format: torch.memory_format):
        self.model, self.chunk, self.device = model, chunk, device
        self.autocast_dtype, self.memory_format = autocast_dtype, memory_format

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        outputs, done = [], 0
        while done < len(x):
            part = x[done : done + self.chunk]
            try:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    out = self.model(part.contiguous(memory_format=self.memory_format))
            except torch.OutOfMemoryError:
                if self.chunk == 1:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.chunk //= 2
                log.warning("out of memory: forward batch halved to %d", self.chunk)
                continue
            outputs.append(out.float().cpu().numpy())
            done += len(part)
        return np.concatenate(outputs)


def extract_features(
    backbone: Backbone,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    family: str,
    options: ExtractionOptions = ExtractionOptions(),
    device: torch.device | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Features for every split plus a record of how they were made.

    Returns ``({"<split>_features": …, "<split>_labels": …}, info)``.
    """
    device = device or pick_device()
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    autocast_dtype = resolve_precision(options.precision, device)
    channels_last = resolve_channels_last(options.channels_last, family)
    model = backbone.model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    backbone.model = model
    arrays: dict[str, np.ndarray] = {}
    n_images = 0
    started = time.perf_counter()
    for split, (images, labels) in splits.items():
        arrays[f"{split}_features"] = extract_split(
            backbone, images, device, options.batch_size, autocast_dtype, channels_last, desc=split,
            num_workers=options.num_workers,
        )
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        n_images += len(images)
    seconds = time.perf_counter() - started
    for name, array in arrays.items():
        if name.endswith("_features") and not np.isfinite(array).all():
            raise FloatingPointError(f"{backbone.backbone_id}: non-finite values in {name}")
    info = {
        **backbone.describe(),
        "device": device_name(device),
        "precision": precision_name(autocast_dtype),
        "channels_last": channels_last,
        "batch_size": options.batch_size,
        "threads": torch.get_num_threads(),
        "n_images": n_images,
        "seconds": round(seconds, 3),
        "images_per_s": round(n_images / seconds, 2) if seconds > 0 else None,
    }
    log.info("%s: %d images in %.1f s (%.1f img/s)", backbone.backbone_id, n_images, seconds, info["images_per_s"] or 0)
    return arrays, info

