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
import contextvars
import logging
import os
from pathlib import Path
from typing import Iterator

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox, offset_copy
from scipy.stats import spearmanr

from bobench import names
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


#: A line drawn across the top of every figure while set: a rehearsal's figures say they are layout checks.
_BANNER: contextvars.ContextVar[str | None] = contextvars.ContextVar("figure_banner", default=None)
STANDIN_BANNER = "STAND-IN LAYOUT CHECK (rehearsal): stand-in data and weights, the numbers mean nothing"


def _save(fig: Figure, path_stem: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf``, each atomically."""
    banner = _BANNER.get()
    if banner:
        fig.text(0.5, 1.0, banner, ha="center", va="bottom", fontsize=10, fontweight="bold", color="#B22222",
                 transform=fig.transFigure)
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


def _canvas_figure(**kwargs) -> Figure:
    """A :class:`Figure` on an Agg canvas, so that text can be measured before it is saved."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _text_size_in(texts: list[str], fontsize: float, **text_kwargs) -> tuple[float, float]:
    """Width and height (inches) of the largest of ``texts`` at ``fontsize``: what a layout must make room for."""
    if not texts:
        return 0.0, 0.0
    fig = _canvas_figure()
    renderer = fig.canvas.get_renderer()
    widths, heights = [], []
    for text in texts:
        box = fig.text(0, 0, text, fontsize=fontsize, **text_kwargs).get_window_extent(renderer)
        widths.append(box.width)
        heights.append(box.height)
    return max(widths) / fig.dpi, max(heights) / fig.dpi


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
    return _ranking_bars(ranking.overall, title, f"No backbone has a valid z-score\n{NEED_POOL}.", path_stem,
                         label=lambda row: f"{_rank_text(row.rank)} {row.backbone_name}")


def _rank_text(rank) -> str:
    return f"{int(rank)}." if rank is not None and pd.notna(rank) else "–"


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
                         label=lambda row: f"{row.rank_among_small}. {row.backbone_name} ({row.n_params / 1e6:.1f}M)")


#: Ranking bars: height per bar (inches) and tick-label size; the figure grows with the number of bars.
BAR_HEIGHT = 0.26
BAR_FONT = 8.0


def _ranking_bars(overall: pd.DataFrame, title: str, empty_note: str, path_stem: str | os.PathLike,
                  label=lambda row: row.backbone_name) -> list[Path]:
    """Bars of ``overall``'s scores in its order (best first), with bootstrap error bars where given.

    One row per backbone however many there are (the figure grows; names are never cut), with a
    dotted guide from each name across the plot so that a long list stays easy to follow."""
    data = overall.dropna(subset=["score"])
    n_unscored = len(overall) - len(data)
    labels = [label(row) for row in data.itertuples()]
    label_w, _ = _text_size_in(labels, BAR_FONT)
    with _style():
        fig = _canvas_figure(figsize=(label_w + 7.0, 1.6 + BAR_HEIGHT * max(len(data), 6)), layout="constrained")
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
                y, data["score"], height=0.72, xerr=xerr, color=[method_colour(m) for m in data["method"]],
                edgecolor="none", error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"}, zorder=3,
            )
            ax.axvline(0, color="black", linewidth=0.8, zorder=4)
            ax.set_yticks(y, labels, fontsize=BAR_FONT)
            ax.set_ylim(-0.6, len(data) - 0.4)
            ax.set_axisbelow(True)
            if len(data) > 8:
                ax.grid(axis="y", linestyle=(0, (1, 3)), linewidth=0.6, color="#AAAAAA")
            else:
                ax.grid(axis="y", visible=False)
            ax.tick_params(axis="y", length=0, pad=3)
            ax.set_xlabel("overall score (mean z-score, SD above the pool mean)")
            ax.set_ylabel("backbone (best first)")
            _legend(ax, list(data["method"]))
            if xerr is not None:
                title += "\nerror bars: bootstrap interval of the score"
            if n_unscored:
                title += f"\n{n_unscored} backbone(s) without a valid z-score not shown"
        ax.set_title(title)
        return _save(fig, path_stem)


