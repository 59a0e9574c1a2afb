"""Retrieval: split, exact search and metrics against hand computation, revisitop's definition and brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bobench.retrieval import search
from bobench.retrieval.ground_truth import GroundTruth, revisited_protocols
from bobench.retrieval.metrics import evaluate_retrieval
from bobench.retrieval.search import brute_force_ranking, search_topk
from bobench.retrieval.splits import class_folder_split


def retrieval_metrics(query_x, query_y, db_x, db_y, **kwargs):
    """The class-folder protocol's result (one protocol, positives from labels)."""
    results, _ = evaluate_retrieval(query_x, db_x, {"default": GroundTruth.from_labels(query_y, db_y)}, **kwargs)
    return results["default"]


def rank_database(query_x, db_x, chunk_cells=None):
    return search_topk(query_x, db_x, k=len(db_x), chunk_cells=chunk_cells)

KEYS = ["map", "mrr", "precision@1", "precision@5", "precision@10", "recall@1", "recall@5", "recall@10"]


def test_class_folder_split_known_labels() -> None:
    #          0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18
    labels = [1, 0, 0, 3, 1, 0, 2, 0, 3, 0, 0, 3, 0, 0, 1, 3, 0, 0, 3]
    # class 0: 10 items at 1,2,5,7,9,10,12,13,16,17 -> floor(2.0) = 2 queries: 1, 2
    # class 1: 3 items at 0,4,14 -> floor(0.6) = 0, raised to 1 query: 0
    # class 2: 1 item at 6 -> no query (it stays in the database)
    # class 3: 5 items at 3,8,11,15,18 -> floor(1.0) = 1 query: 3
    query, database = class_folder_split(np.array(labels))
    assert query.tolist() == [0, 1, 2, 3]
    assert database.tolist() == [i for i in range(19) if i not in (0, 1, 2, 3)]


def test_class_folder_split_small_classes_and_string_labels() -> None:
    labels = np.array(["b", "a", "b", "c"])
    query, database = class_folder_split(labels)
    # "a": 1 item -> database only; "b": 2 items -> 1 query (index 0) + 1 database; "c": 1 item.
    assert query.tolist() == [0]
    assert database.tolist() == [1, 2, 3]
    # Even a query fraction of 1 leaves one database item per class, so every query has a positive.
    query, database = class_folder_split(np.array([5, 5, 5]), query_fraction=1.0)
    assert query.tolist() == [0, 1] and database.tolist() == [2]


def hand_made_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Database items are the 10 basis vectors, so a query's similarities are its coordinates."""
    db_x = np.eye(10)
    db_y = np.array([0, 2, 0, 2, 2, 0, 1, 2, 1, 2])
    # Query A (class 0) ranks the database 0, 1, ..., 9: positives 0, 2, 5 at ranks 0, 2, 5.
    # Query B (class 1) ranks it 9, 8, ..., 0: positives 8, 6 at ranks 1, 3.
    query_x = np.array([np.arange(10, 0, -1), np.arange(1, 11)], dtype=float)
    return query_x, np.array([0, 1]), db_x, db_y


def test_rank_database_hand_made() -> None:
    query_x, _, db_x, _ = hand_made_case()
    order = rank_database(query_x, db_x)
    assert order[0].tolist() == list(range(10))
    assert order[1].tolist() == list(range(9, -1, -1))


def test_ties_keep_database_order() -> None:
    db_x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    # Equal similarity to every item: stored order. Along x: items 0 and 2 tie (then 1, 3 tie).
    order = rank_database(np.array([[1.0, 1.0], [1.0, 0.0]]), db_x)
    assert order.tolist() == [[0, 1, 2, 3], [0, 2, 1, 3]]


