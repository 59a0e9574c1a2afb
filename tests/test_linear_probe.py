"""The torch probe must solve scikit-learn's problem, select C honestly and be reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import bobench.tasks.linear_probe as lp
from bobench.tasks.linear_probe import ProbeOptions, fit_logistic_regression, linear_probe


def sklearn_objective(x: np.ndarray, y: np.ndarray, weight: np.ndarray, bias: np.ndarray, c: float) -> float:
    """C * sum_i CE + 0.5 * ||W||^2, written out in float64 numpy."""
    logits = x.astype(np.float64) @ weight.astype(np.float64).T + bias.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    ce = lse - logits[np.arange(len(y)), y]
    return float(c * ce.sum() + 0.5 * (weight.astype(np.float64) ** 2).sum())


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    x, y = x[perm], y[perm]
    train, test = slice(0, 1200), slice(1200, None)
    mean, std = x[train].mean(0), x[train].std(0)
    std[std == 0] = 1.0
    z = ((x - mean) / std).astype(np.float32)
    return z[train], y[train], z[test], y[test]


def gaussian_splits(seed: int = 0, dim: int = 32, num_classes: int = 5, sep: float = 0.6):
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((num_classes, dim))
    splits = []
    for n in (300, 100, 150):
        y = rng.integers(0, num_classes, size=n)
        splits += [(means[y] + rng.standard_normal((n, dim)) + 3.0).astype(np.float32), y]
    return splits


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_fit_reaches_sklearn_objective(digits, c: float) -> None:
    x, y, x_test, y_test = digits
    with threadpool_limits(1):
        sk = LogisticRegression(C=c, max_iter=10_000, tol=1e-10).fit(x.astype(np.float64), y)
    sk_obj = sklearn_objective(x, y, sk.coef_, sk.intercept_, c)

    for dtype, tol, rel_tol in (("float64", 1e-9, 1e-9), ("float32", 1e-6, 1e-5)):
        options = ProbeOptions(dtype=dtype, tolerance=tol, max_iter=5000)
        weight, bias, n_iter = fit_logistic_regression(x, y, c, 10, options)
        ours = sklearn_objective(x, y, weight.numpy(), bias.numpy(), c)
        assert 0 < n_iter < 5000
        # sklearn's solution is (numerically) optimal: we may not beat it by more than noise.
        assert abs(ours - sk_obj) <= rel_tol * sk_obj, (dtype, ours, sk_obj)
        acc = float(((x_test @ weight.numpy().T + bias.numpy()).argmax(1) == y_test).mean())
        assert abs(acc - sk.score(x_test, y_test)) <= 0.01


def test_library_objective_matches_explicit_one(digits) -> None:
    x, y, _, _ = digits
    rng = np.random.default_rng(1)
    weight, bias = rng.standard_normal((10, x.shape[1])), rng.standard_normal(10)
    ours = lp.logistic_objective(
        torch.tensor(x, dtype=torch.float64), torch.tensor(y), torch.tensor(weight), torch.tensor(bias), 0.3
    )
    assert float(ours) == pytest.approx(sklearn_objective(x, y, weight, bias, 0.3), rel=1e-12)


def test_probe_selects_val_best_and_refits_on_train_val(monkeypatch) -> None:
    tr_x, tr_y, va_x, va_y, te_x, te_y = gaussian_splits()
    calls: list[tuple[float, np.ndarray]] = []

    def recording_fit(x, y, c, num_classes, options, init=None, device="cpu"):
        calls.append((c, torch.as_tensor(x).double().numpy()))
        return fit_logistic_regression(x, y, c, num_classes, options, init=init, device=device)

    monkeypatch.setattr(lp, "fit_logistic_regression", recording_fit)
    grid = (1e-4, 1e-2, 1.0, 100.0)
    res = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, 5, ProbeOptions(c_grid=grid))

    # Sweep fits see exactly the train rows, z-scored with train statistics only.
    tr_mean, tr_std = tr_x.astype(np.float64).mean(0), tr_x.astype(np.float64).std(0)
    assert [c for c, _ in calls[:-1]] == sorted(grid)
    for _, seen in calls[:-1]:
        np.testing.assert_allclose(seen, (tr_x - tr_mean) / tr_std, atol=1e-5)
    # The refit sees train+val, re-standardised on those rows, at the chosen C.
    final_c, final_x = calls[-1]
    all_x = np.concatenate([tr_x, va_x]).astype(np.float64)
    assert final_c == res.chosen_c
    np.testing.assert_allclose(final_x, (all_x - all_x.mean(0)) / all_x.std(0), atol=1e-5)

    best = max(res.val_top1_per_c.values())
    assert res.chosen_c == min(c for c, acc in res.val_top1_per_c.items() if acc == best)
    assert set(res.val_top1_per_c) == set(grid)
    assert res.test_correct.shape == te_y.shape and res.test_correct.dtype == bool
    np.testing.assert_array_equal(res.test_correct, res.test_pred == te_y)
    assert res.test_top1 == pytest.approx(res.test_correct.mean())
    assert res.fit_seconds > 0


def test_no_refit_scores_the_train_only_model(monkeypatch) -> None:
    tr_x, tr_y, va_x, va_y, te_x, te_y = gaussian_splits()
    n_calls = []
    original = fit_logistic_regression
    monkeypatch.setattr(lp, "fit_logistic_regression", lambda *a, **k: n_calls.append(1) or original(*a, **k))
    grid = (1e-2, 1.0)
    linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, 5, ProbeOptions(c_grid=grid, refit_on_train_val=False))
    assert len(n_calls) == len(grid)


def test_val_ties_go_to_the_smallest_c() -> None:
    # Far-apart clusters: every C classifies val perfectly, so all tie.
    tr_x, tr_y, va_x, va_y, te_x, te_y = gaussian_splits(sep=10.0)
    res = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, 5, ProbeOptions(c_grid=(10.0, 0.1, 1.0)))
    assert set(res.val_top1_per_c.values()) == {1.0}
    assert res.chosen_c == 0.1


def test_c_selection_is_not_trivial() -> None:
    # Few noisy rows in many dimensions: val accuracy varies with C, so the
    # selection is a real choice and must land on a maximiser.
    tr_x, tr_y, va_x, va_y, te_x, te_y = gaussian_splits(seed=3, dim=200, sep=0.35)
    res = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, 5)
    assert res.val_top1_per_c[res.chosen_c] == max(res.val_top1_per_c.values())
    assert len(set(res.val_top1_per_c.values())) > 1


def test_probe_is_deterministic() -> None:
    splits = gaussian_splits(seed=5)
    options = ProbeOptions(c_grid=(1e-3, 1e-1, 10.0))
    a = linear_probe(*splits, 5, options)
    b = linear_probe(*splits, 5, options)
    assert a.val_top1_per_c == b.val_top1_per_c
    assert (a.chosen_c, a.test_top1, a.n_iter) == (b.chosen_c, b.test_top1, b.n_iter)
    np.testing.assert_array_equal(a.test_pred, b.test_pred)


def test_bad_labels_are_rejected() -> None:
    tr_x, tr_y, va_x, va_y, te_x, te_y = gaussian_splits()
    with pytest.raises(ValueError):
        linear_probe(tr_x, tr_y + 10, va_x, va_y, te_x, te_y, 5)


def test_multilabel_probe_is_one_vs_rest_logistic_regression():
    """Multi-label targets: each class's weights equal scikit-learn's binary LogisticRegression at the same C."""
    from sklearn.linear_model import LogisticRegression

    from bobench.tasks.linear_probe import ProbeOptions, fit_logistic_regression, linear_probe, mean_auroc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    targets = (x[:, :3] + 0.5 * rng.normal(size=(300, 3)) > 0).astype(np.int64)
    options = ProbeOptions(c_grid=(0.1, 1.0), tolerance=1e-8, standardize=False, dtype="float64")
    weight, bias, _ = fit_logistic_regression(x, targets, 1.0, 3, options)
    for k in range(3):
        reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(x, targets[:, k])
        np.testing.assert_allclose(weight[k].numpy(), reference.coef_[0], atol=1e-4)
        np.testing.assert_allclose(bias[k].item(), reference.intercept_[0], atol=1e-4)
    result = linear_probe(x[:200], targets[:200], x[200:250], targets[200:250], x[250:], targets[250:], 3, options)
    assert result.test_correct.size == 0 and result.test_scores.shape == (50, 3)
    assert result.test_top1 == pytest.approx(mean_auroc(result.test_scores, targets[250:])) and result.test_top1 > 0.8


def test_mean_auroc_on_a_split_where_a_class_has_one_label_value():
    """A small validation split of a multi-label dataset can lack a finding's positives: that class has no
    AUROC. Model selection averages the classes that have one; the reported metric is then undefined."""
    from bobench.tasks.linear_probe import mean_auroc

    targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.5], [0.1, 0.2]])
    assert mean_auroc(scores, targets, defined_only=True) == 1.0
    assert np.isnan(mean_auroc(scores, targets))
    assert np.isnan(mean_auroc(scores, np.zeros((4, 2), dtype=int), defined_only=True))
