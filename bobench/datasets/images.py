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
    """Image files under ``root``, decoded to RGB uint8 arrays on access.

    ``boxes`` (optional, ``(N, 4)`` pixel ``x1, y1, x2, y2``) crops each image to its box as it is read
    (revisited Oxford/Paris queries); a row of NaNs keeps that image whole.
    """

    def __init__(self, root: str | Path, paths: np.ndarray, boxes: np.ndarray | None = None):
        self.root = Path(root)
        self.paths = np.asarray(paths, dtype=str)
        if self.paths.ndim != 1:
            raise ValueError(f"image paths must be a 1-D array, got shape {self.paths.shape}")
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=float)
        if self.boxes is not None and self.boxes.shape != (len(self.paths), 4):
            raise ValueError(f"boxes must be ({len(self.paths)}, 4), got {self.boxes.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            path = self.root / self.paths[index]
            try:
                with Image.open(path) as image:
                    box = None if self.boxes is None else self.boxes[index]
                    if box is not None and not np.isnan(box).any():
                        image = image.crop(tuple(float(v) for v in box))
                    return np.array(image.convert("RGB"))
            except OSError as exc:
                raise OSError(f"cannot read image {path}: {exc}") from exc
        return ImageFiles(self.root, self.paths[index], None if self.boxes is None else self.boxes[index])

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root})"
