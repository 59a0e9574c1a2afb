"""Retrieval ground truth: per query, the database images that are positives and those that are junk.

Stored as CSR arrays (an index pointer and the concatenated, sorted indices of
each query's list), so a million-image database with a few positives per
query costs a few megabytes. No torch here: the config check imports the
dataset loaders, which build ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

REVISITED_PROTOCOLS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class GroundTruth:
    """Per query, sorted database indices of its positives and of its junk images (CSR arrays)."""

    positives_indptr: np.ndarray
    positives: np.ndarray
    junk_indptr: np.ndarray
    junk: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.positives_indptr) - 1

    def positives_of(self, query: int) -> np.ndarray:
        return self.positives[self.positives_indptr[query] : self.positives_indptr[query + 1]]

    def junk_of(self, query: int) -> np.ndarray:
        return self.junk[self.junk_indptr[query] : self.junk_indptr[query + 1]]

    @property
    def n_positives(self) -> np.ndarray:
        return np.diff(self.positives_indptr)

    @classmethod
    def from_lists(
        cls, positives: Sequence[Sequence[int]], junk: Sequence[Sequence[int]] | None = None
    ) -> GroundTruth:
        junk = junk if junk is not None else [[] for _ in positives]
        if len(junk) != len(positives):
            raise ValueError(f"ground truth: {len(positives)} positive lists but {len(junk)} junk lists")
        pos_ptr, pos = _csr(positives)
        junk_ptr, junk_idx = _csr(junk)
        return cls(pos_ptr, pos, junk_ptr, junk_idx)

    @classmethod
    def from_labels(cls, query_labels: np.ndarray, database_labels: np.ndarray) -> GroundTruth:
        """Class-folder ground truth: a query's positives are the database images of its class."""
        database_labels = np.asarray(database_labels)
        members = {label: np.flatnonzero(database_labels == label) for label in np.unique(database_labels)}
        empty = np.empty(0, dtype=np.int64)
        return cls.from_lists([members.get(label, empty) for label in np.asarray(query_labels)])

    def check(self, n_database: int, what: str = "ground truth") -> None:
        """Indices inside the database, and no image both a positive and junk of one query."""
        for name, indices in (("positive", self.positives), ("junk", self.junk)):
            if indices.size and (indices.min() < 0 or indices.max() >= n_database):
                raise ValueError(f"{what}: a {name} index lies outside the database of {n_database} images")
        if len(self.junk_indptr) != len(self.positives_indptr):
            raise ValueError(f"{what}: positive and junk lists cover different numbers of queries")
        for query in range(self.n_queries):
            both = np.intersect1d(self.positives_of(query), self.junk_of(query))
            if both.size:
                raise ValueError(f"{what}: query {query} lists database image {int(both[0])} as positive and junk")

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The four arrays under ``<prefix>_…`` names (for one npz holding several protocols)."""
        return {
            f"{prefix}_positives_indptr": self.positives_indptr, f"{prefix}_positives": self.positives,
            f"{prefix}_junk_indptr": self.junk_indptr, f"{prefix}_junk": self.junk,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> GroundTruth:
        return cls(*(np.asarray(arrays[f"{prefix}_{name}"], dtype=np.int64)
                     for name in ("positives_indptr", "positives", "junk_indptr", "junk")))

    def block_pairs(self, kind: str, block: slice) -> tuple[np.ndarray, np.ndarray]:
        """(row within the block, database index) of every positive (or junk) image of the block's queries."""
        indptr, indices = (self.positives_indptr, self.positives) if kind == "positives" else (self.junk_indptr, self.junk)
        counts = np.diff(indptr[block.start : block.stop + 1])
        rows = np.repeat(np.arange(len(counts)), counts)
        cols = indices[indptr[block.start] : indptr[block.stop]]
        return rows, cols


def _csr(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.unique(np.asarray(item, dtype=np.int64)) for item in lists]
    indptr = np.zeros(len(arrays) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(a) for a in arrays])
    return indptr, (np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)).astype(np.int64)


def revisited_protocols(
    easy: Sequence[Sequence[int]], hard: Sequence[Sequence[int]], junk: Sequence[Sequence[int]]
) -> dict[str, GroundTruth]:
    """The Easy, Medium and Hard views of revisited Oxford/Paris annotations."""
    union = [list(a) + list(b) for a, b in zip(easy, hard)]
    return {
        "easy": GroundTruth.from_lists(easy, [list(j) + list(h) for j, h in zip(junk, hard)]),
        "medium": GroundTruth.from_lists(union, junk),
        "hard": GroundTruth.from_lists(hard, [list(j) + list(e) for j, e in zip(junk, easy)]),
    }
