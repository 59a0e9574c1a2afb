"""Evaluation crops made once per training job: the val and test splits decoded and resized once, not per epoch.

A training job evaluates val after every epoch (and test whenever val improves). For a dataset kept as
image files, each evaluation decodes every JPEG and resizes it again; the resize (float, antialiased)
costs more than the decode. :func:`crop_once` runs the first half of the backbone's eval transform
(:meth:`~bobench.backbones.transforms.EvalTransform.crop`: resize, center crop, scale to [0, 1]) once per
image, exactly as the JPEG path does, into a float32 memory map in a scratch folder of the job; every
evaluation then normalises the stored crops (elementwise), which gives bit for bit the tensors of the
JPEG path. The crops take ``4 × 3 × size²`` bytes an image (602 kB at 224 px), so a split is cropped
only within the budget the input cache records (``input_cache.eval_crops_max_gb``); above it the split
is read from its files as before. Pixel-array datasets are transformed in batches on the device already
and are left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from bobench.backbones.transforms import EvalTransform
from bobench.datasets.images import ImageFiles

log = logging.getLogger(__name__)


class EvalCrops:
    """A split's crops, float32 ``(N, 3, size, size)`` (a memory map), for transforms of one geometry."""

    def __init__(self, crops: np.ndarray, geometry: tuple[int, int, str]):
        self.crops, self.geometry = crops, tuple(geometry)

    def __len__(self) -> int:
        return len(self.crops)

    def batches(self, transform: EvalTransform, batch_size: int):
        """Normalised float batches ``(B, 3, size, size)`` on the CPU, in order."""
        if transform.geometry != self.geometry:
            raise ValueError(
                f"crops were made for (size, resize_to, interpolation) {self.geometry}, the transform has {transform.geometry}"
            )
        for start in range(0, len(self.crops), batch_size):
            yield transform.normalize(torch.from_numpy(np.array(self.crops[start : start + batch_size])))


class _CropOnly:
    """The crop half of a transform, as the callable :func:`bobench.features.eval_batches` applies."""

    def __init__(self, transform: EvalTransform):
        self.crop = transform.crop

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.crop(images)


def crop_once(
    images,
    transform: EvalTransform,
    directory: str | Path,
    name: str,
    max_bytes: int,
    batch_size: int = 256,
    num_workers: int = 0,
):
    """``images`` as :class:`EvalCrops` stored under ``directory`` (``<name>.npy``), or ``images`` unchanged:
    pixel arrays, or a split whose crops would exceed ``max_bytes``."""
    from bobench.features import eval_batches

    if not isinstance(images, ImageFiles):
        return images
    needed = len(images) * 3 * transform.size**2 * 4
    if needed > max_bytes:
        log.info(
            "%s: evaluation crops would take %.1f GB (budget %.1f GB): read from the image files at each evaluation",
            name,
            needed / 1e9,
            max_bytes / 1e9,
        )
        return images
    path = Path(directory) / f"{name}.npy"
    crops = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(images), 3, transform.size, transform.size))
    start = 0
    for batch, n in eval_batches(images, _CropOnly(transform), batch_size, torch.device("cpu"), num_workers):
        crops[start : start + n] = batch.numpy()
        start += n
    crops.flush()
    log.info("%s: %d evaluation crops stored once (%.1f GB)", name, len(images), needed / 1e9)
    return EvalCrops(np.load(path, mmap_mode="r"), transform.geometry)
