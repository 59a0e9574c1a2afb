"""How sure is a ranking? Bootstrap intervals for BoB scores and ranks, and the IQM view.

BoB reports one number per backbone; which datasets happen to stand for a task
moves those numbers as much as the backbones do. :func:`bootstrap_scores`
resamples the settings of each task with replacement (a stratified bootstrap:
every task keeps its number of settings, as in rliable and GEO-Bench) and
recomputes every task score, overall score and rank from the settings' z-scores
(computed once, within each setting, by :mod:`bobench.ranking`), giving
percentile intervals for each.

Where the jobs kept bootstrap replicates of their primary metric (every
classification, retrieval and detection job does: :func:`bobench.cells.metric_entry`),
the test samples are resampled too: replicate ``b`` of every backbone of a
setting was computed on the same drawn test samples (same seed, same test
set), so :func:`sample_z_replicates` recomputes that setting's z-scores per
replicate, and bootstrap draw ``b`` uses them. A two-level bootstrap: which
settings, and which test samples within each. Settings without replicates for
all their backbones (a results table from elsewhere) keep their point z-scores.

:func:`iqm_scores` is the robust aggregate GEO-Bench uses: the interquartile
mean (the mean of the middle 50 %) of a backbone's setting z-scores, with its
interval from the same stratified bootstrap. Unlike a mean it is not carried
by one or two extreme settings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from bobench.ranking import ALL_TASKS, RANDOM_METHOD, SETTING_KEYS, Ranking, RankingOptions, in_stats_pool

IQM_TRIM = 0.25  # cut from each end: the interquartile mean
INTERVAL_COLUMNS = ["backbone", "task", "score", "ci_low", "ci_high", "rank", "rank_ci_low", "rank_ci_high", "n_settings",
                    "n_settings_samples_resampled"]


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


@dataclass(frozen=True)
class SampleReplicates:
    """Per-replicate z-scores: ``z[b]`` is the backbones × settings matrix of replicate ``b`` (aligned with
    :func:`_z_matrix`), ``resampled[s]`` whether setting ``s`` had test-sample replicates."""

    z: np.ndarray
    resampled: np.ndarray


def sample_z_replicates(settings: pd.DataFrame, replicates: pd.DataFrame, ranking: RankingOptions,
                        random_backbones: set[str], n_boot: int) -> SampleReplicates:
    """z-scores of every setting recomputed on each of ``n_boot`` test-sample replicates.

    ``replicates`` is :data:`bobench.results.REPLICATE_COLUMNS` (results/replicates.parquet). A setting is
    resampled when every backbone with a z-score in it has replicates of one length on one test-set size;
    a sweep (several rows of one backbone and setting) is reduced per replicate with ``sweep_reduce``, as the
    point values are. The pool (:func:`bobench.ranking.in_stats_pool`: ``pool``, and random-init left out
    when ``exclude_random_from_stats``) and ``ddof`` are the ranking's. Replicate ``b`` of a job with ``L``
    replicates is used for draws ``b``, ``b + L``, ...
    """
    matrix, _ = _z_matrix(settings)
    z = np.broadcast_to(matrix.to_numpy(dtype=float), (n_boot, *matrix.shape)).copy()
    resampled = np.zeros(matrix.shape[1], dtype=bool)
    reduce = np.nanmax if ranking.sweep_reduce == "max" else np.nanmean
    grouped = {key: group for key, group in replicates.groupby(SETTING_KEYS, sort=False)} if len(replicates) else {}
    for s, key in enumerate(matrix.columns):
        rows = matrix.index[~np.isnan(matrix[key].to_numpy(dtype=float))]
        group = grouped.get(key)
        if group is None or not set(rows) <= set(group["backbone"]) or group["n_test"].nunique() > 1:
            continue
        arrays = {b: [np.asarray(r, dtype=float) for r in g["replicates"]] for b, g in group.groupby("backbone")}
        lengths = {len(a) for b in rows for a in arrays[b]}
        if len(lengths) != 1:
            continue
        index = np.arange(n_boot) % lengths.pop()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN replicate stays NaN
            values = np.column_stack([reduce(np.stack(arrays[b]), axis=0)[index] for b in rows])
            in_pool = np.array([in_stats_pool(b, key[0], b in random_backbones, ranking) for b in rows])
            pool = values[:, in_pool]
            counts = np.sum(~np.isnan(pool), axis=1)
            mean = np.nanmean(pool, axis=1)
            std = np.nanstd(pool, axis=1, ddof=ranking.ddof)
            valid = (counts >= 2) & (std > 1e-12 * np.maximum(1.0, np.abs(mean)))
            column = np.where(valid[:, None], (values - mean[:, None]) / std[:, None], np.nan)
        z[:, matrix.index.get_indexer(rows), s] = column
        resampled[s] = True
    return SampleReplicates(z=z, resampled=resampled)


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


def bootstrap_scores(settings: pd.DataFrame, options: BootstrapOptions = BootstrapOptions(),
                     samples: SampleReplicates | None = None) -> pd.DataFrame:
    """Per backbone and task (and ``all tasks``): score, rank and their percentile intervals.

    ``settings`` is :attr:`bobench.ranking.Ranking.settings` (one z per backbone and setting). The point
    estimates are the ranking's own (all settings once); the intervals come from the resampled settings,
    and with ``samples`` (:func:`sample_z_replicates`, ``n_boot`` replicates) from resampled test samples too.
    """
    matrix, tasks = _z_matrix(settings)
    if matrix.empty:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    task_names = sorted(set(tasks))
    z = matrix.to_numpy(dtype=float)
    point = _scores(z, tasks, np.arange(len(tasks)), task_names, options.aggregate)
    point_rank = np.column_stack([_ranks(point[:, j]) for j in range(point.shape[1])])
    rng = np.random.default_rng(options.seed)
    boot = np.stack([_scores(_replicate(z, samples, b), tasks, draw, task_names, options.aggregate)
                     for b, draw in enumerate(_stratified_draws(tasks, rng, options.n_boot))])
    resampled = samples.resampled if samples is not None else np.zeros(len(tasks), dtype=bool)
    ranks = np.stack([np.column_stack([_ranks(b[:, j]) for j in range(b.shape[1])]) for b in boot])
    alpha = (1 - options.level) / 2
    rows = []
    for j, task in enumerate([*task_names, ALL_TASKS]):
        in_task = tasks == task if task != ALL_TASKS else np.ones(len(tasks), dtype=bool)
        for i, backbone in enumerate(matrix.index):
            if np.isnan(point[i, j]):
                continue
            scores, places = boot[:, i, j], ranks[:, i, j]
            scores, places = scores[~np.isnan(scores)], places[~np.isnan(places)]
            if not len(scores):  # undefined in every replicate (e.g. all its pools degenerate)
                continue
            rows.append({
                "backbone": backbone, "task": task, "score": point[i, j],
                "ci_low": float(np.quantile(scores, alpha)), "ci_high": float(np.quantile(scores, 1 - alpha)),
                "rank": int(point_rank[i, j]),
                "rank_ci_low": int(np.floor(np.quantile(places, alpha))),
                "rank_ci_high": int(np.ceil(np.quantile(places, 1 - alpha))),
                "n_settings": int(np.sum(~np.isnan(z[i]) & in_task)),
                "n_settings_samples_resampled": int(np.sum(~np.isnan(z[i]) & in_task & resampled)),
            })
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def two_level_bootstrap(ranking: Ranking, replicates: pd.DataFrame,
                        options: BootstrapOptions) -> tuple[pd.DataFrame, pd.DataFrame, SampleReplicates]:
    """The two-level bootstrap of a ranking: its intervals (:func:`bootstrap_scores`), the IQM view
    (:func:`iqm_scores`) and the per-replicate z-scores both used (test samples resampled wherever
    ``replicates`` covers a setting)."""
    random_backbones = set(ranking.overall.loc[ranking.overall["method"] == RANDOM_METHOD, "backbone"])
    samples = sample_z_replicates(ranking.settings, replicates, ranking.options, random_backbones, options.n_boot)
    return bootstrap_scores(ranking.settings, options, samples), iqm_scores(ranking.settings, options, samples), samples


def _replicate(z: np.ndarray, samples: SampleReplicates | None, b: int) -> np.ndarray:
    """The z matrix bootstrap draw ``b`` uses: test-sample replicate ``b``, or the point z-scores."""
    if samples is None:
        return z
    if samples.z.shape[0] <= b or samples.z.shape[1:] != z.shape:
        raise ValueError(f"sample replicates {samples.z.shape} do not match {z.shape} and draw {b}")
    return samples.z[b]


def iqm_scores(settings: pd.DataFrame, options: BootstrapOptions = BootstrapOptions(),
               samples: SampleReplicates | None = None) -> pd.DataFrame:
    """Per backbone: the interquartile mean of its setting z-scores, with a stratified-bootstrap interval
    (resampling test samples too with ``samples``, as :func:`bootstrap_scores`)."""
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
        boot = []
        for b, draw in enumerate(draws):
            row = _replicate(z, samples, b)[i, draw]
            if (~np.isnan(row)).any():
                boot.append(trim_mean(row[~np.isnan(row)], IQM_TRIM))
        rows.append({"backbone": backbone, "iqm": float(trim_mean(z[i, own], IQM_TRIM)),
                     "ci_low": float(np.quantile(boot, alpha)), "ci_high": float(np.quantile(boot, 1 - alpha)),
                     "n_settings": int(own.sum())})
    out = pd.DataFrame(rows, columns=["backbone", "iqm", "ci_low", "ci_high", "n_settings"])
    out["rank"] = out["iqm"].rank(ascending=False, method="min").astype(int)
    return out.sort_values(["iqm", "backbone"], ascending=[False, True]).reset_index(drop=True)