HEATMAP_LIMIT = 3.0
#: Protocol order inside a task's block of columns (others follow alphabetically).
PROTOCOL_ORDER = ["linear_probe", "knn", "frozen_probe", "frozen", "finetune"]
#: Heatmap cells get their z printed while the grid stays this small (and wide enough cells fit the number).
ANNOTATE_MAX_CELLS = 600
ANNOTATE_MAX_COLUMNS = 40
#: Bounds of the heatmap grid itself (inches): the figure grows with the counts, within these.
HEATMAP_MAX_WIDTH = 30.0
MIN_TICK_FONT = 5.0


def _ordered_protocols(protocols) -> list[str]:
    present = set(protocols)
    return [p for p in PROTOCOL_ORDER if p in present] + sorted(present.difference(PROTOCOL_ORDER))


def heatmap_columns(settings: pd.DataFrame) -> pd.DataFrame:
    """The heatmap's columns in drawing order: grouped by task (BoB's order), then protocol, then dataset.

    Columns ``task``, ``dataset``, ``protocol`` and ``label``: the dataset, with the protocol added where
    the task has more than one (the task, and a task's only protocol, head the column group instead).
    """
    keys = settings[["task", "dataset", "protocol"]].astype(str).drop_duplicates()
    rows = []
    for task in ordered_tasks(keys["task"]):
        block = keys[keys["task"] == task]
        protocols = _ordered_protocols(block["protocol"])
        for protocol in protocols:
            for dataset in sorted(block.loc[block["protocol"] == protocol, "dataset"]):
                label = dataset if len(protocols) == 1 else f"{dataset} · {protocol.replace('_', ' ')}"
                rows.append({"task": task, "dataset": dataset, "protocol": protocol, "label": label})
    return pd.DataFrame(rows, columns=["task", "dataset", "protocol", "label"])


def _task_header(task: str, protocols: list[str]) -> str:
    name = task.replace("_", " ")
    return f"{name} · {protocols[0].replace('_', ' ')}" if len(protocols) == 1 else name


def _backbone_labels(overall: pd.DataFrame, backbones) -> list[str]:
    """``"<rank>. <display name>"`` (unranked backbones: ``"–"``), in the order of ``backbones``."""
    info = overall.set_index("backbone")
    return [f"{_rank_text(info.at[b, 'rank'] if 'rank' in info.columns else None)} {info.at[b, 'backbone_name']}"
            for b in backbones]


def _place_headers(centres: list[float], widths: list[float], gap: float, max_levels: int = 8) -> list[tuple[int, float]]:
    """(level, left edge) of each group header, all in one unit; level 0 sits on the brackets.

    A header covers its group's centre (it may slide sideways off-centre to make room); one above level 0
    hangs from a vertical leader line at that centre. No two headers on a level overlap, no leader crosses a
    header below its own, and no header covers the leader of one above it. Greedy, left to right: preferably
    a place that covers no other group's centre (where a later header's leader may need to pass), then the
    lowest level, then nearest to centred.
    """
    placed: list[tuple[int, float, float, float]] = []  # level, left, right, centre
    result = []
    for index, (centre, width) in enumerate(zip(centres, widths)):
        margin = min(width / 2, gap)
        lo, hi = centre - width + margin, centre - margin  # left edges that keep the centre covered
        others = [c for j, c in enumerate(centres) if j != index]
        choice = None
        for strict in (True, False):
            for level in range(max_levels):
                if level and any(l < level and a - gap / 2 < centre < b + gap / 2 for l, a, b, _ in placed):
                    continue  # this leader would cross a header below
                blocked = [(a - gap - width, b + gap) for l, a, b, _ in placed if l == level]
                leaders = others if strict else [c for l, _, _, c in placed if l > level]
                blocked += [(c - gap - width, c + gap) for c in leaders]
                candidates = [centre - width / 2, *(edge for interval in blocked for edge in interval)]
                fits = [x for x in candidates if lo <= x <= hi and not any(a < x < b for a, b in blocked)]
                if fits:
                    choice = (level, min(fits, key=lambda x: abs(x - (centre - width / 2))))
                    break
            if choice:
                break
        if choice is None:  # nowhere clean: the lowest free level, centred
            level = 0
            while any(l == level and a - gap < centre + width / 2 and centre - width / 2 < b + gap for l, a, b, _ in placed):
                level += 1
            choice = (level, centre - width / 2)
        placed.append((choice[0], choice[1], choice[1] + width, centre))
        result.append(choice)
    return result


