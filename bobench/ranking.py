"""BoB ranking: setting-wise z-scores aggregated into task and overall scores.

The paper only states that backbones are compared through "setting-specific
z-scores" that are then averaged; every unstated choice (std estimator, what
to do with random-init baselines, how to weight tasks, how to collapse a
learning-rate sweep) is a field of :class:`RankingOptions` so that the
sensitivity of the ranking to it can be checked (docs/protocol.md §9).

A *setting* is ``(task, dataset, protocol)`` measured by its one primary metric
(``primary == True`` rows). Backbones missing from a setting or task are never
imputed, so pools differ between tasks; that is a known weakness of the
protocol, kept on purpose to match BoB.

A setting's mean and std come from its *pool*: every backbone evaluated in it
(``pool: all``), or only those BoB ranked in its task (``pool: bob``,
:data:`bobench.bob_pools.BOB_POOLS`), so that backbones BoB did not run cannot
move BoB's backbones' z-scores; they are still scored against the pool's mean
and std. ``exclude_settings`` leaves whole settings out of the ranking (the paper
config counts ImageNet linear evaluation once, docs/protocol.md §9).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bobench.bob_pools import BOB_POOLS
from bobench.io import atomic_path
from bobench.markdown import markdown_table

log = logging.getLogger(__name__)

RANDOM_METHOD = "none"
ALL_TASKS = "all tasks"
SUBSET_ALL = "all"
SETTING_KEYS = ["task", "dataset", "protocol"]
META_COLUMNS = ["backbone_name", "family", "method", "n_params", "pretrain_size"]
REQUIRED_COLUMNS = ["backbone", *META_COLUMNS, *SETTING_KEYS, "metric", "value", "primary"]

# Row order of BoB Table 2; tasks not listed follow alphabetically.
TASK_ORDER = [
    "classification",
    "detection",
    "instance_segmentation",
    "retrieval",
    "ood_classification",
    "ood_detection",
]

_CHOICES: dict[str, tuple[Any, ...]] = {
    "ddof": (0, 1),
    "exclude_random_from_stats": (True, False),
    "aggregate": ("task_mean", "setting_mean"),
    "sweep_reduce": ("max", "mean"),
    "pool": ("all", "bob"),
}
_POSITIVE_INTS = ("small_params_threshold", "top_k")


@dataclass(frozen=True)
class RankingOptions:
    """Every unstated choice of the BoB ranking protocol, with the documented default."""

    ddof: int = 0
    exclude_random_from_stats: bool = True
    aggregate: str = "task_mean"
    sweep_reduce: str = "max"
    small_params_threshold: int = 30_000_000
    top_k: int = 3
    pool: str = "all"  # all: every backbone of a setting sets its mean and std; bob: BoB's backbones of the task
    exclude_settings: tuple[str, ...] = ()  # "task/dataset/protocol" settings left out of the ranking

    def __post_init__(self) -> None:
        for key, choices in _CHOICES.items():
            value = getattr(self, key)
            # bool is an int subclass: True must not pass as ddof=1, nor 1 as True.
            if not any(type(value) is type(c) and value == c for c in choices):
                raise ValueError(
                    f"ranking option {key!r}: invalid value {value!r}; "
                    f"valid choices: {', '.join(repr(c) for c in choices)}"
                )
        for key in _POSITIVE_INTS:
            value = getattr(self, key)
            if type(value) is not int or value < 1:
                raise ValueError(
                    f"ranking option {key!r}: invalid value {value!r}; "
                    "valid choices: a positive integer"
                )
        for setting in self.exclude_settings:
            if not isinstance(setting, str) or len(setting.split("/")) != 3 or not all(setting.split("/")):
                raise ValueError(
                    f"ranking option 'exclude_settings': invalid setting {setting!r}; "
                    "valid: 'task/dataset/protocol', e.g. 'classification/imagenet/linear_probe'"
                )

    @classmethod
    def from_config(cls, d: dict[str, Any] | None) -> RankingOptions:
        """Build options from config section ``ranking`` (:func:`bobench.options.options_from_config`: unknown
        keys are errors, not silently ignored)."""
        from bobench.options import options_from_config

        return options_from_config(cls, d, where="ranking")


@dataclass
class Ranking:
    """All tables of one ranking run; ``options`` records how they were made."""

    settings: pd.DataFrame
    tasks: pd.DataFrame
    overall: pd.DataFrame
    top: pd.DataFrame
    options: RankingOptions


def compute_ranking(
    results: pd.DataFrame, options: RankingOptions = RankingOptions()
) -> Ranking:
    """Rank backbones from the tidy results table (see module docstring for the protocol)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks required columns: {', '.join(missing)}")
    meta = _backbone_meta(results)
    settings = _setting_zscores(_ranked_settings(_primary_values(results, options), options), meta, options)
    tasks = _task_scores(settings)
    overall = _overall(settings, tasks, meta, options)
    top = _top_table(tasks, overall, options)
    return Ranking(settings=settings, tasks=tasks, overall=overall, top=top, options=options)


