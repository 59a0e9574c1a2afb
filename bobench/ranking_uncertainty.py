"""How sure is a ranking? Bootstrap intervals for BoB scores and ranks, and the IQM view.

BoB reports one number per backbone; which datasets happen to stand for a task
moves those numbers as much as the backbones do. :func:`bootstrap_scores`
resamples the settings of each task with replacement (a stratified bootstrap:
every task keeps its number of settings, as in rliable and GEO-Bench) and
recomputes every task score, overall score and rank from the settings' z-scores
(computed once, within each setting, by :mod:`bobench.ranking`), giving
percentile intervals for each.

:func:`iqm_scores` is the robust aggregate GEO-Bench uses: the interquartile
mean (the mean of the middle 50 %) of a backbone's setting z-scores, with its
interval from the same stratified bootstrap. Unlike a mean it is not carried
by one or two extreme settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from bobench.ranking import ALL_TASKS, SETTING_KEYS

IQM_TRIM = 0.25  # cut from each end: the interquartile mean
INTERVAL_COLUMNS = ["backbone", "task", "score", "ci_low", "ci_high", "rank", "rank_ci_low", "rank_ci_high", "n_settings"]


@dataclass(frozen=True)
class BootstrapOptions:
    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    aggregate: str = "task_mean"  # as RankingOptions.aggregate

    def __post_init__(self) -> None:
        if self.n_boot < 1 or not 0 < self.level < 1 or self.aggregate not in ("task_mean", "setting_mean"):
            raise ValueError(f"bootstrap options: need n_boot >= 1, 0 < level < 1, aggregate task_mean|setting_mean; got {self}")


def _z_matrix(settings: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Backbones × settings z-scores (NaN: not evaluated, or no valid z) and each setting's task."""
    valid = settings.dropna(subset=["z"])
    matrix = valid.pivot_table(index="backbone", columns=SETTING_KEYS, values="z", aggfunc="first")
    return matrix, np.array([key[0] for key in matrix.columns])


def _scores(z: np.ndarray, tasks: np.ndarray, draw: np.ndarray, task_names: list[str], aggregate: str) -> np.ndarray:
    """Task scores (backbones × tasks) and overall (last column) for one draw of setting columns."""
    picked, picked_tasks = z[:, draw], tasks[draw]
    per_task = np.full((z.shape[0], len(task_names) + 1), np.nan)
    for j, task in enumerate(task_names):
        columns = picked[:, picked_tasks == task]
        counts = np.sum(~np.isnan(columns), axis=1)
        per_task[counts > 0, j] = np.nansum(columns[counts > 0], axis=1) / counts[counts > 0]
    if aggregate == "task_mean":
        counts = np.sum(~np.isnan(per_task[:, :-1]), axis=1)
        per_task[counts > 0, -1] = np.nansum(per_task[counts > 0, :-1], axis=1) / counts[counts > 0]
    else:
        counts = np.sum(~np.isnan(picked), axis=1)
        per_task[counts > 0, -1] = np.nansum(picked[counts > 0], axis=1) / counts[counts > 0]
    return per_task


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1 = best; ties share the better rank; NaN scores stay unranked."""
    return pd.DataFrame(scores).rank(ascending=False, method="min").to_numpy()


def _stratified_draws(tasks: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """``n_boot`` draws of setting columns, each task's settings resampled within the task."""
    draws = np.empty((n_boot, len(tasks)), dtype=np.int64)
    for task in np.unique(tasks):
        members = np.flatnonzero(tasks == task)
        draws[:, members] = rng.choice(members, size=(n_boot, len(members)), replace=True)
    return draws


def bootstrap_scores(settings: pd.DataFrame, options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """Per backbone and task (and ``all tasks``): score, rank and their percentile intervals.

    ``settings`` is :attr:`bobench.ranking.Ranking.settings` (one z per backbone and setting). The point
    estimates are the ranking's own (all settings once); the intervals come from the resampled settings.
    """
    matrix, tasks = _z_matrix(settings)
    if matrix.empty:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    task_names = sorted(set(tasks))
    z = matrix.to_numpy(dtype=float)
    point = _scores(z, tasks, np.arange(len(tasks)), task_names, options.aggregate)
    point_rank = np.column_stack([_ranks(point[:, j]) for j in range(point.shape[1])])
    rng = np.random.default_rng(options.seed)
    boot = np.stack([_scores(z, tasks, draw, task_names, options.aggregate)
                     for draw in _stratified_draws(tasks, rng, options.n_boot)])
    ranks = np.stack([np.column_stack([_ranks(b[:, j]) for j in range(b.shape[1])]) for b in boot])
    alpha = (1 - options.level) / 2
    rows = []
    for j, task in enumerate([*task_names, ALL_TASKS]):
        for i, backbone in enumerate(matrix.index):
            if np.isnan(point[i, j]):
                continue
            scores, places = boot[:, i, j], ranks[:, i, j]
            scores, places = scores[~np.isnan(scores)], places[~np.isnan(places)]
            rows.append({
                "backbone": backbone, "task": task, "score": point[i, j],
                "ci_low": float(np.quantile(scores, alpha)), "ci_high": float(np.quantile(scores, 1 - alpha)),
                "rank": int(point_rank[i, j]),
                "rank_ci_low": int(np.floor(np.quantile(places, alpha))),
                "rank_ci_high": int(np.ceil(np.quantile(places, 1 - alpha))),
                "n_settings": int(np.sum(~np.isnan(z[i, tasks == task]))) if task != ALL_TASKS else int(np.sum(~np.isnan(z[i]))),
            })
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def iqm_scores(settings: pd.DataFrame, options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """Per backbone: the interquartile mean of its setting z-scores, with a stratified-bootstrap interval."""
    matrix, tasks = _z_matrix(settings)
    z = matrix.to_numpy(dtype=float)
    rng = np.random.default_rng(options.seed)
    draws = _stratified_draws(tasks, rng, options.n_boot)
    alpha = (1 - options.level) / 2
    rows = []
    for i, backbone in enumerate(matrix.index):
        own = ~np.isnan(z[i])
        if not own.any():
            continue
        boot = [trim_mean(z[i, draw][own[draw]], IQM_TRIM) for draw in draws if own[draw].any()]
        rows.append({"backbone": backbone, "iqm": float(trim_mean(z[i, own], IQM_TRIM)),
                     "ci_low": float(np.quantile(boot, alpha)), "ci_high": float(np.quantile(boot, 1 - alpha)),
                     "n_settings": int(own.sum())})
    out = pd.DataFrame(rows, columns=["backbone", "iqm", "ci_low", "ci_high", "n_settings"])
    out["rank"] = out["iqm"].rank(ascending=False, method="min").astype(int)
    return out.sort_values(["iqm", "backbone"], ascending=[False, True]).reset_index(drop=True)
