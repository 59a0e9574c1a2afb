"""Image retrieval with BoB's class-folder protocol.

Split (as in the original bob-retrieval code): within each class, items keep
their stored order; the first ``floor(0.2 * n_c)`` are queries (at least one
when the class has two or more items, and never the whole class, so every
query has a positive) and the rest join the database. A query's positives
are the database items of its class.

Ranking: descriptors are L2-normalised and the database is sorted by dot
product, descending; exact ties keep database order (stable sort), so the
ranking is reproducible.

Metrics, per query and then averaged over queries, all fractions in [0, 1]:

* ``map``: average precision as revisitop's ``compute_ap`` (trapezoidal
  rule between the precision just before and just at each positive), not
  the step-wise "precision at each hit" AP; the two differ most for short
  positive lists. Chosen because BoB's retrieval numbers come from that code.
* ``mrr``: ``1 / rank`` of the first positive (1-based).
* ``precision@k``: positives among the first ``k`` divided by ``k`` (also
  when the database holds fewer than ``k`` items).
* ``recall@k``: positives among the first ``k`` divided by all positives.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor

#: Similarity cells per query chunk; bounds the several (chunk, n_db) work
#: arrays to a few hundred MB.
CHUNK_CELLS = 1 << 22


@dataclass
class RetrievalResult:
    #: "map", "mrr", "precision@k", "recall@k" (k in ``ks``), averaged over queries.
    metrics: dict[str, float]
    #: same keys, one value per query, in query order (for bootstrap CIs).
    per_query: dict[str, np.ndarray]
    n_queries: int
    n_database: int


def class_folder_split(labels: np.ndarray, query_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(query_idx, database_idx)``, both ascending indices into ``labels``.

    Per class, the first ``floor(query_fraction * n_c)`` items in stored order
    become queries, clipped to ``[1, n_c - 1]`` for classes with ``n_c >= 2``;
    single-item classes go wholly to the database.
    """
    if not 0.0 <= query_fraction <= 1.0:
        raise ValueError(f"query_fraction must lie in [0, 1], got {query_fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    order = np.argsort(labels, kind="stable")
    _, starts, inverse, counts = np.unique(
        labels[order], return_index=True, return_inverse=True, return_counts=True
    )
    n_query = np.array([math.floor(query_fraction * n) for n in counts], dtype=np.int64)
    n_query = np.where(counts >= 2, np.clip(n_query, 1, counts - 1), 0)
    rank_in_class = np.arange(labels.size) - starts[inverse]
    is_query = np.zeros(labels.size, dtype=bool)
    is_query[order] = rank_in_class < n_query[inverse]
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)


def _normalized(x: ArrayLike, device: str | torch.device) -> torch.Tensor:
    return F.normalize(torch.as_tensor(x).to(device=device, dtype=torch.float32), dim=1)


def _chunk_rows(n_db: int) -> int:
    return max(1, CHUNK_CELLS // max(n_db, 1))


def _rank(queries: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """Database indices by descending similarity; stable, so ties keep index order."""
    return torch.sort(queries @ db.T, dim=1, descending=True, stable=True).indices


def rank_database(query_x: ArrayLike, db_x: ArrayLike, device: str | torch.device = "cpu") -> np.ndarray:
    """Full ranking ``(n_query, n_db)`` of database indices, best first."""
    queries, db = _normalized(query_x, device), _normalized(db_x, device)
    step = _chunk_rows(db.shape[0])
    parts = [_rank(queries[i : i + step], db).cpu() for i in range(0, queries.shape[0], step)]
    if not parts:
        return np.empty((0, db.shape[0]), dtype=np.int64)
    return torch.cat(parts).numpy()


def _chunk_metrics(relevant: torch.Tensor, ks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-query metrics from a boolean ``(queries, n_db)`` relevance matrix in rank order."""
    n_db = relevant.shape[1]
    hits = relevant.cumsum(dim=1, dtype=torch.int64)
    n_pos = hits[:, -1].to(torch.float64)
    hits_f = hits.to(torch.float64)
    rank = torch.arange(n_db, device=relevant.device, dtype=torch.float64)
    # revisitop: the j-th positive (0-based) at 0-based rank r adds
    # ((j / r if r else 1) + (j + 1) / (r + 1)) / 2 / n_pos, with j + 1 = hits[r].
    precision_before = torch.where(rank == 0, 1.0, (hits_f - 1.0) / rank.clamp(min=1.0))
    precision_at = hits_f / (rank + 1.0)
    trapezoid = 0.5 * (precision_before + precision_at)
    out = {
        "map": (trapezoid * relevant).sum(dim=1) / n_pos,
        # Ranks before the first positive are exactly those with zero hits so far.
        "mrr": 1.0 / ((hits == 0).sum(dim=1).to(torch.float64) + 1.0),
    }
    for k in ks:
        found = hits_f[:, min(k, n_db) - 1]
        out[f"precision@{k}"] = found / k
        out[f"recall@{k}"] = found / n_pos
    return out


def retrieval_metrics(
    query_x: ArrayLike,
    query_y: ArrayLike,
    db_x: ArrayLike,
    db_y: ArrayLike,
    ks: tuple[int, ...] = (1, 5, 10),
    device: str | torch.device = "cpu",
) -> RetrievalResult:
    """Rank the database for every query and score it (see the module docstring).

    Every query must have at least one positive in the database; the
    class-folder split guarantees that, and a query without one means the
    inputs are wrong, so it raises instead of silently scoring zero.
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive, got {ks}")
    queries, db = _normalized(query_x, device), _normalized(db_x, device)
    q_labels = torch.as_tensor(query_y).to(device=device, dtype=torch.long)
    db_labels = torch.as_tensor(db_y).to(device=device, dtype=torch.long)
    if db.shape[0] == 0:
        raise ValueError("the retrieval database is empty")
    keys = ["map", "mrr"] + [f"{m}@{k}" for m in ("precision", "recall") for k in ks]

    parts: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    step = _chunk_rows(db.shape[0])
    for start in range(0, queries.shape[0], step):
        order = _rank(queries[start : start + step], db)
        relevant = db_labels[order] == q_labels[start : start + step, None]
        missing = ~relevant.any(dim=1)
        if bool(missing.any()):
            first = start + int(missing.nonzero()[0, 0])
            raise ValueError(f"query {first} has no positive in the database")
        for key, value in _chunk_metrics(relevant, ks).items():
            parts[key].append(value.cpu())

    per_query = {
        key: (torch.cat(vals).numpy() if vals else np.empty(0, dtype=np.float64))
        for key, vals in parts.items()
    }
    metrics = {key: float(v.mean()) if v.size else float("nan") for key, v in per_query.items()}
    log.info(
        "retrieval: %d queries, %d database items, mAP %.4f",
        queries.shape[0], db.shape[0], metrics["map"],
    )
    return RetrievalResult(
        metrics=metrics, per_query=per_query, n_queries=int(queries.shape[0]), n_database=int(db.shape[0])
    )
