"""BoB figures, drawn only from the results table and a computed :class:`Ranking`.

Plotting never recomputes a metric or a z-score: every number shown comes from
``ranking`` (or, for consistency checks, ``results``), so a figure can always
be traced back to the tables written next to it.

Figures are built on :class:`matplotlib.figure.Figure` directly (rendered by
the Agg canvas, no pyplot state, nothing to close) and saved as PNG and PDF
through :func:`bobench.io.atomic_path`, so an interrupted run leaves no file
that looks finished. Colour always encodes the pretraining method with one
fixed palette, marker shape the architecture family; the only exception is
the scaling figure, where the family is the point and gets its own palette.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import spearmanr

from bobench.io import atomic_path
from bobench.ranking import ALL_TASKS, RANDOM_METHOD, Ranking, ordered_tasks
from bobench.retrieval.reference import ALL_DATASETS

log = logging.getLogger(__name__)
# fontTools logs every glyph subset at INFO while PDFs embed TrueType fonts; keep pipeline logs readable.
logging.getLogger("fontTools").setLevel(logging.WARNING)

DPI = 200
FORMATS = ("png", "pdf")
MIN_POINTS_FOR_RHO = 3
NEED_POOL = "(each setting needs ≥ 2 backbones in its z-score pool, with distinct values)"

# One palette for every figure (colour-blind-safe Okabe-Ito hues); grey = random init.
METHOD_PALETTE: dict[str, str] = {
    "supervised": "#0072B2",
    "SSL": "#E69F00",
    "vision-language": "#009E73",
    "generative": "#CC79A7",
    "depth": "#D55E00",
    RANDOM_METHOD: "#7F7F7F",
}
OTHER_COLOUR = "#000000"
FAMILY_MARKERS: dict[str, str] = {"CNN": "o", "ViT": "^", "hierarchical ViT": "s"}
OTHER_MARKER = "D"
# Family colours (scaling figure only) are deliberately not method colours.
FAMILY_PALETTE: dict[str, str] = {"CNN": "#332288", "ViT": "#882255", "hierarchical ViT": "#999933"}

_RC = {
    "pdf.fonttype": 42,  # embed TrueType so text stays editable/searchable in the PDF
    "ps.fonttype": 42,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
}


def method_colour(method: str) -> str:
    return METHOD_PALETTE.get(method, OTHER_COLOUR)


def family_marker(family: str) -> str:
    return FAMILY_MARKERS.get(family, OTHER_MARKER)


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn look and readable sizes, scoped so importing code keeps its own rcParams."""
    with sns.axes_style("whitegrid"), mpl.rc_context(_RC):
        yield


