"""Out-of-distribution classification: trained classifiers tested, without further training, on shifted data.

BoB (docs/protocol.md §5) evaluates each ImageNet fine-tuned classifier on ImageNet-A,
-R, -Sketch and -V2, and a VisDA-2017 synthetic-trained one on real images.
Two kinds of OOD test set serve that here:

* **registry datasets** (ImageNet-A/R/Sketch/V2, VisDA real): their test split.
  Classes are matched *by name* onto the classifier's classes; when the set
  covers only some of them (ImageNet-A and -R: 200 of the 1000 wnids) the
  logits are restricted to those classes before the softmax, which is what
  BoB's ``--valid-labels`` files do.
* **shifts** made deterministically from the training dataset's own test split,
  so every battle, the offline demo included, has OOD rows: an edge-map
  "sketch", inverted contrast, and ImageNet-C-style corruptions (Hendrycks &
  Dietterich 2019) at five severities, with ImageNet-C's severity parameters.
  Geometric parameters (blur sigma) are given for 224 px in ImageNet-C and are
  scaled to the source image's size; intensity ones are used as they are.

An OOD set's id is ``<dataset>:<shift>`` or ``<dataset>:<shift>-<severity>``
for a shift, and the registry id for a dataset.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

if TYPE_CHECKING:  # torch is imported where it is used: the Snakefile imports this module to plan OOD jobs
    import torch

# ImageNet-C's per-severity parameters (Hendrycks & Dietterich, `make_imagenet_c.py`).
CORRUPTION_SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std on [0, 1] pixels
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),  # sigma in pixels at 224 px
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # factor towards the per-channel mean
    "jpeg": (25, 18, 15, 10, 7),  # JPEG quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # down-sampling factor
}
SINGLE_SHIFTS = ("sketch", "invert")
SHIFTS: tuple[str, ...] = (*SINGLE_SHIFTS, *CORRUPTION_SEVERITIES)
SHIFT_LABELS = {
    "sketch": "edge-map sketch", "invert": "inverted", "gaussian_noise": "Gaussian noise",
    "gaussian_blur": "Gaussian blur", "contrast": "low contrast", "jpeg": "JPEG", "pixelate": "pixelate",
}  # fmt: skip
IMAGENET_C_SIZE = 224


@dataclass(frozen=True)
class OODSet:
    """One OOD test set of a classifier trained on ``source``."""

    set_id: str
    source: str  # the dataset the classifier was trained on
    kind: str  # "shift" or "dataset"
    shift: str | None = None
    severity: int | None = None
    dataset: str | None = None  # registry id, for kind "dataset"

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def shift_set_id(source: str, shift: str, severity: int | None) -> str:
    return f"{source}:{shift}" if severity is None else f"{source}:{shift}-{severity}"


def plan_ood_sets(source: str, datasets: Sequence[str], shifts: Sequence[str], severities: Sequence[int]) -> list[OODSet]:
    """The OOD sets of a classifier trained on ``source``, in a fixed order."""
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        raise ValueError(f"unknown shift(s) {', '.join(unknown)}; valid shifts: {', '.join(SHIFTS)}")
    bad = [s for s in severities if s not in range(1, 6)]
    if bad:
        raise ValueError(f"severities must lie in 1..5, got {bad}")
    sets = [OODSet(d, source, "dataset", dataset=d) for d in datasets]
    for shift in shifts:
        levels: Sequence[int | None] = [None] if shift in SINGLE_SHIFTS else sorted(severities)
        sets += [OODSet(shift_set_id(source, shift, s), source, "shift", shift=shift, severity=s) for s in levels]
    return sets


# --------------------------------------------------------------------------- shifts


def apply_shift(images: np.ndarray, shift: str, severity: int | None, seed: int) -> np.ndarray:
    """The shifted copy of uint8 ``(N, H, W, C)`` images; the same inputs and seed give the same bytes."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, H, W, C) images, got {images.dtype} {images.shape}")
    if shift in SINGLE_SHIFTS:
        if severity is not None:
            raise ValueError(f"shift {shift!r} has no severities")
        return _SINGLE[shift](np.asarray(images))
    if shift not in CORRUPTION_SEVERITIES:
        raise ValueError(f"unknown shift {shift!r}; valid shifts: {', '.join(SHIFTS)}")
    if severity not in range(1, 6):
        raise ValueError(f"shift {shift!r} needs a severity in 1..5, got {severity!r}")
    import torch

    parameter = CORRUPTION_SEVERITIES[shift][severity - 1]
    generator = torch.Generator().manual_seed(seed * 1_000 + SHIFTS.index(shift) * 10 + severity)
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)  # uint8 NCHW
    return _CORRUPTIONS[shift](x, parameter, generator).permute(0, 2, 3, 1).contiguous().numpy()