def _as_bool(column: pd.Series) -> pd.Series:
    """``primary`` as bool, also when it came back from CSV as text."""
    if column.dtype == bool:
        return column
    text = column.astype(str).str.strip().str.lower()
    unknown = ~text.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if unknown.any():
        raise ValueError(f"column 'primary' has non-boolean values: {sorted(set(column[unknown]))}")
    return text.isin(["true", "1", "1.0"])


def primary_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of each setting's primary metric (``primary`` may come back from CSV as text)."""
    return results.loc[_as_bool(results["primary"])]


def _backbone_meta(results: pd.DataFrame) -> pd.DataFrame:
    """One metadata row per backbone; conflicting rows are reported, the first one wins."""
    meta = results[["backbone", *META_COLUMNS]].drop_duplicates()
    conflicting = meta.loc[meta["backbone"].duplicated(), "backbone"].unique()
    if len(conflicting):
        log.warning(
            "backbones with conflicting metadata across rows (first row used): %s",
            ", ".join(map(str, conflicting)),
        )
    return meta.drop_duplicates("backbone").set_index("backbone")


def _primary_values(results: pd.DataFrame, options: RankingOptions) -> pd.DataFrame:
    """Primary-metric value per (backbone, setting), collapsing sweeps per ``sweep_reduce``."""
    rows = primary_rows(results)[["backbone", *SETTING_KEYS, "metric", "value"]]
    rows = rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"))
    n_nan = int(rows["value"].isna().sum())
    if n_nan:
        log.warning("dropping %d primary rows with a missing value", n_nan)
        rows = rows.dropna(subset=["value"])
    metrics = rows.groupby(SETTING_KEYS)["metric"].nunique()
    mixed = metrics[metrics > 1]
    if len(mixed):
        raise ValueError(
            "settings with more than one primary metric (z-scores would mix units): "
            + "; ".join(" / ".join(map(str, key)) for key in mixed.index)
        )
    keys = ["backbone", *SETTING_KEYS, "metric"]
    n_rows = len(rows)
    values = rows.groupby(keys, as_index=False, sort=True)["value"].agg(options.sweep_reduce)
    if len(values) < n_rows:
        log.info(
            "reduced %d repeated (backbone, setting) rows with sweep_reduce=%r",
            n_rows - len(values),
            options.sweep_reduce,
        )
    return values


def setting_name(task: str, dataset: str, protocol: str) -> str:
    """How ``ranking.exclude_settings`` names a setting."""
    return f"{task}/{dataset}/{protocol}"


def _ranked_settings(values: pd.DataFrame, options: RankingOptions) -> pd.DataFrame:
    """The rows of every setting but those of ``exclude_settings``."""
    if not options.exclude_settings:
        return values
    names = pd.Series([setting_name(*key) for key in values[SETTING_KEYS].itertuples(index=False)],
                      index=values.index, dtype=object)
    excluded = names.isin(options.exclude_settings)
    unmatched = sorted(set(options.exclude_settings) - set(names[excluded]))
    if unmatched:
        log.warning("ranking.exclude_settings names settings without results: %s", ", ".join(unmatched))
    if excluded.any():
        log.info("left out of the ranking (ranking.exclude_settings): %s", ", ".join(sorted(set(names[excluded]))))
    return values.loc[~excluded]


