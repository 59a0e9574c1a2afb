"""Which head BoB's frozen probe puts on a backbone (docs/protocol.md §3.3). No torch: the Snakefile uses it.

BoB's ``linear_probe.py`` (MAE's recipe) inserts ``BatchNorm1d(affine=False, eps=1e-6)`` before the linear
head where the timm model name contains ``vit``, ``swin`` or ``conv``, and for Stable Diffusion; every other
backbone (the ResNets: supervised, DINO, VICReg, CLIP) gets the linear head alone. The registry says which
per entry (``probe_head``) rather than matching our ids; left out, the family decides (CNN: linear, the
transformers and SD: batchnorm), and the ConvNeXts, CNNs whose BoB names contain "conv", say batchnorm.
"""

from __future__ import annotations

from typing import Any

#: The heads a frozen probe can have.
PROBE_HEADS = ("batchnorm", "linear")


def probe_head(entry: dict[str, Any]) -> str:
    """``batchnorm`` or ``linear``: the head BoB's rule gives a registry entry (or a spec with its family)."""
    head = entry.get("probe_head") or ("linear" if entry["family"] == "CNN" else "batchnorm")
    if head not in PROBE_HEADS:
        raise ValueError(f"probe_head {head!r}: expected one of {', '.join(PROBE_HEADS)}")
    return head
