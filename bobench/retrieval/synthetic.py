"""A Copydays-layout copy-detection set made offline from any prepared dataset.

Each original (a dataset image, upscaled) gets the three kinds of Copydays
variants: one "strong" attack (rotation, colour shift, blur), JPEG copies at
several qualities and central crops. Everything is deterministic, so the set
and its split are the same on every machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def _as_image(pixels: np.ndarray, size: int) -> Image.Image:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    return image.resize((size, size), Image.BICUBIC)


def _strong(image: Image.Image) -> Image.Image:
    rotated = image.rotate(17, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    warmer = ImageEnhance.Color(ImageEnhance.Brightness(rotated).enhance(1.25)).enhance(0.4)
    return warmer.filter(ImageFilter.GaussianBlur(1.5))


def _crop(image: Image.Image, keep_percent: int) -> Image.Image:
    """The central crop keeping ``keep_percent`` % of the area (as Copydays' crops/<p>/ folders)."""
    side = image.width * (keep_percent / 100) ** 0.5
    left = (image.width - side) / 2
    return image.crop((round(left), round(left), round(left + side), round(left + side)))


def write_copydays_layout(
    images: np.ndarray, out_dir: Path, size: int, jpeg_qualities: Sequence[int], crops: Sequence[int]
) -> dict[str, str]:
    """Write ``original/``, ``strong/``, ``jpegqual/<q>/``, ``crops/<p>/`` under ``out_dir`` (replacing it whole).

    Returns the ``folders`` mapping of the ``copydays`` loader, relative to ``out_dir``'s parent. Image
    ``i`` is group ``1000 + i``: originals are ``<group>00.jpg`` and every variant of it starts with the group.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for i, pixels in enumerate(images):
            group = f"{1000 + i:04d}"
            original = _as_image(np.asarray(pixels), size)
            outputs = {Path("original") / f"{group}00.jpg": (original, 95), Path("strong") / f"{group}01.jpg": (_strong(original), 90)}
            for quality in jpeg_qualities:
                outputs[Path("jpegqual") / str(quality) / f"{group}00.jpg"] = (original, int(quality))
            for percent in crops:
                outputs[Path("crops") / str(percent) / f"{group}00.jpg"] = (_crop(original, int(percent)), 90)
            for relative, (image, quality) in outputs.items():
                (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                image.save(tmp / relative, format="JPEG", quality=quality)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {block: f"{out_dir.name}/{block}" for block in ("original", "strong", "jpegqual", "crops")}
