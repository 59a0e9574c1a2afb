"""Retrieval: split, ranking and metrics against hand computation and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from bobench.tasks.retrieval import class_folder_split, rank_database, retrieval_metrics

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


def test_chunking_does_not_change_results(monkeypatch) -> None:
    import bobench.tasks.retrieval as retrieval

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=80)
    feats = rng.standard_normal((80, 6))
    query, database = class_folder_split(labels)
    args = (feats[query], labels[query], feats[database], labels[database])
    whole, whole_order = retrieval_metrics(*args), rank_database(args[0], args[2])
    monkeypatch.setattr(retrieval, "CHUNK_CELLS", 1)  # one query per chunk
    chunked, chunked_order = retrieval_metrics(*args), rank_database(args[0], args[2])
    for key in KEYS:
        np.testing.assert_array_equal(whole.per_query[key], chunked.per_query[key])
    np.testing.assert_array_equal(whole_order, chunked_order)


def test_query_without_positive_is_an_error() -> None:
    with pytest.raises(ValueError, match="no positive"):
        retrieval_metrics(np.eye(2), np.array([0, 7]), np.eye(2), np.array([0, 0]))
