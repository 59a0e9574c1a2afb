"""Retrieval ground truth and metrics (BoB's ``utils.compute_map``, i.e. revisitop's).

A query's ground truth is two sets of database indices: its *positives* and
its *junk* images. Junk images are removed from the ranking before scoring
(revisitop: a positive's rank drops by the number of junk images ranked above
it), so they count neither for nor against the query. Queries without any
positive (possible under the revisited Easy and Hard protocols) are skipped and
counted, as revisitop does.

Metrics per query, averaged over the scored queries, all fractions in [0, 1],
with ``r`` a positive's 0-based rank among the non-junk images:

* ``map``: revisitop's ``compute_ap``. The ``j``-th positive (0-based) adds
  ``(p_before + p_at) / 2 / n_positives`` with ``p_before = j / r`` (1 when
  ``r = 0``) and ``p_at = (j + 1) / (r + 1)``: the trapezoidal rule between
  the precision just before and just at each positive, not the step-wise
  "precision at each hit" AP. The two differ most for short positive lists.
* ``mrr``: ``1 / (r + 1)`` of the first positive.
* ``precision@k``: positives among the first ``k`` non-junk images, over ``k``
  (revisitop's mP@k instead divides by ``min(k, rank of the last positive)``).
* ``recall@k``: positives among the first ``k`` non-junk images, over all positives.

The revisited Oxford and Paris protocols (Radenović et al., CVPR 2018) are three
views of one annotation (easy, hard and junk lists per query):
Easy = easy positives with hard as junk, Medium = easy ∪ hard (BoB's
choice), Hard = hard positives with easy as junk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bobench.retrieval.ground_truth import GroundTruth
from bobench.retrieval.search import ArrayLike, normalised, ranked_blocks

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)


@dataclass
class RetrievalResult:
    #: "map", "mrr", "precision@k", "recall@k", averaged over the scored queries.
    metrics: dict[str, float]
    #: same keys, one value per scored query (for bootstrap CIs), in query order.
    per_query: dict[str, np.ndarray]
    #: indices of the scored queries (those with at least one positive).
    scored: np.ndarray
    n_queries: int
    n_database: int

    @property
    def n_skipped(self) -> int:
        return self.n_queries - len(self.scored)


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    return ["map", "mrr"] + [f"{m}@{k}" for m in ("precision", "recall") for k in ks]


def evaluate_retrieval(
    query_x: ArrayLike,
    database_x: ArrayLike,
    ground_truth: Mapping[str, GroundTruth],
    ks: Sequence[int] = DEFAULT_KS,
    device: str | torch.device = "cpu",
    chunk_cells: int | None = None,
    topk: int = 0,
) -> tuple[dict[str, RetrievalResult], np.ndarray]:
    """Rank the database for every query once and score each ground-truth protocol.

    Returns ``({protocol: result}, top)`` with ``top`` the ``topk`` best database
    indices per query (junk included; empty when ``topk`` is 0): the raw
    per-query results that the metrics summarise.
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive, got {ks}")
    queries, database = normalised(query_x, device), normalised(database_x, device)
    n_query, n_db = queries.shape[0], database.shape[0]
    if n_db == 0:
        raise ValueError("the retrieval database is empty")
    for name, truth in ground_truth.items():
        if truth.n_queries != n_query:
            raise ValueError(f"ground truth {name!r} covers {truth.n_queries} queries, but there are {n_query} query descriptors")
        truth.check(n_db, f"ground truth {name!r}")
    names = metric_names(ks)
    parts = {protocol: {key: [] for key in names} for protocol in ground_truth}
    top = np.empty((n_query, min(topk, n_db)), dtype=np.int64)
    for block, order in ranked_blocks(queries, database, chunk_cells):
        if topk:
            top[block] = order[:, :topk].cpu().numpy()
        for protocol, truth in ground_truth.items():
            for key, value in _block_metrics(order, truth, block, ks).items():
                parts[protocol][key].append(value.cpu().numpy())
    results = {}
    for protocol, truth in ground_truth.items():
        per_query_all = {key: np.concatenate(vals) if vals else np.empty(0) for key, vals in parts[protocol].items()}
        scored = np.flatnonzero(truth.n_positives > 0)
        if scored.size == 0:
            raise ValueError(f"ground truth {protocol!r}: no query has a positive in the database")
        per_query = {key: values[scored] for key, values in per_query_all.items()}
        metrics = {key: float(values.mean()) for key, values in per_query.items()}
        results[protocol] = RetrievalResult(metrics, per_query, scored, n_query, n_db)
        log.info("retrieval (%s): %d queries scored (%d without positives), %d database images, mAP %.4f, MRR %.4f",
                 protocol, scored.size, n_query - scored.size, n_db, metrics["map"], metrics["mrr"])
    return results, top


def _block_metrics(order: torch.Tensor, truth: GroundTruth, block: slice, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-query metrics of one block of rankings (rows × n_db database indices, best first)."""
    device = order.device
    rows, n_db = order.shape
    status = torch.zeros((rows, n_db), dtype=torch.int8, device=device)  # 0 other, 1 positive, 2 junk
    for kind, value in (("positives", 1), ("junk", 2)):
        rows_of, cols_of = truth.block_pairs(kind, block)
        status[torch.from_numpy(rows_of).to(device), torch.from_numpy(cols_of).to(device)] = value
    ranked = status.gather(1, order)
    # A positive's rank among the non-junk images: the junk ranked above it no longer counts.
    rank_without_junk = (ranked != 2).cumsum(dim=1, dtype=torch.int32) - 1
    row, col = (ranked == 1).nonzero(as_tuple=True)  # row-major: each row's positives best first
    rank = rank_without_junk[row, col].to(torch.float64)
    per_row = torch.bincount(row, minlength=rows)
    first_of_row = torch.cumsum(per_row, 0) - per_row
    j = (torch.arange(row.numel(), device=device) - first_of_row[row]).to(torch.float64)  # 0-based positive index
    n_pos = torch.from_numpy(truth.n_positives[block]).to(device=device, dtype=torch.float64)
    precision_before = torch.where(rank == 0, 1.0, j / rank.clamp(min=1.0))
    precision_at = (j + 1.0) / (rank + 1.0)
    zeros = torch.zeros(rows, dtype=torch.float64, device=device)
    out = {"map": zeros.index_add(0, row, 0.5 * (precision_before + precision_at)) / n_pos}
    first_rank = torch.full((rows,), float("inf"), dtype=torch.float64, device=device).scatter_reduce(0, row, rank, "amin")
    out["mrr"] = 1.0 / (first_rank + 1.0)
    for k in ks:
        found = zeros.index_add(0, row, (rank < k).to(torch.float64))
        out[f"precision@{k}"] = found / k
        out[f"recall@{k}"] = found / n_pos
    return out