def test_metrics_hand_made() -> None:
    res = retrieval_metrics(*hand_made_case())
    # Query A, 3 positives at ranks 0, 2, 5 (trapezoid terms (p0 + p1) / 2):
    #   j=0 r=0: (1 + 1/1) / 2 = 1;  j=1 r=2: (1/2 + 2/3) / 2 = 7/12;  j=2 r=5: (2/5 + 3/6) / 2 = 9/20
    #   AP = (1 + 7/12 + 9/20) / 3 = (60 + 35 + 27) / 60 / 3 = 61/90
    #   MRR = 1;  P@1 = 1, P@5 = 2/5, P@10 = 3/10;  R@1 = 1/3, R@5 = 2/3, R@10 = 1
    # Query B, 2 positives at ranks 1, 3:
    #   j=0 r=1: (0/1 + 1/2) / 2 = 1/4;  j=1 r=3: (1/3 + 2/4) / 2 = 5/12;  AP = (1/4 + 5/12) / 2 = 1/3
    #   MRR = 1/2;  P@1 = 0, P@5 = 2/5, P@10 = 2/10;  R@1 = 0, R@5 = 1, R@10 = 1
    expected_a = [61 / 90, 1.0, 1.0, 0.4, 0.3, 1 / 3, 2 / 3, 1.0]
    expected_b = [1 / 3, 0.5, 0.0, 0.4, 0.2, 0.0, 1.0, 1.0]
    for key, a, b in zip(KEYS, expected_a, expected_b):
        np.testing.assert_allclose(res.per_query[key], [a, b], rtol=1e-12, err_msg=key)
    # Means: mAP = (61/90 + 30/90) / 2 = 91/180, MRR = 3/4, P@1 = 1/2, P@5 = 2/5, P@10 = 1/4,
    #        R@1 = 1/6, R@5 = 5/6, R@10 = 1
    expected_mean = [91 / 180, 0.75, 0.5, 0.4, 0.25, 1 / 6, 5 / 6, 1.0]
    assert res.metrics == pytest.approx(dict(zip(KEYS, expected_mean)), rel=1e-12)
    assert (res.n_queries, res.n_database) == (2, 10)


def reference_metrics(query_x, query_y, db_x, db_y, ks=(1, 5, 10)):
    """One query at a time, straight from the definitions, float64."""
    q = query_x / np.linalg.norm(query_x, axis=1, keepdims=True)
    d = db_x / np.linalg.norm(db_x, axis=1, keepdims=True)
    out = {key: [] for key in ["map", "mrr"] + [f"{m}@{k}" for m in ("precision", "recall") for k in ks]}
    for qi in range(len(q)):
        sims = d @ q[qi]
        ranking = sorted(range(len(d)), key=lambda i: (-sims[i], i))
        pos_ranks = [r for r, i in enumerate(ranking) if db_y[i] == query_y[qi]]
        n_pos = len(pos_ranks)
        ap = 0.0
        for j, r in enumerate(pos_ranks):
            precision_0 = 1.0 if r == 0 else j / r
            precision_1 = (j + 1) / (r + 1)
            ap += (precision_0 + precision_1) / 2 / n_pos
        out["map"].append(ap)
        out["mrr"].append(1 / (pos_ranks[0] + 1))
        for k in ks:
            found = sum(1 for r in pos_ranks if r < k)
            out[f"precision@{k}"].append(found / k)
            out[f"recall@{k}"].append(found / n_pos)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=120)
    feats = rng.standard_normal((120, 12)) + 0.8 * rng.standard_normal((6, 12))[labels]
    query, database = class_folder_split(labels)
    q_x, q_y, d_x, d_y = feats[query], labels[query], feats[database], labels[database]
    # Premise: no near-ties, so float32 (library) and float64 (reference) rank alike.
    q_n = q_x / np.linalg.norm(q_x, axis=1, keepdims=True)
    d_n = d_x / np.linalg.norm(d_x, axis=1, keepdims=True)
    assert np.diff(np.sort(q_n @ d_n.T, axis=1), axis=1).min() > 1e-6

    expected = reference_metrics(q_x, q_y, d_x, d_y)
    res = retrieval_metrics(q_x, q_y, d_x, d_y)
    for key in KEYS:
        np.testing.assert_allclose(res.per_query[key], expected[key], rtol=1e-12, err_msg=key)
        assert res.metrics[key] == pytest.approx(expected[key].mean(), rel=1e-12)
    assert res.n_queries == len(query) and res.n_database == len(database)


def test_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=80)
    feats = rng.standard_normal((80, 6))
    query, database = class_folder_split(labels)
    args = (feats[query], labels[query], feats[database], labels[database])
    whole, whole_order = retrieval_metrics(*args), rank_database(args[0], args[2])
    chunked = retrieval_metrics(*args, chunk_cells=1)  # one query per block
    for key in KEYS:
        np.testing.assert_array_equal(whole.per_query[key], chunked.per_query[key])
    np.testing.assert_array_equal(whole_order, rank_database(args[0], args[2], chunk_cells=1))


