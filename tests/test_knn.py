"""kNN: known answers on hand-made banks, DINO weighting, clipping, chunking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bobench.tasks.knn import KnnOptions, knn_classify


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_nearest_cluster_wins() -> None:
    # Class 0 around 0 degrees, class 1 around 90 degrees; lengths vary to check normalisation.
    bank = np.array([unit(-5), unit(0), [5 * v for v in unit(5)], unit(85), unit(90), [0.1 * v for v in unit(95)]])
    bank_y = np.array([0, 0, 0, 1, 1, 1])
    queries = np.array([unit(10), [3 * v for v in unit(80)], unit(30), unit(60)])
    res = knn_classify(bank, bank_y, queries, np.array([0, 1, 0, 1]), 2, KnnOptions(k=3))
    np.testing.assert_array_equal(res.pred, [0, 1, 0, 1])
    assert res.top1 == 1.0 and res.correct.all() and res.k == 3


def test_weights_follow_temperature() -> None:
    # Query at 0 degrees: one class-1 item at similarity 1.0, two class-0 items at cos(36.87) = 0.8.
    bank = np.array([unit(0), unit(36.87), unit(-36.87)])
    bank_y = np.array([1, 0, 0])
    query = np.array([unit(0)])
    # T = 0.07: class 1 gets exp(1/0.07) = e^14.29, class 0 gets 2 e^11.43; class 1 wins by ~8.7x.
    sharp = knn_classify(bank, bank_y, query, np.array([1]), 2, KnnOptions(k=3, temperature=0.07))
    # T = 10: weights are near-uniform (e^0.1 vs 2 e^0.08), so the two class-0 votes win.
    flat = knn_classify(bank, bank_y, query, np.array([1]), 2, KnnOptions(k=3, temperature=10.0))
    assert sharp.pred.tolist() == [1] and flat.pred.tolist() == [0]
    assert sharp.temperature == 0.07 and flat.temperature == 10.0


def test_tiny_temperature_is_one_nn_without_overflow() -> None:
    rng = np.random.default_rng(0)
    bank, bank_y = rng.standard_normal((50, 8)), rng.integers(0, 4, 50)
    queries = rng.standard_normal((30, 8))
    res = knn_classify(bank, bank_y, queries, np.zeros(30, dtype=int), 4, KnnOptions(k=10, temperature=1e-4))
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_array_equal(res.pred, bank_y[(q @ b.T).argmax(1)])


def test_k_is_clipped_to_bank_size() -> None:
    bank = np.array([unit(0), unit(40), unit(50)])
    bank_y = np.array([0, 1, 1])
    res = knn_classify(bank, bank_y, np.array([unit(10)]), np.array([1]), 3, KnnOptions(k=20, temperature=1.0))
    assert res.k == 3
    # All three vote: class 1's two moderately close items outweigh class 0's one close item at T=1.
    assert res.pred.tolist() == [1]


def reference_knn(bank, bank_y, queries, num_classes, k, temperature):
    """Straight from the definition, one query at a time, in float64."""
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    preds = []
    for q in queries:
        sims = b @ (q / np.linalg.norm(q))
        top = np.argsort(-sims, kind="stable")[:k]
        scores = np.zeros(num_classes)
        for i in top:
            scores[bank_y[i]] += math.exp(sims[i] / temperature)
        preds.append(int(scores.argmax()))
    return np.array(preds)


def test_matches_reference_and_is_chunk_invariant() -> None:
    rng = np.random.default_rng(1)
    bank, bank_y = rng.standard_normal((200, 16)), rng.integers(0, 7, 200)
    queries, query_y = rng.standard_normal((75, 16)), rng.integers(0, 7, 75)
    expected = reference_knn(bank, bank_y, queries, 7, k=20, temperature=0.07)
    for chunk in (1, 7, 1024):
        res = knn_classify(bank, bank_y, queries, query_y, 7, KnnOptions(chunk_size=chunk))
        np.testing.assert_array_equal(res.pred, expected)
        np.testing.assert_array_equal(res.correct, expected == query_y)
        assert res.top1 == pytest.approx(np.mean(expected == query_y))


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        knn_classify(np.ones((2, 2)), np.array([0, 5]), np.ones((1, 2)), np.array([0]), 2)
    with pytest.raises(ValueError):
        knn_classify(np.ones((2, 2)), np.array([0, 1]), np.ones((1, 2)), np.array([0]), 2, KnnOptions(k=0))
