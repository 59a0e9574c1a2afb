"""Images kept as files: datasets too large, or too varied in size, for one uint8 array.

A prepared split stores either the pixels (uint8 ``(N, H, W, C)``) or, for
ImageNet-scale and variable-size datasets, the image paths (a 1-D unicode
array, relative to the dataset's image root). :class:`ImageFiles` makes the
second look like the first where it matters: ``len``, ``files[i]`` (a uint8
``(H, W, 3)`` array) and ``files[indices]`` (a subset). :func:`eval_batches`
turns either kind into batches through a backbone's eval transform, decoding
files in loader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class ImageFiles:
    """Image files under ``root``, decoded to RGB uint8 arrays on access."""

    def __init__(self, root: str | Path, paths: np.ndarray):
        self.root = Path(root)
        self.paths = np.asarray(paths, dtype=str)
        if self.paths.ndim != 1:
            raise ValueError(f"image paths must be a 1-D array, got shape {self.paths.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            path = self.root / self.paths[index]
            try:
                with Image.open(path) as image:
                    return np.array(image.convert("RGB"))
            except OSError as exc:
                raise OSError(f"cannot read image {path}: {exc}") from exc
        return ImageFiles(self.root, self.paths[index])

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root})"


class _EvalItems(torch.utils.data.Dataset):
    """One transformed image per item (files differ in size, so the transform runs per image)."""

    def __init__(self, files: ImageFiles, transform: Callable):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(torch.from_numpy(self.files[index])[None])[0]


def eval_batches(
    images, transform: Callable, batch_size: int, device: torch.device, num_workers: int = 0, pad_to_batch: bool = False
) -> Iterator[tuple[torch.Tensor, int]]:
    """``(batch, n_real)`` pairs: transformed float images on ``device``, in order.

    Pixel arrays are moved as uint8 and transformed on the device (one call per
    batch); files are decoded and transformed in ``num_workers`` loader processes.
    With ``pad_to_batch`` a short last batch is padded with blank images, so the
    model sees one input shape only (see :func:`bobench.features.extract_split`).
    """
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