def in_stats_pool(backbone: str, task: str, is_random: bool, options: RankingOptions) -> bool:
    """Whether a backbone's value enters the mean and std of its setting (it gets a z-score either way)."""
    if is_random and options.exclude_random_from_stats:
        return False
    return options.pool == "all" or backbone in BOB_POOLS.get(task, ())


def _setting_zscores(
    values: pd.DataFrame, meta: pd.DataFrame, options: RankingOptions
) -> pd.DataFrame:
    """z of every backbone within each setting; undefined pools give NaN and a warning."""
    is_random = values["backbone"].map(meta["method"]).eq(RANDOM_METHOD)
    in_pool = pd.Series(
        [in_stats_pool(b, t, r, options) for b, t, r in zip(values["backbone"], values["task"], is_random)],
        index=values.index, dtype=bool,
    )
    z = pd.Series(np.nan, index=values.index)
    for key, group in values.groupby(SETTING_KEYS, sort=True):
        pool = group.loc[in_pool[group.index], "value"].to_numpy(dtype=float)
        label = " / ".join(map(str, key))
        if len(pool) < 2:
            log.warning(
                "setting %s: only %d backbone(s) in the z-score pool; z = NaN, dropped from aggregation",
                label,
                len(pool),
            )
            continue
        mean = pool.mean()
        std = pool.std(ddof=options.ddof)
        if not std > 1e-12 * max(1.0, abs(mean)):
            log.warning(
                "setting %s: all pool values equal (std = 0); z = NaN, dropped from aggregation",
                label,
            )
            continue
        z[group.index] = (group["value"] - mean) / std
    return values.assign(z=z, in_pool=in_pool).reset_index(drop=True)


def _task_scores(settings: pd.DataFrame) -> pd.DataFrame:
    """Mean z per (backbone, task) over the settings the backbone was evaluated in."""
    valid = settings.dropna(subset=["z"])
    return (
        valid.groupby(["backbone", "task"], as_index=False, sort=True)
        .agg(z=("z", "mean"), n_settings=("z", "size"))
        .astype({"n_settings": int})
    )


def _overall(
    settings: pd.DataFrame, tasks: pd.DataFrame, meta: pd.DataFrame, options: RankingOptions
) -> pd.DataFrame:
    """Overall score and rank per backbone; backbones without any valid z keep a NaN score."""
    valid = settings.dropna(subset=["z"])
    source = tasks if options.aggregate == "task_mean" else valid
    score = source.groupby("backbone")["z"].mean()
    n_tasks = tasks.groupby("backbone")["task"].nunique()
    n_settings = valid.groupby("backbone").size()
    overall = meta[META_COLUMNS].reset_index()
    overall["score"] = overall["backbone"].map(score).astype(float)
    overall["rank"] = overall["score"].rank(ascending=False, method="min").astype("Int64")
    overall["n_tasks"] = overall["backbone"].map(n_tasks).fillna(0).astype(int)
    overall["n_settings"] = overall["backbone"].map(n_settings).fillna(0).astype(int)
    unscored = overall.loc[overall["score"].isna(), "backbone"]
    if len(unscored):
        log.warning(
            "backbones without any valid z-score (left unranked): %s", ", ".join(map(str, unscored))
        )
    overall = overall.sort_values(
        ["score", "backbone"], ascending=[False, True], na_position="last"
    )
    return overall.reset_index(drop=True)


def ordered_tasks(tasks: pd.Series) -> list[str]:
    present = set(tasks)
    return [t for t in TASK_ORDER if t in present] + sorted(present.difference(TASK_ORDER))


