"""Pixels and containers for stand-in datasets: images at the real sizes and formats, archives in
the real layouts. Content is a smooth seeded pattern with a per-class tint (so a probe has
something to find, and files compress like photographs rather than noise)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from bobench.io import atomic_path


def class_colour(class_index: int) -> np.ndarray:
    """A fixed RGB tint per class (golden-ratio hue walk: neighbouring classes differ)."""
    hue = (class_index * 0.618033988749895) % 1.0
    angles = 2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3]))
    return 127.5 + 100.0 * np.cos(angles)


def standin_pixels(rng: np.random.Generator, width: int, height: int, class_index: int = 0) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 image: low-frequency noise around the class tint."""
    coarse = rng.normal(0.0, 40.0, size=(max(2, height // 32), max(2, width // 32), 3))
    smooth = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR),
        dtype=np.float32,
    )
    pixels = 0.5 * smooth + 0.5 * class_colour(class_index)[None, None, :]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def standin_image(rng: np.random.Generator, width: int, height: int, class_index: int = 0, mode: str = "RGB") -> Image.Image:
    """:func:`standin_pixels` as a PIL image in ``mode`` (``L`` for grey-scale datasets such as CheXpert)."""
    return Image.fromarray(standin_pixels(rng, width, height, class_index)).convert(mode)


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    """The image's bytes in ``fmt`` (JPEG quality 90 unless given)."""
    if fmt.upper() in ("JPEG", "JPG"):
        options.setdefault("quality", 90)
        fmt = "JPEG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_archive(path: str | Path, members: Mapping[str, bytes]) -> Path:
    """A tar (``.tar``, ``.tar.gz``/``.tgz``) or zip (``.zip``) holding ``members`` (name → bytes), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
        else:
            mode = "w:gz" if path.name.endswith((".gz", ".tgz")) else "w"
            with tarfile.open(tmp, mode) as archive:
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mtime = 0  # the same stand-in bytes on every run
                    archive.addfile(info, io.BytesIO(data))
    return path