def _save(fig: Figure, path_stem: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf``, each atomically."""
    paths = []
    for fmt in FORMATS:
        path = Path(f"{os.fspath(path_stem)}.{fmt}")
        with atomic_path(path) as tmp:
            # No creation date in the file: the same results redraw byte-identical figures.
            metadata = {"CreationDate": None} if fmt == "pdf" else {}
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    return paths


def _note(ax: Axes, text: str) -> None:
    """Explain in the figure itself why it is empty or partial."""
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
        wrap=True, bbox={"boxstyle": "round", "facecolor": "#FFF8DC", "edgecolor": "#999999"},
    )


def _rho_text(x: pd.Series, y: pd.Series) -> str:
    """Spearman rho with n, or the reason it is not defined."""
    n = len(x)
    if n < MIN_POINTS_FOR_RHO:
        return f"Spearman ρ: n = {n} < {MIN_POINTS_FOR_RHO}"
    if x.nunique() < 2 or y.nunique() < 2:
        return f"Spearman ρ undefined (constant values, n = {n})"
    rho = spearmanr(x, y).statistic
    return f"Spearman ρ = {rho:.2f} (n = {n})"


def _legend(ax: Axes, methods: list[str], families: list[str] | None = None, sized: bool = True) -> None:
    """One legend outside the axes: colour = method, then (optionally) shape = family (``sized``: and size = parameters)."""
    handles = [
        Line2D([], [], marker="s", linestyle="", markersize=8, color=method_colour(m), label=m)
        for m in _ordered_methods(methods)
    ]
    if families:
        handles.append(Line2D([], [], linestyle="", label="\nfamily" + (" (size ∝ parameters)" if sized else "")))
        handles += [
            Line2D([], [], marker=family_marker(f), linestyle="", markersize=7, color="grey", label=f)
            for f in _ordered_families(families)
        ]
    _outside_legend(ax, handles, "pretraining")


def _outside_legend(ax: Axes, handles: list[Line2D], title: str) -> None:
    """Legend right of the axes, so it never hides points however crowded the plot is."""
    ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _ordered_methods(methods: list[str]) -> list[str]:
    present = set(methods)
    return [m for m in METHOD_PALETTE if m in present] + sorted(present.difference(METHOD_PALETTE))


def _ordered_families(families: list[str]) -> list[str]:
    present = set(families)
    return [f for f in FAMILY_MARKERS if f in present] + sorted(present.difference(FAMILY_MARKERS))


def plot_overall_ranking(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """Horizontal bars of the overall score, best at the top, coloured by pretraining method."""
    title = f"Overall backbone ranking ({ranking.options.aggregate.replace('_', ' ')} of z-scores)"
    return _ranking_bars(ranking.overall, title, f"No backbone has a valid z-score\n{NEED_POOL}.", path_stem)


def small_backbones(ranking: Ranking) -> pd.DataFrame:
    """The overall ranking restricted to pretrained backbones under ``small_params_threshold`` parameters
    (BoB's small-model ranking: Table 2's lower block), ranked within that subset."""
    overall = ranking.overall
    small = overall[(overall["method"] != RANDOM_METHOD) & (overall["n_params"] < ranking.options.small_params_threshold)]
    small = small.dropna(subset=["score"]).copy()
    small["rank_among_small"] = small["score"].rank(ascending=False, method="min").astype(int)
    return small.reset_index(drop=True)


def plot_small_backbones(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """The overall score of the pretrained backbones under the small-model threshold, best at the top."""
    limit = f"{ranking.options.small_params_threshold / 1e6:g}M"
    data = small_backbones(ranking)
    title = (f"Pretrained backbones under {limit} parameters: overall score\n"
             f"(z-scores from the full pools; {len(data)} of {int(ranking.overall['score'].notna().sum())} scored backbones)")
    return _ranking_bars(data, title, f"No pretrained backbone under {limit} parameters has a valid score.", path_stem,
                         label=lambda row: f"{row.backbone_name} ({row.n_params / 1e6:.1f}M)")


def _ranking_bars(overall: pd.DataFrame, title: str, empty_note: str, path_stem: str | os.PathLike,
                  label=lambda row: row.backbone_name) -> list[Path]:
    """Bars of ``overall``'s scores in its order (best first), with bootstrap error bars where given."""
    data = overall.dropna(subset=["score"])
    n_unscored = len(overall) - len(data)
    with _style():
        fig = Figure(figsize=(7.5, 1.2 + 0.28 * max(len(data), 3)), layout="constrained")
        ax = fig.add_subplot()
        if data.empty:
            _note(ax, empty_note)
            ax.set_axis_off()
        else:
            y = np.arange(len(data))[::-1]
            xerr = None
            if {"score_ci_low", "score_ci_high"} <= set(data.columns):
                xerr = np.vstack(
                    [data["score"] - data["score_ci_low"], data["score_ci_high"] - data["score"]]
                ).clip(min=0)
            ax.barh(
                y, data["score"], xerr=xerr, color=[method_colour(m) for m in data["method"]],
                edgecolor="none", error_kw={"elinewidth": 0.8, "capsize": 2},
            )
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_yticks(y, [label(row) for row in data.itertuples()])
            ax.set_ylim(-0.6, len(data) - 0.4)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel("overall score (mean z-score, SD above the pool mean)")
            ax.set_ylabel("backbone")
            _legend(ax, list(data["method"]))
            if n_unscored:
                title += f"\n{n_unscored} backbone(s) without a valid z-score not shown"
        ax.set_title(title)
        return _save(fig, path_stem)


def _setting_labels(settings: pd.DataFrame) -> pd.Series:
    return settings[["task", "dataset", "protocol"]].astype(str).agg(" / ".join, axis=1)


HEATMAP_LIMIT = 3.0


def plot_zscore_heatmap(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """Backbone x setting grid of z (rows in overall-rank order); blank cells = not evaluated or undefined."""
    settings = ranking.settings.assign(setting=lambda df: _setting_labels(df))
    grid = settings.pivot(index="backbone", columns="setting", values="z")
    grid = grid.reindex(index=[b for b in ranking.overall["backbone"] if b in grid.index])
    grid = grid.reindex(columns=sorted(grid.columns))
    names = ranking.overall.set_index("backbone")["backbone_name"]
    with _style():
        fig = Figure(
            figsize=(3.0 + 0.55 * max(grid.shape[1], 2), 1.8 + 0.3 * max(grid.shape[0], 2)),
            layout="constrained",
        )
        ax = fig.add_subplot()
        ax.set_title("z-score per backbone and setting (SD above the setting's pool mean)")
        if grid.empty or grid.isna().all().all():
            _note(ax, f"No defined z-score to show\n{NEED_POOL}.")
            ax.set_axis_off()
        else:
            # Colours saturate at ±3 SD so that one extreme baseline does not wash out
            # the differences between the rest; the annotations keep the exact values.
            limit = min(float(np.nanmax(np.abs(grid.to_numpy()))), HEATMAP_LIMIT)
            sns.heatmap(
                grid.set_axis(names.reindex(grid.index), axis=0), ax=ax, cmap="RdBu_r", center=0,
                vmin=-limit, vmax=limit, annot=True, fmt=".2f", annot_kws={"fontsize": 6},
                linewidths=0.4, linecolor="white", cbar_kws={"label": "z-score (SD), saturating at ±3", "extend": "both"},
            )
            ax.set_xlabel("setting (task / dataset / protocol)")
            ax.set_ylabel("backbone (best overall at top)")
            ax.tick_params(axis="x", labelrotation=45)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
            if grid.isna().any().any():
                fig.text(0.01, 0.0, "blank cell: backbone not evaluated, or z undefined for the setting",
                         fontsize=7, va="top")
        return _save(fig, path_stem)


def _scatter_axes(
    ranking: Ranking, task_x: str | None, task_y: str | None
) -> tuple[pd.DataFrame, str, str, str]:
    """Per-backbone x/y z-scores to compare, their axis names, and a note on what was compared.

    Two tasks when available (BoB Fig. 1); with a single task, two protocols of it
    (else two datasets), because a task-vs-task scatter is then impossible.
    """
    tasks = ranking.tasks.pivot(index="backbone", columns="task", values="z")
    available = sorted(tasks.columns)
    for name in (task_x, task_y):
        if name is not None and name not in available:
            raise ValueError(f"task {name!r} has no scores; tasks with scores: {', '.join(available)}")
    if (task_x is not None and task_y is not None) or len(available) >= 2:
        # By default classification (BoB Fig. 1's x axis) against the task most backbones share with it.
        x = task_x or next(t for t in ["classification", *available] if t in available and t != task_y)
        others = [t for t in available if t != x]
        scored = tasks.notna()
        y = task_y or max(others, key=lambda t: ((scored[x] & scored[t]).sum(), -others.index(t)))
        return tasks[[x, y]].set_axis(["x", "y"], axis=1), x, y, ""
    valid = ranking.settings.dropna(subset=["z"])
    for level in ("protocol", "dataset"):
        values = sorted(valid[level].unique())
        if len(values) >= 2:
            x, y = values[:2]
            grid = valid.pivot_table(index="backbone", columns=level, values="z", aggfunc="mean")
            note = f"only one task ({available[0]}): {level}s compared"
            return grid[[x, y]].set_axis(["x", "y"], axis=1), x, y, note
    note = "fewer than two tasks, protocols or datasets with z-scores"
    return pd.DataFrame(columns=["x", "y"]), "", "", note


def _label_points(ax: Axes, xs: np.ndarray, ys: np.ndarray, labels: list[str]) -> None:
    """Name each point; labels of points that sit close together are pushed apart
    vertically (top to bottom) and tied to their point with a thin line."""
    x_span = float(np.ptp(xs)) or 1.0
    y_span = float(np.ptp(ys)) or 1.0
    gap = 0.05 * y_span
    placed: list[tuple[float, float]] = []
    for i in np.argsort(-ys, kind="stable"):
        label_y = float(ys[i])
        for px, py in sorted(placed, key=lambda p: -p[1]):
            if abs(px - xs[i]) < 0.3 * x_span and abs(py - label_y) < gap:
                label_y = py - gap
        placed.append((float(xs[i]), label_y))
        moved = abs(label_y - ys[i]) > 1e-12
        ax.annotate(
            labels[i], (xs[i], ys[i]), xytext=(xs[i] + 0.03 * x_span, label_y), textcoords="data",
            fontsize=6, va="center", zorder=4,
            arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.4} if moved else None,
        )


def plot_task_scatter(
    ranking: Ranking,
    path_stem: str | os.PathLike,
    task_x: str | None = None,
    task_y: str | None = None,
) -> list[Path]:
    """Task z-score of one task against another; size = parameters, colour = method."""
    pairs, x_name, y_name, note = _scatter_axes(ranking, task_x, task_y)
    info = ranking.overall.set_index("backbone")
    with _style():
        fig = Figure(figsize=(7.5, 5.5), layout="constrained")
        ax = fig.add_subplot()
        title = f"{y_name} vs {x_name} z-scores" if x_name else "Task z-score comparison"
        if note:
            title += f"\n({note})"
        ax.set_title(title)
        data = _scatter_panel(ax, pairs, x_name, y_name, info, empty_note=None if x_name else note.capitalize() + ".")
        if not data.empty:
            _legend(ax, list(data["method"]), list(data["family"]))
        return _save(fig, path_stem)


def _scatter_panel(ax: Axes, pairs: pd.DataFrame, x_name: str, y_name: str, info: pd.DataFrame,
                   empty_note: str | None = None) -> pd.DataFrame:
    """One z-score scatter (x, y per backbone) with sizes, colours, ρ and labels; returns the points drawn."""
    data = pairs.dropna().join(info[["backbone_name", "family", "method", "n_params"]])
    if data.empty:
        _note(ax, empty_note or f"No backbone has z-scores on both {x_name} and {y_name}.")
        ax.set_axis_off()
        return data
    largest = max(float(info["n_params"].max()), 1.0)
    for _, row in data.iterrows():
        ax.scatter(
            row["x"], row["y"], s=20 + 280 * row["n_params"] / largest,
            color=method_colour(row["method"]), marker=family_marker(row["family"]),
            edgecolor="white", linewidth=0.5, alpha=0.85, zorder=3,
        )
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_xlabel(f"{x_name} z-score (SD)")
    ax.set_ylabel(f"{y_name} z-score (SD)")
    ax.text(0.02, 0.98, _rho_text(data["x"], data["y"]), transform=ax.transAxes, va="top",
            fontsize=9, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    _label_points(ax, data["x"].to_numpy(float), data["y"].to_numpy(float), list(data["backbone_name"]))
    ax.margins(x=0.25, y=0.1)  # room for point labels inside the axes
    return data


#: BoB's Figure 1: detection and OOD classification, each against classification.
FIGURE1_PANELS = (("classification", "detection"), ("classification", "ood_classification"))


def figure1_data(ranking: Ranking) -> dict[tuple[str, str], pd.DataFrame]:
    """Per panel (x task, y task): the backbones scored on both, with their x and y task z-scores."""
    scores = ranking.tasks.pivot(index="backbone", columns="task", values="z")
    return {(x, y): (scores[[x, y]].set_axis(["x", "y"], axis=1).dropna() if {x, y} <= set(scores.columns)
                     else pd.DataFrame(columns=["x", "y"], dtype=float))
            for x, y in FIGURE1_PANELS}


def plot_figure1(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """BoB Fig. 1: detection vs classification and OOD classification vs classification task z-scores;
    colour = pretraining method, size = parameters, Spearman's ρ in each panel. A panel whose tasks have no
    shared backbones says so instead of plotting."""
    info = ranking.overall.set_index("backbone")
    with _style():
        fig = Figure(figsize=(13, 5.5), layout="constrained")
        axes = fig.subplots(1, len(FIGURE1_PANELS))
        fig.suptitle("Task scores against classification (BoB Fig. 1)", fontsize=11)
        drawn = []
        for ax, ((x, y), pairs) in zip(axes, figure1_data(ranking).items()):
            ax.set_title(f"{y} vs {x}")
            drawn.append(_scatter_panel(ax, pairs, x, y, info,
                                        empty_note=f"No results on both {x} and {y} yet:\nthis panel needs both tasks."))
        shown = pd.concat([d for d in drawn if not d.empty]) if any(not d.empty for d in drawn) else pd.DataFrame()
        if not shown.empty:
            _legend(axes[-1], list(shown["method"]), list(shown["family"]))
        return _save(fig, path_stem)


#: The scaling figure's panels: results-table column, axis label.
SCALE_PANELS = (("n_params", "parameters (count, log scale)"), ("pretrain_size", "pretraining images (count, log scale)"))


def scaling_fits(ranking: Ranking) -> pd.DataFrame:
    """Per panel and family: Spearman's ρ and a least-squares line ``score = a + b·log10(x)`` over the
    pretrained backbones (random init, with no pretraining data, is left out as in BoB Observation 2)."""
    rows = []
    data = ranking.overall.dropna(subset=["score"])
    data = data[data["method"] != RANDOM_METHOD]
    for column, _ in SCALE_PANELS:
        valid = data[pd.to_numeric(data[column], errors="coerce") > 0]
        for family in _ordered_families(list(valid["family"])):
            members = valid[valid["family"] == family]
            x, y = np.log10(members[column].astype(float)), members["score"].astype(float)
            enough = len(members) >= MIN_POINTS_FOR_RHO and x.nunique() > 1 and y.nunique() > 1
            slope, intercept = np.polyfit(x, y, 1) if enough else (np.nan, np.nan)
            rows.append({"axis": column, "family": family, "n_backbones": len(members),
                         "spearman_rho": float(spearmanr(x, y).statistic) if enough else np.nan,
                         "slope_per_decade": float(slope), "intercept": float(intercept)})
    return pd.DataFrame(rows, columns=["axis", "family", "n_backbones", "spearman_rho", "slope_per_decade", "intercept"])


def plot_zscore_vs_scale(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """Overall score against parameter count and against pretraining-set size (log x), one least-squares line
    and Spearman's ρ per architecture family (BoB Observation 2). Random-init baselines are drawn hollow in the
    parameter panel and left out of the fits; they have no pretraining data to plot."""
    data = ranking.overall.dropna(subset=["score"])
    fits = scaling_fits(ranking).set_index(["axis", "family"])
    with _style():
        fig = Figure(figsize=(13.0, 5.0), layout="constrained")
        axes = fig.subplots(1, len(SCALE_PANELS), sharey=True)
        fig.suptitle("Overall z-score vs model size and pretraining data", fontsize=11)
        handles = {}
        for ax, (column, label) in zip(axes, SCALE_PANELS):
            shown = data[pd.to_numeric(data[column], errors="coerce") > 0]
            if shown.empty:
                _note(ax, f"No backbone has both an overall score and a {column}.")
                ax.set_axis_off()
                continue
            for family in _ordered_families(list(shown["family"])):
                members = shown[shown["family"] == family]
                colour = FAMILY_PALETTE.get(family, OTHER_COLOUR)
                random = members["method"] == RANDOM_METHOD
                ax.scatter(members.loc[~random, column], members.loc[~random, "score"], color=colour,
                           marker=family_marker(family), s=40, edgecolor="white", linewidth=0.5, zorder=3)
                ax.scatter(members.loc[random, column], members.loc[random, "score"], facecolor="none",
                           edgecolor=colour, marker=family_marker(family), s=40, zorder=3)
                fit = fits.loc[(column, family)] if (column, family) in fits.index else None
                text = f"{family}"
                if fit is not None and np.isfinite(fit["spearman_rho"]):
                    pretrained = members.loc[~random, column].astype(float)
                    xs = np.logspace(np.log10(pretrained.min()), np.log10(pretrained.max()), 20)
                    ax.plot(xs, fit["intercept"] + fit["slope_per_decade"] * np.log10(xs), color=colour, linewidth=1.2)
                    text += f": ρ = {fit['spearman_rho']:.2f} (n = {int(fit['n_backbones'])})"
                elif fit is not None:
                    text += f": n = {int(fit['n_backbones'])}, no fit"
                ax.text(0.02, 0.98 - 0.06 * list(_ordered_families(list(shown["family"]))).index(family), text,
                        transform=ax.transAxes, va="top", fontsize=8, color=colour)
                handles[family] = Line2D([], [], marker=family_marker(family), linestyle="", markersize=7,
                                         color=colour, label=family)
            ax.set_xscale("log")
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xlabel(label)
        axes[0].set_ylabel("overall score (mean z-score, SD)")
        legend = list(handles.values())
        if (data["method"] == RANDOM_METHOD).any():
            legend.append(Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor="none",
                                 color="grey", label="random init (hollow; not fitted)"))
        if legend:
            _outside_legend(axes[-1], legend, "family (line: least squares on log x)")
        return _save(fig, path_stem)


def plot_retrieval_vs_published(
    comparison: pd.DataFrame, correlations: pd.DataFrame, path_stem: str | os.PathLike, metric: str = "MRR"
) -> list[Path]:
    """Ours against the published value, one panel per reference dataset (bobench.retrieval.reference).

    Each point is a backbone both have (bar: our bootstrap CI); the diagonal marks equal values and each panel
    states Spearman's ρ from ``correlations``. A dataset without our results says so instead of plotting.
    """
    datasets = [str(d) for d in comparison["dataset"].cat.categories] if hasattr(comparison["dataset"], "cat") \
        else list(dict.fromkeys(comparison["dataset"]))
    rho = correlations.set_index("dataset")
    columns = min(4, max(len(datasets), 1))
    rows = -(-len(datasets) // columns)
    with _style():
        fig = Figure(figsize=(3.0 * columns + 1.8, 3.0 * rows + 0.6), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        pooled = rho.loc[ALL_DATASETS] if ALL_DATASETS in rho.index else None
        title = f"Retrieval {metric}: ours vs published (BoB, May 2023)"
        if pooled is not None and pooled["n_backbones"]:
            title += f" — pooled Spearman ρ = {pooled['spearman_rho']:.2f} over {int(pooled['n_backbones'])} pairs"
        fig.suptitle(title, fontsize=11)
        methods, families = [], []
        for ax, dataset in zip(axes, datasets):
            panel = comparison[comparison["dataset"].astype(str) == dataset]
            pairs = panel.dropna(subset=["ours", "published"])
            ax.set_title(f"{dataset} ({len(pairs)}/{len(panel)} backbones)", fontsize=9)
            ax.plot([0, 1], [0, 1], color="grey", linewidth=0.6, zorder=1)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_aspect("equal")
            ax.set_xlabel(f"published {metric}")
            ax.set_ylabel(f"our {metric}")
            if pairs.empty:
                _note(ax, "no results of ours\nfor this dataset yet")
                continue
            for _, row in pairs.iterrows():
                ax.errorbar(row["published"], row["ours"], yerr=[[row["ours"] - row["ours_ci_low"]], [row["ours_ci_high"] - row["ours"]]],
                            color=method_colour(row["method"]), linewidth=0.6, zorder=2)
                ax.scatter(row["published"], row["ours"], color=method_colour(row["method"]), marker=family_marker(row["family"]),
                           s=22, edgecolor="white", linewidth=0.4, zorder=3)
            methods += list(pairs["method"])
            families += list(pairs["family"])
            stats = rho.loc[dataset] if dataset in rho.index else None
            text = (f"ρ = {stats['spearman_rho']:.2f} (n = {int(stats['n_backbones'])})"
                    if stats is not None and np.isfinite(stats["spearman_rho"]) else f"ρ: n = {len(pairs)} < {MIN_POINTS_FOR_RHO}")
            ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", fontsize=8,
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
        for ax in axes[len(datasets):]:
            ax.set_axis_off()
        if methods:
            _legend(axes[min(columns, len(datasets)) - 1], methods, families, sized=False)
        return _save(fig, path_stem)


#: Per task, the frozen-backbone protocol fine-tuning is compared with (BoB Observation 5).
FROZEN_COUNTERPART = {"classification": "linear_probe", "detection": "frozen", "instance_segmentation": "frozen"}


def architecture_group(family: str) -> str:
    return "CNN" if family == "CNN" else "transformer"


def finetune_gain(ranking: Ranking) -> pd.DataFrame:
    """Per backbone and task: mean over datasets of z(fine-tuned) − z(frozen counterpart), where both exist."""
    z = ranking.settings.dropna(subset=["z"])
    info = ranking.overall.set_index("backbone")
    rows = []
    for task, frozen in FROZEN_COUNTERPART.items():
        grid = z[z["task"] == task].pivot_table(index=["backbone", "dataset"], columns="protocol", values="z")
        if "finetune" not in grid.columns or frozen not in grid.columns:
            continue
        gain = (grid["finetune"] - grid[frozen]).dropna().groupby(level="backbone").agg(["mean", "size"])
        for backbone, (mean, size) in gain.iterrows():
            family = info.at[backbone, "family"]
            rows.append({"backbone": backbone, "backbone_name": info.at[backbone, "backbone_name"], "family": family,
                         "group": architecture_group(family), "method": info.at[backbone, "method"], "task": task,
                         "versus": frozen, "gain": float(mean), "n_datasets": int(size)})
    return pd.DataFrame(rows, columns=["backbone", "backbone_name", "family", "group", "method", "task", "versus", "gain", "n_datasets"])


def plot_finetune_gain(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """What fine-tuning adds over a frozen backbone, per backbone, CNNs against transformers (BoB Observation 5)."""
    data = finetune_gain(ranking)
    tasks = list(dict.fromkeys(data["task"]))
    with _style():
        fig = Figure(figsize=(3.6 * max(len(tasks), 1) + 2.2, 4.8), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(len(tasks), 1), sharey=True))
        fig.suptitle("Fine-tuned minus frozen z-score per backbone (BoB Observation 5)", fontsize=11)
        if data.empty:
            _note(axes[0], "No backbone has both a fine-tuned and a frozen (linear probe) result on one dataset.")
            axes[0].set_axis_off()
            return _save(fig, path_stem)
        for ax, task in zip(axes, tasks):
            panel = data[data["task"] == task]
            for position, group in enumerate(("CNN", "transformer")):
                members = panel[panel["group"] == group]
                jitter = np.linspace(-0.18, 0.18, len(members)) if len(members) > 1 else np.zeros(len(members))
                ax.scatter(position + jitter, members["gain"], c=[method_colour(m) for m in members["method"]],
                           marker="o", s=30, edgecolor="white", linewidth=0.4, zorder=3)
                if len(members):
                    ax.hlines(members["gain"].mean(), position - 0.3, position + 0.3, color="black", linewidth=1.5, zorder=4)
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xticks([0, 1], [f"CNN (n = {(panel.group == 'CNN').sum()})",
                                   f"transformer (n = {(panel.group == 'transformer').sum()})"])
            ax.set_xlim(-0.6, 1.6)
            ax.set_title(f"{task}: finetune − {panel['versus'].iloc[0]}")
        axes[0].set_ylabel("z(fine-tuned) − z(frozen), SD (bar: group mean)")
        _legend(axes[len(tasks) - 1], list(data["method"]))
        return _save(fig, path_stem)


#: The pretraining methods compared at matched data size (BoB Observation 3): self-supervised and
#: vision-language against supervised.
MATCHED_METHODS = ("supervised", "SSL", "vision-language")


def matched_data_comparison(ranking: Ranking) -> pd.DataFrame:
    """Per task and pretraining-data decade (``floor(log10(pretrain_size))``): each method's mean task score.

    Only decades holding supervised backbones and SSL or vision-language ones are kept: those are the
    comparisons at matched data scale.
    """
    info = ranking.overall.set_index("backbone")
    data = ranking.tasks.join(info[["method", "pretrain_size"]], on="backbone")
    data = data[data["method"].isin(MATCHED_METHODS) & (pd.to_numeric(data["pretrain_size"], errors="coerce") > 0)]
    data = data.assign(decade=np.floor(np.log10(data["pretrain_size"].astype(float))).astype(int))
    summary = (data.groupby(["task", "decade", "method"], as_index=False)
               .agg(mean_z=("z", "mean"), n_backbones=("z", "size"), backbones=("backbone", lambda b: ", ".join(sorted(b)))))
    methods = summary.groupby(["task", "decade"])["method"].agg(set)
    matched = methods[methods.map(lambda m: "supervised" in m and bool(m & {"SSL", "vision-language"}))].index
    keep = summary.set_index(["task", "decade"]).index.isin(matched)
    return summary[keep].reset_index(drop=True)


def plot_matched_data(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """SSL and vision-language against supervised pretraining at matched data size, per task (BoB Observation 3)."""
    data = matched_data_comparison(ranking)
    tasks = ordered_tasks(data["task"])
    with _style():
        fig = Figure(figsize=(3.4 * max(len(tasks), 1) + 2.2, 4.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(len(tasks), 1), sharey=True))
        fig.suptitle("Pretraining method at matched data size: mean task z-score per decade of pretraining images",
                     fontsize=11)
        if data.empty:
            _note(axes[0], "No decade of pretraining-set size holds both supervised and\n"
                           "SSL or vision-language backbones with scores: nothing to match.")
            axes[0].set_axis_off()
            return _save(fig, path_stem)
        width = 0.8 / len(MATCHED_METHODS)
        for ax, task in zip(axes, tasks):
            panel = data[data["task"] == task]
            decades = sorted(panel["decade"].unique())
            for k, method in enumerate(MATCHED_METHODS):
                rows = panel[panel["method"] == method].set_index("decade")
                xs = [i + (k - 1) * width for i, d in enumerate(decades) if d in rows.index]
                ys = [rows.at[d, "mean_z"] for d in decades if d in rows.index]
                bars = ax.bar(xs, ys, width=width, color=method_colour(method), label=method)
                for bar, d in zip(bars, [d for d in decades if d in rows.index]):
                    ax.annotate(f"n={rows.at[d, 'n_backbones']}", (bar.get_x() + width / 2, bar.get_height()),
                                ha="center", va="bottom" if bar.get_height() >= 0 else "top", fontsize=6)
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xticks(range(len(decades)), [f"$10^{{{d}}}$" for d in decades])
            ax.set_xlim(-0.6, len(decades) - 0.4)
            ax.set_xlabel("pretraining images (decade)")
            ax.set_title(task)
        axes[0].set_ylabel("mean task z-score (SD)")
        _legend(axes[len(tasks) - 1], list(MATCHED_METHODS))
        return _save(fig, path_stem)


def plot_published_retrieval(scores: pd.DataFrame, methods: dict[str, str], path_stem: str | os.PathLike,
                             metric: str = "MRR") -> list[Path]:
    """The published retrieval table itself (``bobench.retrieval.reference.published_scores``): backbones ×
    datasets, best mean z-score at the top, cells coloured by z within each dataset and annotated with the
    published value; row labels coloured by pretraining method (``methods``: BoB name → method)."""
    order = scores.drop_duplicates("bob_backbone").sort_values(["task_z", "bob_backbone"], ascending=[False, True])["bob_backbone"]
    columns = list(dict.fromkeys(scores["bob_dataset"]))
    z = scores.pivot(index="bob_backbone", columns="bob_dataset", values="z").reindex(index=order, columns=columns)
    value = scores.pivot(index="bob_backbone", columns="bob_dataset", values="published").reindex(index=order, columns=columns)
    with _style():
        fig = Figure(figsize=(2.6 + 0.95 * len(columns), 1.6 + 0.3 * len(order)), layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(f"Retrieval {metric} published by BoB's authors (May 2023): rows by mean z-score")
        sns.heatmap(z, ax=ax, cmap="RdBu_r", center=0, vmin=-HEATMAP_LIMIT, vmax=HEATMAP_LIMIT, annot=value, fmt=".2f",
                    annot_kws={"fontsize": 6}, linewidths=0.4, linecolor="white",
                    cbar_kws={"label": "z-score within the dataset (SD)"})
        ax.set_xlabel("dataset (BoB's name)")
        ax.set_ylabel("backbone (BoB's name)")
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        for label in ax.get_yticklabels():
            label.set_color(method_colour(methods.get(label.get_text(), "")))
        _legend(ax, sorted({m for m in methods.values() if m}))
        return _save(fig, path_stem)


def task_correlations(ranking: Ranking) -> pd.DataFrame:
    """Spearman's ρ between every two tasks' scores over the backbones scored on both (NaN below
    :data:`MIN_POINTS_FOR_RHO` backbones or with constant scores); long form, both orders and the diagonal."""
    scores = ranking.tasks.pivot(index="backbone", columns="task", values="z")
    tasks = ordered_tasks(scores.columns)
    rows = []
    for a in tasks:
        for b in tasks:
            pairs = scores[[a, b]].dropna() if a != b else scores[[a]].dropna().assign(_b=lambda df: df[a])
            x, y = pairs.iloc[:, 0], pairs.iloc[:, 1]
            defined = len(pairs) >= MIN_POINTS_FOR_RHO and x.nunique() > 1 and y.nunique() > 1
            rows.append({"task_a": a, "task_b": b, "n_backbones": len(pairs),
                         "spearman_rho": float(spearmanr(x, y).statistic) if defined else np.nan})
    return pd.DataFrame(rows, columns=["task_a", "task_b", "n_backbones", "spearman_rho"])


def plot_task_correlations(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """Task × task matrix of Spearman's ρ between task scores (BoB: the ranking is consistent across tasks)."""
    data = task_correlations(ranking)
    with _style():
        tasks = list(dict.fromkeys(data["task_a"]))
        fig = Figure(figsize=(2.6 + 0.9 * max(len(tasks), 2), 1.8 + 0.8 * max(len(tasks), 2)), layout="constrained")
        ax = fig.add_subplot()
        ax.set_title("Rank correlation between tasks (Spearman ρ of task z-scores)")
        if len(tasks) < 2:
            _note(ax, "Fewer than two tasks with scores: no correlation to show.")
            ax.set_axis_off()
            return _save(fig, path_stem)
        rho = data.pivot(index="task_a", columns="task_b", values="spearman_rho").reindex(index=tasks, columns=tasks)
        n = data.pivot(index="task_a", columns="task_b", values="n_backbones").reindex(index=tasks, columns=tasks)
        labels = np.where(rho.isna(), "n = " + n.astype(str), rho.map(lambda v: f"{v:.2f}") + "\nn = " + n.astype(str))
        sns.heatmap(rho, ax=ax, cmap="RdBu_r", vmin=-1, vmax=1, center=0, annot=labels, fmt="",
                    annot_kws={"fontsize": 7}, linewidths=0.4, linecolor="white", cbar_kws={"label": "Spearman ρ"})
        ax.set_xlabel("task")
        ax.set_ylabel("task")
        fig.text(0.01, 0.0, f"n: backbones scored on both tasks; blank: n < {MIN_POINTS_FOR_RHO} or constant scores",
                 fontsize=7, va="top")
        return _save(fig, path_stem)


def calibration_data(results: pd.DataFrame) -> pd.DataFrame:
    """Top-1, ECE and NLL of every classifier on every test set that has all three (the fine-tuned and
    frozen-backbone classifiers, in distribution and out of it): one row per backbone × test set."""
    keys = ["backbone", "backbone_name", "method", "family", "task", "dataset", "protocol"]
    rows = results[results["metric"].isin(["top1", "ece", "nll"])
                   & results["task"].isin(["classification", "ood_classification"])]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    if not {"top1", "ece", "nll"} <= set(wide.columns):
        return pd.DataFrame(columns=[*keys, "top1", "ece", "nll"])
    return wide.dropna(subset=["top1", "ece", "nll"]).reset_index(drop=True)


def plot_calibration(results: pd.DataFrame, path_stem: str | os.PathLike) -> list[Path]:
    """ECE and NLL against top-1 for every trained classifier and test set (BoB Observation 9)."""
    data = calibration_data(results)
    with _style():
        fig = Figure(figsize=(10.0, 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
        fig.suptitle("Calibration and test likelihood against accuracy (trained classifiers; hollow: OOD test sets)")
        for ax, metric, label in ((axes[0], "ece", "expected calibration error (15 bins)"),
                                  (axes[1], "nll", "negative log-likelihood (nats)")):
            if data.empty:
                _note(ax, "No classifier with top-1, ECE and NLL yet\n(tasks finetune / frozen_probe, and ood).")
                ax.set_axis_off()
                continue
            for row in data.itertuples():
                colour = method_colour(row.method)
                ood = row.task == "ood_classification"
                ax.scatter(100 * row.top1, getattr(row, metric), marker=family_marker(row.family), s=36,
                           facecolor="none" if ood else colour, edgecolor=colour, linewidth=1.0, zorder=3)
            ax.set_xlabel("top-1 accuracy (%)")
            ax.set_ylabel(label)
            ax.set_title(f"{_rho_text(data['top1'], data[metric])}; {data['dataset'].nunique()} test sets pooled",
                         fontsize=9)
        if not data.empty:
            _legend(axes[1], list(data["method"]), list(data["family"]), sized=False)
        return _save(fig, path_stem)


def _warn_if_stale(results: pd.DataFrame, ranking: Ranking) -> None:
    """Figures are only meaningful if the ranking was computed from these results."""
    in_results = set(results["backbone"])
    in_ranking = set(ranking.overall["backbone"])
    if in_results != in_ranking:
        log.warning(
            "ranking and results disagree on backbones (stale ranking?): "
            "only in results: %s; only in ranking: %s",
            sorted(in_results - in_ranking) or "-", sorted(in_ranking - in_results) or "-",
        )


def with_score_intervals(ranking: Ranking, intervals: pd.DataFrame) -> Ranking:
    """``ranking`` with its overall scores' bootstrap intervals (``ranking_intervals.csv``) as the columns
    ``score_ci_low`` / ``score_ci_high``: the ranking figures' error bars."""
    overall = intervals[intervals["task"] == ALL_TASKS].set_index("backbone")
    ranking.overall["score_ci_low"] = ranking.overall["backbone"].map(overall["ci_low"])
    ranking.overall["score_ci_high"] = ranking.overall["backbone"].map(overall["ci_high"])
    return ranking


def draw_all(results: pd.DataFrame, ranking: Ranking, out_dir: str | os.PathLike) -> list[Path]:
    """Draw every figure of :data:`FIGURES` into ``out_dir`` (PNG + PDF each); returns the written paths."""
    _warn_if_stale(results, ranking)
    paths: list[Path] = []
    for name, plot in FIGURES.items():
        paths += plot(ranking, Path(out_dir) / name)
        log.info("drew %s", name)
    for name, plot in RESULTS_FIGURES.items():
        paths += plot(results, Path(out_dir) / name)
        log.info("drew %s", name)
    return paths


# Fixed output names (stems) used by the workflow; each is written as .png and .pdf.
FIGURES = {
    "overall_ranking": plot_overall_ranking,
    "small_backbones": plot_small_backbones,
    "zscore_heatmap": plot_zscore_heatmap,
    "task_scatter": plot_task_scatter,
    "zscore_vs_scale": plot_zscore_vs_scale,
    "task_correlations": plot_task_correlations,
    "figure1": plot_figure1,
    "finetune_gain": plot_finetune_gain,
    "matched_data": plot_matched_data,
}
# Figures of metrics the ranking does not use, drawn from the results table itself.
RESULTS_FIGURES = {
    "calibration": plot_calibration,
}
