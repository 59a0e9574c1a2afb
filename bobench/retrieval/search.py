"""Exact retrieval search: the database ranked for each query, best first.

Descriptors are L2-normalised and compared by dot product (cosine similarity).
The ranking is a stable descending sort, so exact ties keep database order and
every run ranks alike. Queries are processed in blocks of ``chunk_cells //
n_database`` rows: memory is bounded by ``chunk_cells`` similarity cells (plus
the sort's indices), never by ``n_query × n_database``, which for GLDv2
(~760k database images) would not fit. :func:`brute_force_ranking` holds the
whole matrix; it is the reference the tests and the benchmark compare with.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor

#: Similarity cells per block of queries; with the sort's values and indices and
#: the metric work arrays this bounds a block to a few hundred MB.
CHUNK_CELLS = 1 << 22


def normalised(x: ArrayLike, device: str | torch.device = "cpu") -> torch.Tensor:
    """float32 rows of unit length on ``device``."""
    x = torch.as_tensor(x).to(device=device, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"descriptors must be a 2-d (items, dim) array, got shape {tuple(x.shape)}")
    return F.normalize(x, dim=1)


def query_blocks(n_query: int, n_database: int, chunk_cells: int | None = None) -> Iterator[slice]:
    """Consecutive query slices of at most ``chunk_cells`` similarity cells (at least one query)."""
    rows = max(1, (chunk_cells or CHUNK_CELLS) // max(n_database, 1))
    for start in range(0, n_query, rows):
        yield slice(start, min(start + rows, n_query))


def rank_block(queries: torch.Tensor, database: torch.Tensor) -> torch.Tensor:
    """Database indices by descending similarity, one row per query; ties keep index order."""
    return torch.sort(queries @ database.T, dim=1, descending=True, stable=True).indices


def ranked_blocks(
    queries: torch.Tensor, database: torch.Tensor, chunk_cells: int | None = None
) -> Iterator[tuple[slice, torch.Tensor]]:
    """``(query slice, full ranking of those queries)`` for normalised descriptors, block by block."""
    for block in query_blocks(queries.shape[0], database.shape[0], chunk_cells):
        yield block, rank_block(queries[block], database)


def search_topk(
    query_x: ArrayLike, database_x: ArrayLike, k: int, device: str | torch.device = "cpu", chunk_cells: int | None = None
) -> np.ndarray:
    """The ``k`` best database indices per query ``(n_query, min(k, n_database))``, exact, in bounded memory."""
    queries, database = normalised(query_x, device), normalised(database_x, device)
    k = min(int(k), database.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for block, order in ranked_blocks(queries, database, chunk_cells):
        out[block] = order[:, :k].cpu().numpy()
    return out


def brute_force_ranking(query_x: ArrayLike, database_x: ArrayLike) -> np.ndarray:
    """The full ``(n_query, n_database)`` ranking from one similarity matrix (reference only)."""
    queries, database = normalised(query_x), normalised(database_x)
    similarity = (queries @ database.T).numpy()
    return np.argsort(-similarity, axis=1, kind="stable")
