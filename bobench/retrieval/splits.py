"""Query/database splits: the class-folder rule and the versioned split files.

BoB's retrieval code takes its queries and database from split files and
mappings it never published (iNat, GLDv2, Copydays' ``qvmapping.p``), so the
workflow writes them: ``data/retrieval/<id>/``::

    queries.npy        unicode (n_query,)     image paths relative to split.json's image_root
    database.npy       unicode (n_database,)  likewise
    ground_truth.npz   per protocol: CSR arrays of positives and junk (bobench.retrieval.ground_truth.GroundTruth);
                       query_boxes where the dataset gives the queries' objects (revisited Oxford/Paris)
    split.json         written last: split_version, protocols, counts, the rule in words,
                       source provenance and a sha256 manifest of the three files above

Each loader states its rule's ``split_version``; changing a rule means a new
version, and every result record cites the version and the manifest's hash,
so two numbers are comparable exactly when they cite the same split.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bobench.data_faults import RERUN, unseal
from bobench.datasets.images import ImageFiles
from bobench.io import read_json, save_npy, save_npz, sha256_file, write_json
from bobench.provenance import canonical_hash
from bobench.retrieval.ground_truth import GroundTruth

FORMAT_VERSION = 1
SPLIT_FILENAME = "split.json"
ARRAY_FILES = ("queries.npy", "database.npy", "ground_truth.npz")

def class_folder_rule(query_fraction: float = 0.2) -> str:
    """BoB's class-folder split rule in words, for split files and result records."""
    return (
        "Class folders, files sorted by name within each class (after keeping the first `per_class` files where set); "
        f"the first floor({query_fraction} * n) files of each class are queries (at least one for a class of two or more, never "
        "the whole class), the rest the database; a query's positives are the database images of its class."
    )


def prepared_split_files() -> list[str]:
    """The files of a prepared retrieval folder, ``split.json`` last (Snakemake outputs)."""
    return [*ARRAY_FILES, SPLIT_FILENAME]


