"""The published retrieval numbers (project reference data) beside ours.

``config/reference/<name>.yaml`` describes a published table: its CSV file and
sha256, the metric it holds, where it comes from, and how its row and column
names map onto our backbone and dataset ids. :func:`compare_with_published`
joins it with our results table, and :func:`rank_correlations` says how well
the two orders of backbones agree (Spearman's ρ per dataset, and pooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.stats import spearmanr

from bobench.io import sha256_file

MIN_PAIRS_FOR_RHO = 3
ALL_DATASETS = "all (pooled)"


@dataclass(frozen=True)
class PublishedTable:
    #: long form: bob_backbone, backbone (our id, or None), bob_dataset, dataset (our id), published
    values: pd.DataFrame
    metric: str
    task: str
    provenance: dict[str, Any]
    source: Path


def load_published(description: str | Path) -> PublishedTable:
    """Read a reference description and its table; the table must match its sha256 and every name be mapped."""
    description = Path(description)
    spec = yaml.safe_load(description.read_text())
    table = description.parent / spec["table"]
    if not table.is_file():
        raise FileNotFoundError(f"{description}: reference table {table} is missing")
    digest = sha256_file(table)
    if digest != spec["sha256"]:
        raise ValueError(f"{table}: sha256 {digest} differs from the {spec['sha256']} recorded in {description}; "
                         "reference data must not change silently")
    wide = pd.read_csv(table)
    name_column = wide.columns[0]
    unmapped = [c for c in wide.columns[1:] if c not in spec["datasets"]]
    unmapped += [b for b in wide[name_column] if b not in spec["backbones"]]
    if unmapped:
        raise ValueError(f"{description}: {unmapped[0]!r} of {table.name} has no entry under datasets/backbones")
    long = wide.melt(id_vars=name_column, var_name="bob_dataset", value_name="published").rename(columns={name_column: "bob_backbone"})
    long["backbone"] = long["bob_backbone"].map(spec["backbones"])
    long["dataset"] = long["bob_dataset"].map(spec["datasets"])
    long["dataset"] = pd.Categorical(long["dataset"], categories=list(spec["datasets"].values()), ordered=True)
    long = long.sort_values(["dataset", "bob_backbone"]).reset_index(drop=True)
    return PublishedTable(long, spec["metric"], spec["task"], spec["provenance"], table)


def compare_with_published(results: pd.DataFrame, published: PublishedTable) -> pd.DataFrame:
    """One row per published number, with ours (value and CI) where the run has it.

    ``results`` is the results table (bobench.results); only its rows of the reference's task and metric count.
    """
    ours = results[(results["task"] == published.task) & (results["metric"] == published.metric)]
    ours = ours[["backbone", "backbone_name", "method", "family", "dataset", "value", "ci_low", "ci_high"]].rename(
        columns={"value": "ours", "ci_low": "ours_ci_low", "ci_high": "ours_ci_high"}
    )
    duplicated = ours.duplicated(["backbone", "dataset"])
    if duplicated.any():
        row = ours[duplicated].iloc[0]
        raise ValueError(f"results table: more than one {published.metric} row for {row.backbone} on {row.dataset}")
    values = published.values.assign(dataset=published.values["dataset"].astype(str))
    merged = values.merge(ours, on=["backbone", "dataset"], how="left")
    merged["dataset"] = pd.Categorical(merged["dataset"], categories=published.values["dataset"].cat.categories, ordered=True)
    merged["difference"] = merged["ours"] - merged["published"]
    return merged.sort_values(["dataset", "bob_backbone"]).reset_index(drop=True)


def rank_correlations(comparison: pd.DataFrame) -> pd.DataFrame:
    """Spearman's ρ between our and the published values over the backbones both have, per dataset and pooled.

    ρ is left empty (NaN) with fewer than :data:`MIN_PAIRS_FOR_RHO` pairs or constant values.
    """
    rows = []
    groups = [(str(d), g) for d, g in comparison.groupby("dataset", observed=False)] + [(ALL_DATASETS, comparison)]
    for dataset, group in groups:
        pairs = group.dropna(subset=["ours", "published"])
        rho, p_value = np.nan, np.nan
        if len(pairs) >= MIN_PAIRS_FOR_RHO and pairs["ours"].nunique() > 1 and pairs["published"].nunique() > 1:
            result = spearmanr(pairs["ours"], pairs["published"])
            rho, p_value = float(result.statistic), float(result.pvalue)
        rows.append({"dataset": dataset, "n_backbones": len(pairs), "published_only": int(group["ours"].isna().sum()),
                     "spearman_rho": rho, "p_value": p_value,
                     "mean_difference": float(pairs["difference"].mean()) if len(pairs) else np.nan})
    return pd.DataFrame(rows)


def published_scores(published: PublishedTable) -> pd.DataFrame:
    """The published table with each backbone's z-score per dataset (population std over the table's
    backbones, as bobench.ranking) and its mean over datasets: BoB's retrieval task score, from their numbers."""
    values = published.values.assign(dataset=published.values["dataset"].astype(str))
    by_dataset = values.groupby("dataset")["published"]
    values["z"] = (values["published"] - by_dataset.transform("mean")) / by_dataset.transform(lambda v: v.std(ddof=0))
    values["task_z"] = values.groupby("bob_backbone")["z"].transform("mean")
    return values


def comparison_markdown(comparison: pd.DataFrame, correlations: pd.DataFrame, published: PublishedTable) -> str:
    """The comparison for people: provenance, ρ per dataset, then ours / published per backbone and dataset."""
    from bobench.markdown import markdown_table

    def cell(row: pd.Series) -> str:
        ours = "–" if pd.isna(row["ours"]) else f"{row['ours']:.3f}"
        return f"{ours} / {row['published']:.3f}"

    wide = comparison.assign(cell=comparison.apply(cell, axis=1), dataset=comparison["dataset"].astype(str)).pivot(
        index="bob_backbone", columns="dataset", values="cell")
    wide = wide[[str(d) for d in comparison["dataset"].cat.categories]].reset_index()
    shown = correlations.rename(columns={"n_backbones": "backbones (both)", "published_only": "published only",
                                         "spearman_rho": "Spearman ρ", "p_value": "p", "mean_difference": "mean (ours − published)"})
    return "\n".join([
        f"# Retrieval {published.metric.upper()}: ours vs published",
        "",
        f"Reference: {published.provenance['source'].strip()} Collected: {published.provenance['collected']}",
        "",
        f"Caveats: {published.provenance['caveats'].strip()}",
        "",
        "## Rank correlation (Spearman ρ over the backbones both have)",
        "",
        markdown_table(shown),
        "",
        f"## {published.metric.upper()} per backbone: ours / published (– = not run)",
        "",
        markdown_table(wide.rename(columns={"bob_backbone": "backbone (BoB's name)"})),
        "",
    ])