@pytest.mark.parametrize("chunk_cells", [1, 3 * 500, None])
def test_search_topk_equals_brute_force(chunk_cells) -> None:
    """Random descriptors, plus duplicated database rows (exact ties), against one full argsort."""
    rng = np.random.default_rng(5)
    db = rng.standard_normal((500, 32)).astype(np.float32)
    db[250:300] = db[:50]  # exact ties: the lower index must come first, as in a stable sort
    queries = rng.standard_normal((37, 32)).astype(np.float32)
    expected = brute_force_ranking(queries, db)
    np.testing.assert_array_equal(search_topk(queries, db, k=10, chunk_cells=chunk_cells), expected[:, :10])
    np.testing.assert_array_equal(search_topk(queries, db, k=500, chunk_cells=chunk_cells), expected)
    assert search_topk(queries, db, k=900).shape == (37, 500)  # k beyond the database: all of it


def test_query_blocks_bound_the_similarity_cells() -> None:
    blocks = list(search.query_blocks(10, 4, chunk_cells=9))
    assert [(b.start, b.stop) for b in blocks] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert [(b.start, b.stop) for b in search.query_blocks(3, 100, chunk_cells=1)] == [(0, 1), (1, 2), (2, 3)]


def test_junk_is_removed_before_scoring() -> None:
    """Hand computation: the database ranked 0..9 for one query; positives 1, 4, 8; junk 0 and 3."""
    db = np.eye(10)
    query = np.arange(10, 0, -1, dtype=float)[None]
    truth = GroundTruth.from_lists([[1, 4, 8]], [[0, 3]])
    result = evaluate_retrieval(query, db, {"p": truth})[0]["p"]
    # Without junk the ranking is 1 2 4 5 6 7 8 9: positives at ranks r = 0, 2, 6.
    #   j=0 r=0: (1 + 1) / 2 = 1;  j=1 r=2: (1/2 + 2/3) / 2 = 7/12;  j=2 r=6: (2/6 + 3/7) / 2 = 8/21
    #   AP = (1 + 7/12 + 8/21) / 3 = (84 + 49 + 32) / 84 / 3 = 165/252
    #   MRR = 1; P@1 = 1, P@5 = 2/5, P@10 = 3/10; R@1 = 1/3, R@5 = 2/3, R@10 = 1
    expected = [165 / 252, 1.0, 1.0, 0.4, 0.3, 1 / 3, 2 / 3, 1.0]
    assert result.metrics == pytest.approx(dict(zip(KEYS, expected)), rel=1e-12)
    # The same ranking with junk counted as negatives scores lower: junk must not be.
    plain = evaluate_retrieval(query, db, {"p": GroundTruth.from_lists([[1, 4, 8]])})[0]["p"]
    assert plain.metrics["map"] < result.metrics["map"]


def revisitop_map(ranks: np.ndarray, positives: list, junk: list) -> tuple[float, np.ndarray]:
    """revisitop's compute_map (python/evaluate.py), written out: ranks is (n_db, n_query), 0-based."""
    aps = []
    for q in range(ranks.shape[1]):
        ok = np.array(positives[q])
        if ok.size == 0:
            aps.append(np.nan)
            continue
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, q], ok)]
        junk_at = np.arange(ranks.shape[0])[np.isin(ranks[:, q], np.array(junk[q]))]
        k, ij = 0, 0
        for ip in range(len(pos)):  # each positive moves up by the junk ranked above it
            while ij < len(junk_at) and pos[ip] > junk_at[ij]:
                k, ij = k + 1, ij + 1
            pos[ip] -= k
        ap = 0.0
        for j, rank in enumerate(pos):
            precision_0 = 1.0 if rank == 0 else j / rank
            ap += (precision_0 + (j + 1) / (rank + 1)) / 2 / len(ok)
        aps.append(ap)
    aps = np.array(aps)
    return float(np.nanmean(aps)), aps


