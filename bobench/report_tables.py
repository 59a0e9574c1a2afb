"""The tables of the Snakemake report as self-contained HTML pages.

Snakemake's report shows an HTML result in a frame and offers other files
only for download, so the leaderboard, BoB's Tables 1 and 2 and the results
table are rendered here as pages with inline style (no network, no external
script): coloured where colour carries meaning (the pretraining method's
colour of every figure, z-scores on the figures' red-blue scale), and with a
filter box on the long ones. Every number comes from the tables the ranking
and collect rules wrote; nothing is recomputed.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bobench.figures import method_colour
from bobench.io import atomic_path
from bobench.ranking import ALL_TASKS, RANDOM_METHOD, ordered_tasks, primary_rows

Z_LIMIT = 2.5  # z-score colours saturate here, as the heatmap's do at ±3

_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
small { color: #666; }
p.note { color: #555; max-width: 70em; margin: .2em 0 1em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .6em; border-bottom: 1px solid #e3e3e3; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num, th.num { text-align: right; }
span.method { display: inline-block; width: .8em; height: .8em; border-radius: 50%; margin-right: .4em;
              vertical-align: baseline; }
tr.random td { color: #777; }
input#filter { margin: 0 0 .8em; padding: .3em .5em; width: 24em; font: inherit; }
"""

# Hides the rows that do not contain every word typed in the box.
_FILTER_SCRIPT = """
<script>
document.getElementById("filter").addEventListener("input", function () {
  const words = this.value.toLowerCase().split(/\\s+/).filter(Boolean);
  for (const row of document.querySelectorAll("tbody tr")) {
    const text = row.textContent.toLowerCase();
    row.style.display = words.every(w => text.includes(w)) ? "" : "none";
  }
});
</script>
"""


def _page(title: str, note: str, body: str, filter_box: bool = False) -> str:
    """A complete page; ``body`` is its content (one table, or several under headings)."""
    box = '<input id="filter" type="search" placeholder="filter rows: backbone, task, dataset, …">' if filter_box else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"note\">{note}</p>{box}{body}"
        f"{_FILTER_SCRIPT if filter_box else ''}</body></html>\n"
    )


def _method_cell(method: str) -> str:
    return f'<span class="method" style="background:{method_colour(method)}"></span>{html.escape(str(method))}'