def _top_table(tasks: pd.DataFrame, overall: pd.DataFrame, options: RankingOptions) -> pd.DataFrame:
    """BoB Table 2: top-k per task and overall, for all backbones and the small-model subset.

    Random-init baselines are left out: the table answers "which backbone should I
    choose?", and a baseline is never an answer (it stays in the other tables).
    """
    info = overall.set_index("backbone")
    candidates = info.index[info["method"] != RANDOM_METHOD]
    small = set(info.index[info["n_params"] < options.small_params_threshold])
    subsets = {
        SUBSET_ALL: set(candidates),
        f"< {options.small_params_threshold / 1e6:g}M params": set(candidates) & small,
    }
    scores = {task: g.set_index("backbone")["z"] for task, g in tasks.groupby("task")}
    scores[ALL_TASKS] = info["score"]
    rows = []
    for task in [*ordered_tasks(tasks["task"]), ALL_TASKS]:
        for subset, members in subsets.items():
            score = scores[task].dropna()
            best = (
                pd.DataFrame({"backbone": score.index, "score": score.to_numpy()})
                .loc[lambda df: df["backbone"].isin(members)]  # noqa: B023 (called at once)
                .sort_values(["score", "backbone"], ascending=[False, True])
                .head(options.top_k)
            )
            for position, (backbone, value) in enumerate(best.to_numpy(), start=1):
                rows.append(
                    {
                        "task": task,
                        "subset": subset,
                        "position": position,
                        "backbone": backbone,
                        "backbone_name": info.at[backbone, "backbone_name"],
                        "score": float(value),
                    }
                )
    columns = ["task", "subset", "position", "backbone", "backbone_name", "score"]
    return pd.DataFrame(rows, columns=columns)


#: Tasks BoB's Table 2 marks as out-of-distribution.
OOD_TASKS = ("ood_classification", "ood_detection")
ORDINALS = ("1st", "2nd", "3rd")


def table2(top: pd.DataFrame) -> pd.DataFrame:
    """BoB Table 2 ("Which backbone should I choose?"): per task and subset, the top backbones left to right,
    each with its score; ``kind`` marks the OOD rows and the all-tasks row."""
    rows = []
    for (subset, task), group in top.groupby(["subset", "task"], sort=False):
        kind = "all tasks" if task == ALL_TASKS else ("OOD" if task in OOD_TASKS else "in-distribution")
        ranked = group.sort_values("position")
        row = {"subset": subset, "kind": kind, "task": task}
        for position, (name, score) in enumerate(zip(ranked["backbone_name"], ranked["score"]), start=1):
            row[ORDINALS[position - 1] if position <= len(ORDINALS) else f"{position}th"] = f"{name} ({score:+.2f})"
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["subset", "kind", "task"])


def table2_markdown(top: pd.DataFrame) -> str:
    table = table2(top)
    parts = ["# Which backbone should I choose? (BoB Table 2)", "",
             "Top backbones per task (task score, SD), best first; random-init baselines left out. "
             "**OOD** rows test out of distribution; the last row of each block is the overall ranking.", ""]
    if table.empty:
        parts.append("No backbone has a task score yet (each setting needs two or more backbones in its pool).")
    for subset, block in table.groupby("subset", sort=False):
        block = block.assign(task=[f"**{t}** (OOD)" if k == "OOD" else (f"_{t}_" if k == "all tasks" else t)
                                   for t, k in zip(block["task"], block["kind"])])
        parts += [f"## Backbones: {subset}", "", markdown_table(block.drop(columns=["subset", "kind"])), ""]
    return "\n".join(parts)


