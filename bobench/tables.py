"""BoB's Table 1, regenerated from the backbone registry: who was pretrained how, on what.

Parameter counts are computed by building each architecture on PyTorch's
``meta`` device: shapes without memory or initialisation, so even the 400M
parameter models cost nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bobench.backbones.model import build_architecture, count_parameters
from bobench.io import atomic_path
from bobench.markdown import markdown_table

# Row order of Table 1: supervised first, random init last (as in the paper).
METHOD_ORDER = ["supervised", "SSL", "vision-language", "generative", "depth", "none"]


def feature_extractor_parameters(entry: dict[str, Any]) -> int:
    """Parameters without the classifier head, counted on the meta device."""
    with torch.device("meta"):
        model = build_architecture(entry, num_classes=0)
    return count_parameters(model)


def backbone_rows(backbones: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per backbone: everything Table 1 is made of."""
    rows = []
    for backbone_id, entry in backbones.items():
        arch = entry["architecture"]
        rows.append({
            "backbone": backbone_id,
            "backbone_name": entry["name"],
            "family": entry["family"],
            "method": entry["method"],
            "algorithm": entry.get("algorithm", entry["method"]),
            "pretrain_data": entry["pretrain_data"],
            "pretrain_size": entry["pretrain_size"],
            "architecture": arch.get("name") or arch["entry_point"],
            "resolution": (entry.get("input") or {}).get("size"),
            "n_params": feature_extractor_parameters(entry),
            "weights": entry["weights"]["source"],
        })
    return pd.DataFrame(rows)


def table1(rows: pd.DataFrame) -> pd.DataFrame:
    """Group by pretraining method × algorithm × data: the architectures and their sizes."""
    rows = rows.assign(
        order=rows["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}).fillna(len(METHOD_ORDER)),
        arch_label=rows["backbone_name"] + " (" + (rows["n_params"] / 1e6).round(1).astype(str) + "M)",
    )
    grouped = (
        rows.sort_values(["order", "algorithm", "pretrain_size", "n_params"])
        .groupby(["order", "method", "algorithm", "pretrain_data", "pretrain_size"], sort=False)
        .agg(architectures=("arch_label", ", ".join), n_backbones=("backbone", "size"))
        .reset_index()
        .drop(columns="order")
    )
    return grouped


def _millions(value: int) -> str:
    return f"{value / 1e6:,.1f}M" if value >= 1_000_000 else str(value)


def write_backbone_tables(backbones: dict[str, dict[str, Any]], csv_path: str | Path, table1_csv: str | Path, table1_md: str | Path) -> None:
    rows = backbone_rows(backbones)
    grouped = table1(rows)
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)
    with atomic_path(table1_csv) as tmp:
        grouped.to_csv(tmp, index=False)
    text = (
        "# Table 1: the backbones of this battle\n\n"
        "Pretraining method and algorithm, pretraining data and its size (images), and the architectures "
        "with their parameter counts (feature extractor, classifier excluded). Regenerated from "
        "`config/backbones.yaml`; one row per backbone is in `backbones.csv`.\n\n"
        + markdown_table(grouped.assign(pretrain_size=grouped["pretrain_size"].map(_millions)).rename(columns={"pretrain_size": "images"}))
        + "\n"
    )
    with atomic_path(table1_md) as tmp:
        tmp.write_text(text)