def _z_colour(z: float) -> str:
    """Background for a z-score: white at 0, blue above, red below (the figures' RdBu scale)."""
    if z is None or pd.isna(z):
        return ""
    t = float(np.clip(z / Z_LIMIT, -1, 1))
    blue, red = (33, 102, 172), (178, 24, 43)
    target = blue if t > 0 else red
    rgb = [round(255 + (c - 255) * abs(t) * 0.75) for c in target]
    return f"background:rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _html_table(columns: list[tuple[str, bool]], rows: list[tuple[list[str], str]]) -> str:
    """``columns``: (header, numeric); ``rows``: (cell HTML, each with its style), row class."""
    head = "".join(f'<th class="{"num" if numeric else ""}">{html.escape(name)}</th>' for name, numeric in columns)
    body = []
    for cells, row_class in rows:
        tds = "".join(
            f'<td class="{"num" if numeric else ""}" style="{style}">{content}</td>'
            for (content, style), (_, numeric) in zip(cells, columns)
        )
        body.append(f'<tr class="{row_class}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _number(value: float, fmt: str) -> str:
    return "–" if value is None or pd.isna(value) else format(value, fmt)


def leaderboard_html(overall: pd.DataFrame, tasks: pd.DataFrame, intervals: pd.DataFrame, iqm: pd.DataFrame) -> str:
    """The overall ranking with its bootstrap intervals, the IQM view and every task score."""
    task_names = ordered_tasks(tasks["task"])
    task_z = tasks.pivot(index="backbone", columns="task", values="z")
    overall_ci = intervals[intervals["task"] == ALL_TASKS].set_index("backbone")
    iqm = iqm.set_index("backbone")
    columns = [("rank", True), ("backbone", False), ("pretraining", False), ("family", False), ("params", True),
               ("overall z", True), ("95% CI", True), ("rank CI", True), ("IQM", True)]
    columns += [(task.replace("_", " "), True) for task in task_names]
    rows = []
    for row in overall.itertuples():
        ci = overall_ci.loc[row.backbone] if row.backbone in overall_ci.index else None
        cells = [
            # A backbone with no task score has no rank: read back from CSV, the column is then float.
            ("–" if pd.isna(row.rank) else str(int(row.rank)), ""),
            (html.escape(str(row.backbone_name)), ""),
            (_method_cell(row.method), ""),
            (html.escape(str(row.family)), ""),
            (_number(row.n_params / 1e6, ".1f") + "M", ""),
            (f"<b>{_number(row.score, '+.2f')}</b>", _z_colour(row.score)),
            ("–" if ci is None else f"[{ci['ci_low']:+.2f}, {ci['ci_high']:+.2f}]", ""),
            ("–" if ci is None else f"{int(ci['rank_ci_low'])}–{int(ci['rank_ci_high'])}", ""),
            (_number(iqm["iqm"].get(row.backbone, np.nan), "+.2f"), ""),
        ]
        for task in task_names:
            z = task_z[task].get(row.backbone, np.nan) if task in task_z else np.nan
            cells.append((_number(z, "+.2f"), _z_colour(z)))
        rows.append((cells, "random" if row.method == RANDOM_METHOD else ""))
    note = ("Backbones ranked by their overall BoB score: the mean over tasks of the mean z-score over each task's "
            "settings (task × dataset × protocol), in standard deviations of each setting's pool. 95% CI and rank "
            "CI: stratified bootstrap over each task's settings (and over test samples where the jobs kept their "
            "replicates). IQM: interquartile mean of the backbone's setting z-scores (GEO-Bench's robust view). "
            "Task columns: mean z over that task's settings (blue above the pool mean, red below). Random-init "
            "baselines are grey. From <code>results/ranking/</code>.")
    return _page("Leaderboard", note, _html_table(columns, rows))


def results_html(results: pd.DataFrame) -> str:
    """The primary metric of every backbone × setting, with its interval and the provenance that names it."""
    primary = primary_rows(results).sort_values(["task", "dataset", "protocol", "value"], ascending=[True, True, True, False])
    columns = [("backbone", False), ("pretraining", False), ("task", False), ("dataset", False), ("protocol", False),
               ("metric", False), ("value", True), ("95% CI", True), ("test samples", True), ("test split", False),
               ("input px", True), ("commit", False), ("config hash", False)]
    rows = []
    for row in primary.itertuples():
        ci = "–" if pd.isna(row.ci_low) else f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"
        cells = [
            (html.escape(str(row.backbone_name)), ""), (_method_cell(row.method), ""),
            (html.escape(str(row.task)), ""), (html.escape(str(row.dataset_name)), ""),
            (html.escape(str(row.protocol)), ""), (html.escape(str(row.metric)), ""),
            (_number(100 * row.value, ".1f"), ""), (ci, ""), (_number(row.n_test, ".0f"), ""),
            (html.escape(str(row.test_split)), ""), (_number(row.input_size, ".0f"), ""),
            (html.escape(str(row.git_commit))[:10], ""), (html.escape(str(row.config_hash))[:12], ""),
        ]
        rows.append((cells, "random" if row.method == RANDOM_METHOD else ""))
    note = (f"The primary metric of each of the {len(primary)} evaluated backbone × setting cells (in %; best first "
            "within each setting), with its 95% bootstrap interval over test samples and the commit and "
            "configuration hash that produced it. Every metric, protocol choice and package version is in "
            "<code>results/results.csv</code> (one row per metric; also an entry of this report).")
    return _page("Results table", note, _html_table(columns, rows), filter_box=True)


def appendix_html(results: pd.DataFrame, overall: pd.DataFrame) -> str:
    """BoB's appendix tables: per task, every backbone (overall order) × setting (dataset / protocol), the
    primary metric in % with its 95% interval; a sweep (detection learning rates) shows its best row."""
    primary = primary_rows(results).sort_values("value", ascending=False).drop_duplicates(["backbone", "task", "dataset", "protocol"])
    order = list(overall["backbone"])
    names = overall.set_index("backbone")["backbone_name"]
    sections = []
    for task in ordered_tasks(primary["task"]):
        cells = primary[primary["task"] == task]
        settings = sorted(set(zip(cells["dataset_name"], cells["protocol"], cells["metric"])))
        by_key = cells.set_index(["backbone", "dataset_name", "protocol"])
        columns = [("backbone", False)] + [(f"{d} / {p} ({m})", True) for d, p, m in settings]
        rows = []
        for backbone in [b for b in order if b in set(cells["backbone"])]:
            row = [(html.escape(str(names.get(backbone, backbone))), "")]
            for dataset, protocol, _ in settings:
                if (backbone, dataset, protocol) not in by_key.index:
                    row.append(("–", ""))
                    continue
                cell = by_key.loc[(backbone, dataset, protocol)]
                ci = "" if pd.isna(cell["ci_low"]) else f' <small>[{100 * cell["ci_low"]:.1f}, {100 * cell["ci_high"]:.1f}]</small>'
                row.append((f"{100 * cell['value']:.1f}{ci}", ""))
            rows.append((row, ""))
        sections.append(f"<h2>{html.escape(task.replace('_', ' '))}</h2>{_html_table(columns, rows)}")
    note = ("Every backbone's primary metric in every setting, in % with its 95% bootstrap interval over test samples, "
            "one table per task, backbones in overall-rank order (BoB's appendix tables); for a sweep (detection "
            "learning rates) its best run (the ranking's default, sweep_reduce: max). From <code>results/results.csv</code>.")
    return _page("Appendix: every number", note, "".join(sections) or "<p>No results yet.</p>")


def frame_html(frame: pd.DataFrame, title: str, note: str) -> str:
    """Any small table (BoB's Tables 1 and 2) as a page."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    columns = [(str(c).replace("_", " "), n) for c, n in zip(frame.columns, numeric)]
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for value, is_number in zip(values, numeric):
            if is_number and isinstance(value, float):
                text = _number(value, ".3g")
            else:
                text = html.escape("–" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value))
            cells.append((text, ""))
        rows.append((cells, ""))
    return _page(title, note, _html_table(columns, rows))


def write_html(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
