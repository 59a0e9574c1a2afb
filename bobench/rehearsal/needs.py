"""Which registry entries a rehearsal replaces by stand-ins (a leaf module: the config checks ask it
before any job, without importing the stand-in makers)."""

from __future__ import annotations

from typing import Any

#: Weight sources fetched from the network: the ones a rehearsal replaces by stand-ins.
NETWORK_WEIGHT_SOURCES = ("timm", "url", "hf_hub")


def needs_standin_data(entry: dict[str, Any]) -> bool:
    """Whether a dataset comes from outside (downloads or manual copies): made-here and packaged data do not."""
    source = entry.get("source") or {}
    return source.get("loader") not in ("fashion_mnist", "animal_mnist", "sklearn_digits") and "from_dataset" not in source


def needs_standin_weights(entry: dict[str, Any]) -> bool:
    """Whether a backbone's weights come from the network (timm tags, release URLs, the Hugging Face hub)."""
    return entry["weights"]["source"] in NETWORK_WEIGHT_SOURCES