def plot_zscore_heatmap(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """Backbone x setting grid of z, backbones in overall-rank order (best at the top), settings grouped
    by task under a header (separators between tasks and, thinner, between a task's protocols).

    Grey cells: not evaluated, or z undefined. Each cell's z is printed while the grid is small enough to
    read the numbers; beyond that the colours carry it (the exact values are in ``ranking_settings.csv``).
    The figure grows with the number of backbones and settings, within bounds: past
    :data:`HEATMAP_MAX_WIDTH` inches of columns only 1 column in k is labelled.
    """
    columns = heatmap_columns(ranking.settings)
    settings = ranking.settings.astype({"task": str, "dataset": str, "protocol": str})
    grid = settings.pivot_table(index="backbone", columns=["task", "dataset", "protocol"], values="z",
                                aggfunc="first", dropna=False)
    grid = grid.reindex(index=[b for b in ranking.overall["backbone"] if b in grid.index],
                        columns=pd.MultiIndex.from_frame(columns[["task", "dataset", "protocol"]]))
    n_rows, n_cols = max(grid.shape[0], 1), max(grid.shape[1], 1)
    annotate = n_rows * n_cols <= ANNOTATE_MAX_CELLS and n_cols <= ANNOTATE_MAX_COLUMNS
    # Cell size (inches): room for a printed number, else as compact as a readable tick label allows.
    cell_h = 0.3 if annotate else min(0.22, max(0.12, 10.0 / n_rows))
    cell_w = 0.44 if annotate else min(0.26, max(20.0 / n_cols, min(0.09, HEATMAP_MAX_WIDTH / n_cols)))
    y_font = min(8.0, cell_h * 72 * 0.7)
    x_font = max(MIN_TICK_FONT, min(7.5, cell_w * 72 * 0.75))
    # Past the width bound the columns are too thin for a label each: label every k-th one.
    step = max(1, int(np.ceil(x_font * 1.25 / (cell_w * 72))))
    row_labels = _backbone_labels(ranking.overall, grid.index)
    col_labels = [label if i % step == 0 else "" for i, label in enumerate(columns["label"])]
    label_w, _ = _text_size_in(row_labels, y_font)
    label_h, _ = _text_size_in([c for c in col_labels if c], x_font)  # rotated 90°: its width is its height
    width = label_w + n_cols * cell_w + 2.0
    height = label_h + n_rows * cell_h + 2.0
    title = "z-score per backbone and setting (SD above the setting's pool mean)"
    with _style():
        fig = _canvas_figure(figsize=(max(width, 6.0), max(height, 3.0)), layout="constrained")
        ax = fig.add_subplot()
        if grid.empty or grid.isna().all().all():
            _note(ax, f"No defined z-score to show\n{NEED_POOL}.")
            ax.set_axis_off()
            ax.set_title(title)
            return _save(fig, path_stem)
        # Colours saturate at ±3 SD so that one extreme baseline does not wash out
        # the differences between the rest; the printed numbers / the CSV keep the exact values.
        limit = min(float(np.nanmax(np.abs(grid.to_numpy()))), HEATMAP_LIMIT)
        dense = cell_w * 72 < 5
        sns.heatmap(
            grid.to_numpy(dtype=float), ax=ax, cmap="RdBu_r", center=0, vmin=-limit, vmax=limit,
            annot=annotate, fmt=".2f", annot_kws={"fontsize": 6}, xticklabels=col_labels, yticklabels=row_labels,
            linewidths=0 if dense else (0.4 if annotate else 0.25), linecolor="white",
            cbar_kws={"label": "z-score (SD), saturating at ±3", "extend": "both", "shrink": min(1.0, 6.0 / (n_rows * cell_h))},
        )
        ax.set_facecolor("#D9D9D9")  # missing cells: grey, not the white of z = 0
        ax.grid(False)
        ax.tick_params(axis="x", labelrotation=90, labelsize=x_font, length=0, pad=2)
        ax.tick_params(axis="y", labelrotation=0, labelsize=y_font, length=0, pad=2)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("center")
        # Separators: thick between tasks, thin between the protocols of one task.
        edges = columns[["task", "protocol"]].ne(columns[["task", "protocol"]].shift()).to_numpy()
        for i in range(1, len(columns)):
            if edges[i, 0]:
                ax.axvline(i, color="black", linewidth=1.4)
            elif edges[i, 1]:
                ax.axvline(i, color="black", linewidth=0.6, linestyle=(0, (3, 2)))
        xlabel = "setting: dataset (· protocol), grouped by task"
        if step > 1:
            xlabel += f"; 1 column in {step} labelled"
        xlabel += "\ngrey cell: backbone not evaluated, or z undefined for the setting"
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("backbone (best first)", fontsize=9)
        _task_headers(fig, ax, columns, title)
        return _save(fig, path_stem)


HEADER_FONT = 8.0


def _task_headers(fig: Figure, ax: Axes, columns: pd.DataFrame, title: str) -> None:
    """Task headers above the heatmap: a bracket over each task's columns with its name centred above, raised
    a level (leader line down to the bracket) where it would overlap a neighbour's; then the title above them.

    Fitted to the laid-out grid: the layout is computed first, the headers are kept out of it (they never
    move the grid sideways) and the title's pad makes room for them above.
    """
    ax.set_title(title)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    column_px = ax.get_window_extent(renderer).width / max(len(columns), 1)
    tasks = list(dict.fromkeys(columns["task"]))
    spans = [(float(np.flatnonzero(columns["task"].to_numpy() == t).min()),
              float(np.flatnonzero(columns["task"].to_numpy() == t).max() + 1)) for t in tasks]
    texts = []
    for task in tasks:
        text = ax.text(0, 0, _task_header(task, _ordered_protocols(columns.loc[columns["task"] == task, "protocol"])),
                       fontsize=HEADER_FONT, fontweight="bold")
        texts.append((text.get_text(), text.get_window_extent(renderer)))
        text.remove()
    widths = [box.width for _, box in texts]
    places = _place_headers([(a + b) / 2 * column_px for a, b in spans], widths, gap=8 * px)
    line_pt = max(box.height for _, box in texts) / px + 3
    ax.set_title(title, pad=12 + (max(level for level, _ in places) + 1) * line_pt)
    bracket = offset_copy(ax.get_xaxis_transform(), fig=fig, y=3, units="points")
    for (start, end), (header, _), width, (level, left) in zip(spans, texts, widths, places):
        centre = (start + end) / 2 * column_px
        line = ax.add_line(Line2D([start + 0.12, end - 0.12], [1, 1], transform=bracket, color="black",
                                  linewidth=1.2, clip_on=False, solid_capstyle="butt"))
        note = ax.annotate(header, xy=((start + end) / 2, 1), xycoords=("data", "axes fraction"),
                           xytext=((left + width / 2 - centre) / px, 6 + level * line_pt), textcoords="offset points",
                           ha="center", va="bottom", fontsize=HEADER_FONT, fontweight="bold", annotation_clip=False,
                           arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3,
                                       "relpos": ((centre - left) / width, 0)} if level else None)
        line.set_in_layout(False)
        note.set_in_layout(False)


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


