"""Images kept as files: datasets too large, or too varied in size, for one uint8 array.

A prepared split stores either the pixels (uint8 ``(N, H, W, C)``) or, for
ImageNet-scale and variable-size datasets, the image paths (a 1-D unicode
array, relative to the dataset's image root). :class:`ImageFiles` makes the
second look like the first where it matters: ``len``, ``files[i]`` (a uint8
``(H, W, 3)`` array) and ``files[indices]`` (a subset).
:func:`bobench.features.eval_batches` turns either kind into batches through a
backbone's eval transform, decoding files in loader workers. (No torch here:
the Snakefile imports the datasets package when it checks the config.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