def test_revisited_protocols_match_revisitop() -> None:
    """Easy / Medium / Hard on random descriptors with random easy, hard and junk lists."""
    rng = np.random.default_rng(7)
    n_db, n_query = 60, 9
    db, queries = rng.standard_normal((n_db, 8)), rng.standard_normal((n_query, 8))
    easy, hard, junk = [], [], []
    for q in range(n_query):
        images = rng.permutation(n_db)
        n_easy = 0 if q == 0 else int(rng.integers(1, 6))  # query 0: no easy positive (skipped under Easy)
        easy.append(images[:n_easy]); hard.append(images[n_easy : n_easy + 4]); junk.append(images[n_easy + 4 : n_easy + 9])
    protocols = revisited_protocols(easy, hard, junk)
    assert protocols["easy"].positives_of(1).tolist() == sorted(easy[1].tolist())
    assert protocols["easy"].junk_of(1).tolist() == sorted([*junk[1], *hard[1]])
    assert protocols["medium"].positives_of(1).tolist() == sorted([*easy[1], *hard[1]])
    assert protocols["hard"].junk_of(1).tolist() == sorted([*junk[1], *easy[1]])
    results, _ = evaluate_retrieval(queries, db, protocols)
    ranks = brute_force_ranking(queries, db).T
    definitions = {"easy": (easy, [list(j) + list(h) for j, h in zip(junk, hard)]),
                   "medium": ([list(e) + list(h) for e, h in zip(easy, hard)], junk),
                   "hard": (hard, [list(j) + list(e) for j, e in zip(junk, easy)])}
    for name, (ok, ignored) in definitions.items():
        expected_map, expected_aps = revisitop_map(ranks, ok, ignored)
        assert results[name].metrics["map"] == pytest.approx(expected_map, rel=1e-12), name
        np.testing.assert_allclose(results[name].per_query["map"], expected_aps[~np.isnan(expected_aps)], rtol=1e-12)
    assert results["easy"].n_skipped == 1 and results["easy"].scored.tolist() == list(range(1, n_query))
    assert results["medium"].n_skipped == 0


def test_ground_truth_checks_and_round_trip() -> None:
    with pytest.raises(ValueError, match="positive and junk"):
        GroundTruth.from_lists([[1, 2]], [[2]]).check(5)
    with pytest.raises(ValueError, match="outside the database"):
        GroundTruth.from_lists([[7]]).check(5)
    truth = GroundTruth.from_lists([[3, 1, 1], []], [[0], [4, 2]])
    assert truth.positives_of(0).tolist() == [1, 3] and truth.junk_of(1).tolist() == [2, 4]
    again = GroundTruth.from_arrays(truth.arrays("x"), "x")
    for a, b in zip(vars(truth).values(), vars(again).values()):
        np.testing.assert_array_equal(a, b)


def test_query_without_positive_is_skipped_and_all_empty_is_an_error() -> None:
    truth = GroundTruth.from_lists([[0], []])
    result = evaluate_retrieval(np.eye(2), np.eye(2), {"p": truth})[0]["p"]
    assert result.n_skipped == 1 and result.metrics["map"] == 1.0
    with pytest.raises(ValueError, match="no query has a positive"):
        evaluate_retrieval(np.eye(2), np.eye(2), {"p": GroundTruth.from_lists([[], []])})


def test_topk_ties_at_the_boundary_keep_index_order() -> None:
    """Four database images tie for the best score: the top 2 are the two lowest indices, as a stable sort gives."""
    db = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert search_topk(np.array([[1.0, 0.0]]), db, k=2).tolist() == [[1, 2]]
    assert search_topk(np.array([[1.0, 0.0]]), db, k=5).tolist() == [[1, 2, 3, 4, 5]]


def test_a_capped_split_keeps_each_kept_query_s_positives_and_junk():
    """A rehearsal caps a benchmark at its first queries and a small database, re-indexing every protocol."""
    from bobench.retrieval.ground_truth import GroundTruth
    from bobench.retrieval.splits import RetrievalSplit

    database = np.array([f"db{i}.jpg" for i in range(10)])
    easy = GroundTruth.from_lists([[7], [1, 2], [9]], [[8], [], []])
    hard = GroundTruth.from_lists([[7, 3], [2], [9]], [[], [5], []])
    split = RetrievalSplit(Path("."), np.array(["q0", "q1", "q2"]), database, {"easy": easy, "medium": hard},
                           "medium", "rule", 1, query_boxes=np.zeros((3, 4)))
    capped = split.capped(2)
    assert list(capped.queries) == ["q0", "q1"] and capped.query_boxes.shape == (2, 4)
    # needed: 1, 2, 3, 5, 7, 8 (more than the cap: all kept, nothing else added)
    assert list(capped.database) == ["db1.jpg", "db2.jpg", "db3.jpg", "db5.jpg", "db7.jpg", "db8.jpg"]
    for name, truth in (("easy", easy), ("medium", hard)):
        for q in range(2):
            assert [capped.database[i] for i in capped.ground_truth[name].positives_of(q)] == list(database[truth.positives_of(q)])
            assert [capped.database[i] for i in capped.ground_truth[name].junk_of(q)] == list(database[truth.junk_of(q)])
    assert len(split.capped(3).database) == 7 and len(split.capped(20).database) == 10
    assert "rehearsal" in capped.rule