#: Scatter point names: every point is named up to this many points; beyond, only the best and worst few.
NAME_ALL_UP_TO = 12
NAME_BEST, NAME_WORST = 6, 3
NAME_FONT = 7.0
# Label offsets tried around a point, nearest first (points), and directions (right first: reading order).
_NAME_RADII = (4, 9, 15, 23, 33, 45, 60, 80, 105)
_NAME_DIRECTIONS = ((1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1))


def _points_to_name(priority: np.ndarray) -> list[int]:
    """Which points get a name (indices, most important first): all of a few, else the best and worst x + y."""
    order = list(np.argsort(-priority, kind="stable"))
    return order if len(order) <= NAME_ALL_UP_TO else order[:NAME_BEST] + order[::-1][:NAME_WORST]


def _marker_size(n_params: pd.Series, largest: float, n_points: int) -> np.ndarray:
    """Marker area (pt²) ∝ parameters; smaller overall when many points share the panel."""
    top = 280 if n_points <= NAME_ALL_UP_TO else 150
    return 16 + top * n_params.to_numpy(float) / largest


def _quiet_corner(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> str:
    """The axes corner whose text-box-sized region holds the fewest points (upper left on ties)."""
    frac = ax.transAxes.inverted().transform(ax.transData.transform(np.column_stack([xs, ys])))
    regions = {"upper left": (frac[:, 0] < 0.5) & (frac[:, 1] > 0.84), "upper right": (frac[:, 0] > 0.5) & (frac[:, 1] > 0.84),
               "lower left": (frac[:, 0] < 0.5) & (frac[:, 1] < 0.16), "lower right": (frac[:, 0] > 0.5) & (frac[:, 1] < 0.16)}
    return min(regions, key=lambda corner: int(regions[corner].sum()))


def _name_points(fig: Figure, panels: list[tuple[Axes, pd.DataFrame]]) -> None:
    """Name the chosen points of each scatter panel without covering a point, a name or the panel's text.

    ``panels``: (axes, points drawn there, with columns x, y, size (pt²) and backbone_name). Runs after
    everything else is drawn: the layout is computed once and frozen, so that the display positions the
    names are fitted to are the ones saved. Each name tries offsets around its point, nearest first, and is
    tied to it by a thin line when set apart; a name that fits nowhere is left out and counted in the note.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # freeze the positions the names are fitted to
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    for ax, data in panels:
        xs, ys = data["x"].to_numpy(float), data["y"].to_numpy(float)
        centres = ax.transData.transform(np.column_stack([xs, ys]))
        radii = np.sqrt(data["size"].to_numpy(float)) / 2 * px + 1
        taken = [Bbox.from_extents(cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centres, radii)]
        texts = [t.get_window_extent(renderer) for t in ax.texts]  # names and notes: no leader line may cross them
        lines: list[tuple] = []  # leader lines drawn so far: no two cross
        taken += texts
        frame = ax.get_window_extent(renderer).padded(-2)
        chosen = _points_to_name(xs + ys)
        left_out = 0
        for i in chosen:
            label = str(data["backbone_name"].iloc[i])
            probe = ax.text(0, 0, label, fontsize=NAME_FONT)
            box = probe.get_window_extent(renderer)
            probe.remove()
            w, h = box.width, box.height
            spot = None
            for radius in _NAME_RADII:
                for dx, dy in _NAME_DIRECTIONS:
                    gap = radius * px + radii[i]
                    ax_, ay_ = centres[i][0] + dx * gap, centres[i][1] + dy * gap * 0.7
                    x0 = ax_ if dx > 0 else (ax_ - w if dx < 0 else ax_ - w / 2)
                    y0 = ay_ if dy > 0 else (ay_ - h if dy < 0 else ay_ - h / 2)
                    candidate = Bbox.from_bounds(x0, y0, w, h)
                    inside = frame.x0 <= candidate.x0 and candidate.x1 <= frame.x1 and frame.y0 <= candidate.y0 and candidate.y1 <= frame.y1
                    if not inside or any(candidate.overlaps(t) for t in taken):
                        continue
                    # Right beside its point a name needs no line, if no other point is as near; set apart or off
                    # a corner it is tied to its point by a line, and keeps clear of every other point.
                    tied = radius > _NAME_RADII[0] or bool(dx and dy)
                    if _nearest_other(candidate, centres, radii, i) < (4 * px if tied else _edge(candidate, centres[i], radii[i]) + 2 * px):
                        continue
                    leader = np.linspace(centres[i], (ax_, ay_), 12)[1:] if tied else np.empty((0, 2))
                    crossing = tied and any(_segments_cross(centres[i], (ax_, ay_), a, b) for a, b in lines)
                    if not crossing and not any(t.contains(*p) for t in texts for p in leader):
                        spot = (candidate, dx, dy, tied, leader)
                        break
                if spot:
                    break
            if spot is None:
                left_out += 1
                continue
            candidate, dx, dy, tied, leader = spot
            taken.append(candidate)
            texts.append(candidate)
            taken += [Bbox.from_bounds(x - 1.5, y - 1.5, 3, 3) for x, y in leader]  # later names keep off the line
            if tied:
                lines.append((centres[i], leader[-1]))
            offset = ((candidate.x0 if dx > 0 else candidate.x1 if dx < 0 else candidate.x0 + w / 2) - centres[i][0],
                      (candidate.y0 if dy > 0 else candidate.y1 if dy < 0 else candidate.y0 + h / 2) - centres[i][1])
            ax.annotate(label, (xs[i], ys[i]), xytext=(offset[0] / px, offset[1] / px), textcoords="offset points",
                        fontsize=NAME_FONT, zorder=5, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                        va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                        arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.5, "shrinkA": 1,
                                    "relpos": ((1 - dx) / 2, (1 - dy) / 2),  # from the anchor the line was fitted to
                                    "shrinkB": radii[i] / px} if tied else None)
        if left_out:  # said under the axes, where it covers nothing
            ax.set_xlabel(ax.get_xlabel() + f"\n({left_out} of the names left out for lack of room)")


def _segments_cross(p1, p2, q1, q2) -> bool:
    """Whether segments p1–p2 and q1–q2 cross (proper intersection; touching ends do not count)."""
    def side(a, b, c) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0


def _edge(box: Bbox, centre: np.ndarray, radius: float) -> float:
    """Distance from ``box`` to a marker's edge (display units; negative when they overlap)."""
    return float(np.hypot(max(box.x0 - centre[0], 0, centre[0] - box.x1), max(box.y0 - centre[1], 0, centre[1] - box.y1)) - radius)


def _nearest_other(box: Bbox, centres: np.ndarray, radii: np.ndarray, own: int) -> float:
    """Distance from ``box`` to the nearest marker edge other than point ``own``'s (inf when there is none)."""
    return min((_edge(box, c, r) for j, (c, r) in enumerate(zip(centres, radii)) if j != own), default=np.inf)


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
        fig = _canvas_figure(figsize=(8.0, 6.0), layout="constrained")
        ax = fig.add_subplot()
        title = f"{y_name} vs {x_name} z-scores" if x_name else "Task z-score comparison"
        if note:
            title += f"\n({note})"
        ax.set_title(title)
        data = _scatter_panel(ax, pairs, x_name, y_name, info, empty_note=None if x_name else note.capitalize() + ".")
        if not data.empty:
            _legend(ax, list(data["method"]), list(data["family"]))
            _name_points(fig, [(ax, data)])
        return _save(fig, path_stem)


def _scatter_panel(ax: Axes, pairs: pd.DataFrame, x_name: str, y_name: str, info: pd.DataFrame,
                   empty_note: str | None = None) -> pd.DataFrame:
    """One z-score scatter (x, y per backbone) with sizes, colours and ρ; returns the points drawn
    (with their marker ``size``), to be named by :func:`_name_points` once the figure is laid out."""
    data = pairs.dropna().join(info[["backbone_name", "family", "method", "n_params"]])
    if data.empty:
        _note(ax, empty_note or f"No backbone has z-scores on both {x_name} and {y_name}.")
        ax.set_axis_off()
        return data
    largest = max(float(info["n_params"].max()), 1.0)
    data = data.assign(size=_marker_size(data["n_params"], largest, len(data)))
    for (method, family), group in data.groupby(["method", "family"], sort=True):
        ax.scatter(group["x"], group["y"], s=group["size"], color=method_colour(method), marker=family_marker(family),
                   edgecolor="white", linewidth=0.5, alpha=0.85, zorder=3)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    xlabel = f"{x_name} z-score (SD)"
    if len(data) > NAME_ALL_UP_TO:
        xlabel += f"\n(named: the {NAME_BEST} best and {NAME_WORST} worst by the sum of both z-scores)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{y_name} z-score (SD)")
    ax.margins(x=0.12 if len(data) > NAME_ALL_UP_TO else 0.3, y=0.1)  # room for the names inside the axes
    corner = _quiet_corner(ax, data["x"].to_numpy(float), data["y"].to_numpy(float))
    ax.text(0.02 if "left" in corner else 0.98, 0.98 if "upper" in corner else 0.02, _rho_text(data["x"], data["y"]),
            transform=ax.transAxes, va="top" if "upper" in corner else "bottom", ha="left" if "left" in corner else "right",
            fontsize=9, bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85}, zorder=6)
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
        fig = _canvas_figure(figsize=(14, 6.0), layout="constrained")
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
            _name_points(fig, [(ax, d) for ax, d in zip(axes, drawn) if not d.empty])
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
            stats = []
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
                else:
                    text += ": random init only, no fit"
                fitted = fit is not None and np.isfinite(fit["spearman_rho"])
                stats.append(Line2D([], [], marker=family_marker(family), color=colour, markersize=6, linewidth=1.2,
                                    linestyle="-" if fitted else "", label=text))
                handles[family] = Line2D([], [], marker=family_marker(family), linestyle="", markersize=7,
                                         color=colour, label=family)
            ax.set_xscale("log")
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xlabel(label)
            # ρ per family in a box where it covers the fewest points ("best"), kept when a second legend is added.
            ax.add_artist(ax.legend(handles=stats, loc="best", fontsize=7.5, title="per family (pretrained)",
                                    title_fontsize=8, framealpha=0.9))
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