def write_ranking(
    ranking: Ranking, out_dir: str | os.PathLike, intervals: pd.DataFrame | None = None, iqm: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Write the ranking CSVs (with ``intervals`` and ``iqm`` of bobench.ranking_uncertainty when given) and a
    readable ``ranking.md``; returns name -> path."""
    out_dir = Path(out_dir)
    tables = {
        "overall": ranking.overall,
        "tasks": ranking.tasks,
        "settings": ranking.settings,
        "top": ranking.top,
        **({"intervals": intervals} if intervals is not None else {}),
        **({"iqm": iqm} if iqm is not None else {}),
    }
    paths: dict[str, Path] = {}
    for name, table in tables.items():
        path = out_dir / f"ranking_{name}.csv"
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
        paths[name] = path
    path = out_dir / "ranking.md"
    with atomic_path(path) as tmp:
        tmp.write_text(ranking_markdown(ranking, intervals, iqm))
    paths["markdown"] = path
    for name, write in (("table2.csv", lambda p: table2(ranking.top).to_csv(p, index=False)),
                        ("table2.md", lambda p: p.write_text(table2_markdown(ranking.top)))):
        with atomic_path(out_dir / name) as tmp:
            write(tmp)
        paths[name.replace(".", "_")] = out_dir / name
    return paths


def _uncertainty_sections(intervals: pd.DataFrame | None, iqm: pd.DataFrame | None, names: pd.Series) -> list[str]:
    parts = []
    if intervals is not None and len(intervals):
        overall = intervals[intervals["task"] == ALL_TASKS].sort_values("rank")
        shown = pd.DataFrame({
            "backbone": overall["backbone"].map(names),
            "score": overall["score"],
            "score 95% CI": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(overall["ci_low"], overall["ci_high"])],
            "rank": overall["rank"],
            "rank CI": [f"{lo}–{hi}" for lo, hi in zip(overall["rank_ci_low"], overall["rank_ci_high"])],
        })
        resampled = int(overall["n_settings_samples_resampled"].sum()) if "n_settings_samples_resampled" in overall else 0
        samples = (f" Within each drawn setting the test samples are resampled too ({resampled} of "
                   f"{int(overall['n_settings'].sum())} backbone × setting scores had paired replicates), and its "
                   "z-scores recomputed." if resampled else "")
        parts += ["## Overall score and rank with bootstrap intervals", "",
                  "Settings resampled with replacement within each task (stratified bootstrap)." + samples +
                  " Every task score, overall score and rank recomputed per resample (`ranking_intervals.csv` "
                  "has the task scores too).", "", markdown_table(shown), ""]
    if iqm is not None and len(iqm):
        shown = iqm.assign(backbone=iqm["backbone"].map(names))
        parts += ["## Robust view: interquartile mean of setting z-scores (GEO-Bench)", "",
                  markdown_table(shown), ""]
    return parts


def read_ranking(out_dir: str | os.PathLike, options: RankingOptions) -> Ranking:
    """The ranking :func:`write_ranking` wrote, for steps downstream of it (figures)."""
    out_dir = Path(out_dir)
    tables = {name: pd.read_csv(out_dir / f"ranking_{name}.csv") for name in ("overall", "tasks", "settings", "top")}
    tables["overall"]["rank"] = tables["overall"]["rank"].astype("Int64")
    return Ranking(**tables, options=options)


def ranking_markdown(ranking: Ranking, intervals: pd.DataFrame | None = None, iqm: pd.DataFrame | None = None) -> str:
    """Human-readable report: options, overall ranking, top-k table, task scores, intervals, dropped settings."""
    opts = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(ranking.options).items())
    names = ranking.overall.set_index("backbone")["backbone_name"]
    task_table = ranking.tasks.pivot(index="backbone", columns="task", values="z")
    task_table = task_table.reindex(
        index=[b for b in ranking.overall["backbone"] if b in task_table.index],
        columns=ordered_tasks(ranking.tasks["task"]),
    )
    task_table.insert(0, "backbone_name", names.reindex(task_table.index))
    dropped = ranking.settings.loc[ranking.settings["z"].isna(), SETTING_KEYS].drop_duplicates()
    parts = [
        "# Backbone ranking (BoB z-scores)",
        "",
        f"Options: {opts}.",
        "",
        "Scores are in standard deviations above the mean of the backbones evaluated in each "
        "setting; pools differ between settings because not every backbone runs every task. "
        + ("Each setting's mean and std come from the backbones BoB ranked in its task (`pool: 'bob'`); the "
           "others are scored against them (`in_pool` in `ranking_settings.csv`). "
           if ranking.options.pool == "bob" else "")
        + f"Random-init baselines have method `{RANDOM_METHOD}`.",
        "",
        "## Overall",
        "",
        markdown_table(ranking.overall),
        "",
        f"## Top {ranking.options.top_k} per task (random-init excluded)",
        "",
        markdown_table(ranking.top),
        "",
        "## Task scores (mean z per task)",
        "",
        markdown_table(task_table.reset_index()),
        "",
        *_uncertainty_sections(intervals, iqm, names),
        "## Settings dropped from aggregation (pool < 2 backbones or std = 0)",
        "",
        markdown_table(dropped) if len(dropped) else "None.",
        "",
    ]
    return "\n".join(parts)