def class_folder_split(labels: np.ndarray, query_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(query_idx, database_idx)``, both ascending indices into ``labels``.

    Per class, the first ``floor(query_fraction * n_c)`` items in stored order
    become queries (BoB's ``TwoLeveldataset``), clipped to ``[1, n_c - 1]`` for
    classes with ``n_c >= 2`` so that every class is queried and every query has
    a positive; single-item classes go wholly to the database.
    """
    if not 0.0 <= query_fraction <= 1.0:
        raise ValueError(f"query_fraction must lie in [0, 1], got {query_fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    order = np.argsort(labels, kind="stable")
    _, starts, inverse, counts = np.unique(labels[order], return_index=True, return_inverse=True, return_counts=True)
    n_query = np.array([math.floor(query_fraction * n) for n in counts], dtype=np.int64)
    n_query = np.where(counts >= 2, np.clip(n_query, 1, counts - 1), 0)
    rank_in_class = np.arange(labels.size) - starts[inverse]
    is_query = np.zeros(labels.size, dtype=bool)
    is_query[order] = rank_in_class < n_query[inverse]
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)


@dataclass
class RetrievalSplit:
    """What a retrieval loader hands over: the two image lists and the ground truth of each protocol."""

    image_root: Path
    queries: np.ndarray
    database: np.ndarray
    ground_truth: dict[str, GroundTruth]
    primary: str  # the protocol results are ranked by (revisited Oxford/Paris: BoB's medium)
    rule: str  # how queries, database and positives were chosen, in words
    split_version: int
    provenance: dict[str, Any] = field(default_factory=dict)
    #: (n_query, 4) pixel boxes x1, y1, x2, y2 of the queries' objects (revisited Oxford/Paris), or None
    query_boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.queries = np.asarray(self.queries, dtype=str)
        self.database = np.asarray(self.database, dtype=str)
        if self.primary not in self.ground_truth:
            raise ValueError(f"primary protocol {self.primary!r} is not among {sorted(self.ground_truth)}")
        for name, truth in self.ground_truth.items():
            if truth.n_queries != len(self.queries):
                raise ValueError(f"protocol {name!r} covers {truth.n_queries} queries, the split has {len(self.queries)}")
            truth.check(len(self.database), f"protocol {name!r}")

    @classmethod
    def from_class_folders(
        cls, image_root: Path, paths: np.ndarray, labels: np.ndarray, split_version: int, provenance: dict[str, Any]
    ) -> RetrievalSplit:
        """BoB's class-folder protocol on files already sorted within each class."""
        query_idx, db_idx = class_folder_split(labels)
        truth = GroundTruth.from_labels(labels[query_idx], labels[db_idx])
        return cls(image_root, paths[query_idx], paths[db_idx], {"default": truth}, "default",
                   class_folder_rule(), split_version, provenance)

    def capped(self, max_images: int) -> RetrievalSplit:
        """The first ``max_images`` queries and a database of at most ``max_images`` images (more only where
        those queries' positives and junk need them), every protocol's ground truth re-indexed: a
        rehearsal's cap, so that a stand-in benchmark costs seconds per backbone."""
        n_queries = min(max_images, len(self.queries))
        needed = sorted({int(i) for truth in self.ground_truth.values() for q in range(n_queries)
                         for i in (*truth.positives_of(q), *truth.junk_of(q))})
        others = [i for i in range(len(self.database)) if i not in set(needed)]
        keep = np.array(sorted(needed + others[: max(0, max_images - len(needed))]), dtype=np.int64)
        new_index = {int(old): new for new, old in enumerate(keep)}
        truth = {
            name: GroundTruth.from_lists(
                [[new_index[int(i)] for i in t.positives_of(q)] for q in range(n_queries)],
                [[new_index[int(i)] for i in t.junk_of(q)] for q in range(n_queries)],
            )
            for name, t in self.ground_truth.items()
        }
        return replace(
            self, queries=self.queries[:n_queries], database=self.database[keep], ground_truth=truth,
            rule=f"{self.rule} (rehearsal: capped at its first {n_queries} queries and {len(keep)} database images)",
            query_boxes=None if self.query_boxes is None else self.query_boxes[:n_queries],
        )

    def query_files(self, crop: bool = False) -> ImageFiles:
        """The query images; ``crop`` cuts them to their boxes where the dataset has them."""
        return ImageFiles(self.image_root, self.queries, self.query_boxes if crop else None)

    def database_files(self) -> ImageFiles:
        return ImageFiles(self.image_root, self.database)


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of named arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_split(out_dir: str | Path, split: RetrievalSplit, info: Mapping[str, Any]) -> dict[str, Any]:
    """Write the split files, ``split.json`` last (an existing one is removed first); return its content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SPLIT_FILENAME).unlink(missing_ok=True)
    save_npy(out_dir / "queries.npy", split.queries)
    save_npy(out_dir / "database.npy", split.database)
    arrays = {key: value for name, truth in sorted(split.ground_truth.items()) for key, value in truth.arrays(name).items()}
    if split.query_boxes is not None:
        arrays["query_boxes"] = np.asarray(split.query_boxes, dtype=float)
    save_npz(out_dir / "ground_truth.npz", **arrays)
    # np.savez stamps the zip with the time, so the ground truth is hashed by content.
    manifest = {"queries.npy": sha256_file(out_dir / "queries.npy"), "database.npy": sha256_file(out_dir / "database.npy"),
                "ground_truth.npz": arrays_sha256(arrays)}
    meta = {
        **info,
        "format_version": FORMAT_VERSION,
        "split_version": split.split_version,
        "split_sha256": canonical_hash(manifest),
        "rule": split.rule,
        "image_root": str(Path(split.image_root).resolve()),
        "protocols": sorted(split.ground_truth),
        "primary_protocol": split.primary,
        "sizes": {
            "queries": len(split.queries),
            "database": len(split.database),
            **{f"positives_{name}": int(truth.positives.size) for name, truth in sorted(split.ground_truth.items())},
        },
        "source": split.provenance,
        "manifest": manifest,
    }
    write_json(out_dir / SPLIT_FILENAME, meta)
    return meta


def load_split(out_dir: str | Path, verify: bool = False) -> tuple[RetrievalSplit, dict[str, Any]]:
    """Open a prepared retrieval folder; ``verify`` re-checks the manifest's hashes."""
    out_dir = Path(out_dir)
    meta_path = out_dir / SPLIT_FILENAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: the retrieval split in {out_dir} is unfinished or was never "
                                f"written; {RERUN} to make it (rule prepare_retrieval_dataset)")

    def fault(problem: str) -> ValueError:
        # A job reads with verify: it unseals a damaged split, so that the next run makes it again.
        if not verify:
            return ValueError(f"{problem}; rerun prepare_retrieval_dataset")
        return ValueError(unseal(meta_path, "prepare_retrieval_dataset", f"retrieval split {out_dir}: {problem}"))

    try:
        meta = read_json(meta_path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fault(f"{meta_path} is not valid JSON ({exc})") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise fault(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    try:
        with np.load(out_dir / "ground_truth.npz", allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise fault(f"{out_dir / 'ground_truth.npz'} cannot be read ({exc})") from exc
    if verify:
        actual = {name: sha256_file(out_dir / name) for name in ("queries.npy", "database.npy")}
        actual["ground_truth.npz"] = arrays_sha256(arrays)
        for name, expected in meta["manifest"].items():
            if actual[name] != expected:
                raise fault(f"{out_dir / name} fails its checksum: sha256 in {meta_path} {expected}, file has {actual[name]}")
    truth = {name: GroundTruth.from_arrays(arrays, name) for name in meta["protocols"]}
    split = RetrievalSplit(
        image_root=Path(meta["image_root"]),
        queries=np.load(out_dir / "queries.npy", allow_pickle=False),
        database=np.load(out_dir / "database.npy", allow_pickle=False),
        ground_truth=truth,
        primary=meta["primary_protocol"],
        rule=meta["rule"],
        split_version=meta["split_version"],
        provenance=meta["source"],
        query_boxes=arrays.get("query_boxes"),
    )
    return split, meta