MATCHED_PANELS_PER_ROW = 3


def plot_matched_data(ranking: Ranking, path_stem: str | os.PathLike) -> list[Path]:
    """SSL and vision-language against supervised pretraining at matched data size, per task (BoB Observation 3)."""
    data = matched_data_comparison(ranking)
    tasks = ordered_tasks(data["task"])
    with _style():
        # Panels wrap after MATCHED_PANELS_PER_ROW, so that six tasks do not make one strip too wide to read.
        n_cols = min(max(len(tasks), 1), MATCHED_PANELS_PER_ROW)
        n_rows = -(-max(len(tasks), 1) // n_cols)
        fig = Figure(figsize=(3.6 * n_cols + 2.2, 3.6 * n_rows + 0.8), layout="constrained")
        grid = fig.subplots(n_rows, n_cols, sharey=True, squeeze=False)
        for ax in grid.ravel()[max(len(tasks), 1):]:
            ax.set_axis_off()
        axes = grid.ravel()
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
                                ha="center", va="bottom" if bar.get_height() >= 0 else "top", fontsize=7)
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xticks(range(len(decades)), [f"$10^{{{d}}}$" for d in decades])
            ax.set_xlim(-0.6, len(decades) - 0.4)
            ax.set_xlabel("pretraining images (decade)")
            ax.set_title(task)
        for row in grid:
            row[0].set_ylabel("mean task z-score (SD)")
        _legend(grid[0][n_cols - 1], list(MATCHED_METHODS))
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
            pairs = scores[[a, b]].dropna() if a != b else scores[[a]].dropna().assign(_b=lambda df: df[a])  # noqa: B023 (called at once)
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
        names = [t.replace("_", " ") for t in tasks]
        name_w, _ = _text_size_in(names, 8)
        cell = 0.8 if len(tasks) <= 10 else max(0.45, 8.0 / len(tasks))  # the figure grows with the tasks, within bounds
        fig = Figure(figsize=(name_w + 2.4 + cell * max(len(tasks), 2), name_w + 1.6 + cell * max(len(tasks), 2)),
                     layout="constrained")
        ax = fig.add_subplot()
        ax.set_title("Rank correlation between tasks (Spearman ρ of task z-scores)")
        if len(tasks) < 2:
            _note(ax, "Fewer than two tasks with scores: no correlation to show.")
            ax.set_axis_off()
            return _save(fig, path_stem)
        rho = data.pivot(index="task_a", columns="task_b", values="spearman_rho").reindex(index=tasks, columns=tasks)
        n = data.pivot(index="task_a", columns="task_b", values="n_backbones").reindex(index=tasks, columns=tasks)
        labels = np.where(rho.isna(), "n = " + n.astype(str), rho.map(lambda v: f"{v:.2f}") + "\nn = " + n.astype(str))
        sns.heatmap(rho.set_axis(names, axis=0).set_axis(names, axis=1), ax=ax, cmap="RdBu_r", vmin=-1, vmax=1,
                    center=0, annot=labels, fmt="", annot_kws={"fontsize": 7 if cell >= 0.6 else 5.5}, linewidths=0.4,
                    linecolor="white", cbar_kws={"label": "Spearman ρ", "shrink": min(1.0, 5.0 / (cell * len(tasks)))})
        ax.set_facecolor("#D9D9D9")  # undefined ρ: grey, not the white of ρ = 0
        ax.grid(False)
        ax.tick_params(axis="x", labelrotation=90, labelsize=8, length=0)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8, length=0)
        ax.set_xlabel(f"task\n(n: backbones scored on both tasks; grey: n < {MIN_POINTS_FOR_RHO} or constant scores)",
                      fontsize=9)
        ax.set_ylabel("task")
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


