"""Pixels and containers for stand-in datasets: images at the real sizes and formats, archives in
the real layouts (byte-identical for a seed). Content is a smooth seeded pattern with a per-class tint (so a probe has
something to find, and files compress like photographs rather than noise)."""

from __future__ import annotations

import gzip
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


#: zip members stored uncompressed, as the real archives keep their images.
_STORED_SUFFIXES = (".jpg", ".jpeg", ".png")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def archive_bytes(name: str, members: Mapping[str, bytes], *, folders: bool = True) -> bytes:
    """A zip, tar or tar.gz/tgz (by ``name``'s suffix) holding ``members`` in order, each preceded by its
    folders' entries (unless ``folders`` is false: ILSVRC2012's per-class tars have none), with fixed
    timestamps, owners and modes: the same bytes on every run."""
    buffer = io.BytesIO()
    seen: set[str] = set()

    def new_folders(member: str) -> list[str]:
        fresh = [f for f in _parents(member) if folders and f not in seen]
        seen.update(fresh)
        return fresh

    if name.endswith(".zip"):
        with zipfile.ZipFile(buffer, "w") as archive:
            for member, data in members.items():
                for folder in new_folders(member):
                    info = zipfile.ZipInfo(folder + "/", date_time=_ZIP_EPOCH)
                    info.external_attr = (0o40755 << 16) | 0x10
                    archive.writestr(info, b"")
                info = zipfile.ZipInfo(member, date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_STORED if member.lower().endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return buffer.getvalue()
    if not name.endswith((".tar", ".tar.gz", ".tgz")):
        raise ValueError(f"{name}: not a zip, tar or tar.gz archive")
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members.items():
            for folder in new_folders(member):
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                archive.addfile(info)
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    # gzip's header holds a time and a file name: none here, so the bytes do not depend on when or where.
    return gzip.compress(data, compresslevel=6, mtime=0) if name.endswith((".gz", ".tgz")) else data