def _invert(images: np.ndarray) -> np.ndarray:
    return 255 - images


def _sketch(images: np.ndarray) -> np.ndarray:
    """Dark edges on white: PIL's edge filter on the grey image, inverted and stretched to full range."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        grey = np.asarray(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("L"))
        # The filter leaves the outermost pixels alone: filter a copy padded by one replicated pixel.
        padded = Image.fromarray(np.pad(grey, 1, mode="edge"))
        edges = ImageOps.autocontrast(ImageOps.invert(padded.filter(ImageFilter.FIND_EDGES)))
        out[i] = np.asarray(edges)[1:-1, 1:-1, None]  # broadcast to 1 or 3 channels
    return out


def _gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    import torch

    noisy = x.float() / 255 + torch.randn(x.shape, generator=generator) * std
    return _to_uint8(noisy * 255)


def _gaussian_blur(x: torch.Tensor, sigma_224: float, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    sigma = sigma_224 * max(x.shape[-2:]) / IMAGENET_C_SIZE
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return _to_uint8(TF.gaussian_blur(x.float(), [kernel, kernel], [sigma, sigma]))


def _contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    x = x.float()
    mean = x.mean(dim=(2, 3), keepdim=True)
    return _to_uint8((x - mean) * factor + mean)


def _jpeg(x: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    """Pillow's JPEG round trip, as ImageNet-C made it."""
    import torch

    out = torch.empty_like(x)
    for i, image in enumerate(x.permute(0, 2, 3, 1).numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=int(quality))
        decoded = np.array(Image.open(buffer))
        out[i] = torch.from_numpy(decoded.reshape(image.shape)).permute(2, 0, 1)
    return out


def _pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    height, width = x.shape[-2:]
    small = TF.resize(x, [max(1, int(height * factor)), max(1, int(width * factor))], antialias=True)
    return TF.resize(small, [height, width], interpolation=TF.InterpolationMode.NEAREST)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    import torch

    return x.round().clamp(0, 255).to(torch.uint8)


_SINGLE: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sketch": _sketch, "invert": _invert}
_CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "jpeg": _jpeg,
    "pixelate": _pixelate,
}


# --------------------------------------------------------------------------- classes


def class_subset(classifier_classes: Sequence[str], ood_classes: Sequence[str], what: str) -> np.ndarray:
    """Indices of ``ood_classes`` among ``classifier_classes`` (matched by name).

    A set covering only some classes (ImageNet-A/R: 200 wnids) restricts the
    classifier to them; a class the classifier does not know is an error.
    """
    position = {name: i for i, name in enumerate(classifier_classes)}
    unknown = [name for name in ood_classes if name not in position]
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (" …" if len(unknown) > 5 else "")
        raise ValueError(
            f"{what}: {len(unknown)} class(es) unknown to the classifier ({shown}); an OOD set's class "
            "names must be among those of the dataset the classifier was trained on"
        )
    return np.array([position[name] for name in ood_classes], dtype=np.int64)


def restricted_probs(logits: np.ndarray, subset: np.ndarray | None) -> np.ndarray:
    """Softmax over the ``subset`` columns of ``logits`` only (all columns when None)."""
    import torch

    z = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    if subset is not None:
        z = z[:, torch.from_numpy(subset)]
    return z.softmax(dim=1).numpy()


def describe_sets(sets: Sequence[OODSet], dataset_meta: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Display name and domain of each OOD set (for the results table), and whether it is a rehearsal's stand-in."""
    described = {}
    for ood in sets:
        if ood.kind == "dataset":
            meta = dataset_meta[ood.dataset]
            described[ood.set_id] = {"name": meta["name"], "domain": meta["domain"], "standin": meta.get("standin", False)}
        else:
            meta = dataset_meta[ood.source]
            level = f" {ood.severity}" if ood.severity is not None else ""
            described[ood.set_id] = {"name": f"{meta['name']}, {SHIFT_LABELS[ood.shift]}{level}", "domain": meta["domain"],
                                     "standin": meta.get("standin", False)}
    return described