#: Calibration markers keep full size up to this many points, then shrink (area ∝ 1/count, within a floor).
CALIBRATION_FULL_SIZE_UP_TO = 60


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
            # Hundreds of classifiers × test sets at paper scale: smaller, translucent markers as the count grows.
            many = len(data) > CALIBRATION_FULL_SIZE_UP_TO
            size = 36 * min(1.0, np.sqrt(CALIBRATION_FULL_SIZE_UP_TO / len(data))) if many else 36
            for (ood, method, family), group in data.groupby([data["task"] == "ood_classification", "method", "family"]):
                colour = method_colour(method)
                ax.scatter(100 * group["top1"], group[metric], marker=family_marker(family), s=max(size, 10),
                           facecolor="none" if ood else colour, edgecolor=colour, linewidth=0.7 if many else 1.0,
                           alpha=0.75 if many else 1.0, zorder=4 if ood else 3)
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
    """Draw every figure of :data:`FIGURES` into ``out_dir`` (PNG + PDF each); returns the written paths.
    A table with stand-in rows (a rehearsal's) gets every figure bannered as a layout check."""
    _warn_if_stale(results, ranking)
    paths: list[Path] = []
    standin = "standin" in results and results["standin"].astype("string").fillna("").str.len().gt(0).any()
    token = _BANNER.set(STANDIN_BANNER if standin else None)
    try:
        for name, plot in FIGURES.items():
            paths += plot(ranking, Path(out_dir) / name)
            log.info("drew %s", name)
        for name, plot in RESULTS_FIGURES.items():
            paths += plot(results, Path(out_dir) / name)
            log.info("drew %s", name)
    finally:
        _BANNER.reset(token)
    return paths


# The plotting function of each figure the workflow draws (names: bobench.names).
FIGURES = dict(zip(names.RANKING_FIGURES, (
    plot_overall_ranking, plot_small_backbones, plot_zscore_heatmap, plot_task_scatter, plot_zscore_vs_scale,
    plot_task_correlations, plot_figure1, plot_finetune_gain, plot_matched_data,
), strict=True))
RESULTS_FIGURES = dict(zip(names.RESULTS_FIGURES, (plot_calibration,), strict=True))
