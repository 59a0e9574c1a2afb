"""Test helper: JPEG photos of ImageNet-like sizes and modes, written as a dataset's image files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bobench.datasets.images import ImageFiles

# (width, height, mode): ImageNet's usual 500 × 375, portrait, small, grey, one smaller than the cache size.
SHAPES = [(500, 375, "RGB"), (375, 500, "RGB"), (333, 500, "L"), (120, 90, "RGB"), (640, 480, "RGB"), (500, 281, "RGB")]


def photo(width: int, height: int, mode: str, seed: int) -> Image.Image:
    """A smooth random picture with some texture: what JPEG and the resizes see in real photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(height // 16 + 2, width // 16 + 2, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC)).astype(np.int16)
    image = np.clip(image + rng.integers(-25, 25, image.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(image).convert(mode)


def jpegs(root, n: int, seed: int) -> ImageFiles:
    names = []
    for i in range(n):
        width, height, mode = SHAPES[i % len(SHAPES)]
        name = f"img_{seed}_{i}.jpg"
        photo(width, height, mode, seed * 100 + i).save(root / name, quality=90)
        names.append(name)
    return ImageFiles(root, np.array(names))
