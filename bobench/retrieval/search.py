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

#: Similarity cells per block of queries (16M: 80 queries against 200k images). With
#: the sort's values and indices and the metric work arrays a block stays around
#: 0.5 GB, and blocks are tall enough for an efficient matrix product.
CHUNK_CELLS = 1 << 24
#: Top-k search keeps only the similarities of a block (4 bytes a cell), so its blocks can be
#: larger: 64M cells (256 MB, 335 queries against 200k images), where the matrix product runs
#: at nearly the speed of one full product on a CPU (benchmarks/bench_retrieval_search.py).
TOPK_CHUNK_CELLS = 1 << 26


def normalised(x: ArrayLike, device: str | torch.device = "cpu") -> torch.Tensor:
    """float32 rows of unit length on ``device``."""
    x = torch.as_tensor(x).to(device=device, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"descriptors must be a 2-d (items, dim) array, got shape {tuple(x.shape)}")
    return F.normalize(x, dim=1)


def query_blocks(n_query: int, n_database: int, chunk_cells: int | None = None) -> Iterator[slice]:
    """Consecutive query slices of at most ``chunk_cells`` (default :data:`CHUNK_CELLS`) similarity cells
    (at least one query)."""
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


def topk_block(queries: torch.Tensor, database: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best database indices per query, ordered as :func:`rank_block` would order them.

    ``torch.topk`` is much cheaper than a full sort but breaks ties arbitrarily: its result is put
    in (score, index) order, and a row whose ``k``-th and ``k+1``-th scores tie (so which tied images
    make the cut is arbitrary) is ranked in full instead.
    """
    similarity = queries @ database.T
    values, indices = similarity.topk(min(k + 1, similarity.shape[1]), dim=1)
    boundary_tie = (values[:, k - 1] == values[:, k] if values.shape[1] > k
                    else torch.zeros(len(values), dtype=torch.bool, device=values.device))
    values, indices = values[:, :k], indices[:, :k]
    order = torch.sort(indices, dim=1).indices  # by index, then a stable sort by score: ties keep index order
    indices, values = indices.gather(1, order), values.gather(1, order)
    indices = indices.gather(1, torch.sort(values, dim=1, descending=True, stable=True).indices)
    if bool(boundary_tie.any()):
        rows = boundary_tie.nonzero(as_tuple=True)[0]
        indices[rows] = torch.sort(similarity[rows], dim=1, descending=True, stable=True).indices[:, :k]
    return indices


def search_topk(
    query_x: ArrayLike, database_x: ArrayLike, k: int, device: str | torch.device = "cpu", chunk_cells: int | None = None
) -> np.ndarray:
    """The ``k`` best database indices per query ``(n_query, min(k, n_database))``, exact, in bounded memory."""
    queries, database = normalised(query_x, device), normalised(database_x, device)
    k = min(int(k), database.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for block in query_blocks(queries.shape[0], database.shape[0], chunk_cells or TOPK_CHUNK_CELLS):
        out[block] = topk_block(queries[block], database, k).cpu().numpy()
    return out


def brute_force_ranking(query_x: ArrayLike, database_x: ArrayLike) -> np.ndarray:
    """The full ``(n_query, n_database)`` ranking from one similarity matrix (reference only)."""
    queries, database = normalised(query_x), normalised(database_x)
    similarity = (queries @ database.T).numpy()
    return np.argsort(-similarity, axis=1, kind="stable")
