"""Linear probe: multinomial L2 logistic regression on frozen features.

The objective is exactly scikit-learn's ``LogisticRegression(penalty="l2")``:

    C * sum_i CE(x_i, y_i) + 0.5 * ||W||^2        (bias not penalised)

which we minimise in the equivalent, better-scaled form

    mean_i CE(x_i, y_i) + ||W||^2 / (2 C n)

(scikit-learn's lbfgs path uses the same rescaling, so ``tolerance`` means the
same thing for both: a bound on the largest absolute gradient entry of this
mean-scaled objective). Fitting is full-batch L-BFGS in PyTorch, so the same
code runs on CPU and CUDA, and one probe over a C grid costs seconds instead
of the minutes a scikit-learn sweep takes on 1,000-class problems.
The gradient is written out analytically (softmax minus one-hot), which avoids
autograd's graph bookkeeping on every one of the many closure evaluations.

Multi-label datasets (CheXpert: 0/1 labels of shape ``(N, C)``) get one binary
logistic regression per class (scikit-learn's one-vs-rest objective, summed:
sigmoid minus target), and C is chosen by validation mean AUROC.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

# The memory law lives in a torch-free module (the cost model reads it too); its names are this module's.
from bobench.tasks.probe_memory import (  # noqa: F401
    BLOCK_BYTES,
    BLOCK_COPIES,
    LBFGS_HISTORY,
    WEIGHT_COPIES,
    default_block_rows,
    device_bytes_needed,
    fits_on_device,
)

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class ProbeOptions:
    """Hyper-parameters of the probe; the defaults follow BoB's sweep of C."""

    c_grid: tuple[float, ...] = tuple(10.0**k for k in range(-4, 5))
    max_iter: int = 1000
    #: ``tolerance_grad`` of L-BFGS (max |gradient| of the mean-scaled objective,
    #: same meaning as scikit-learn's ``tol`` for lbfgs); ``tolerance_change``
    #: is ``1e-3`` times this.
    tolerance: float = 1e-6
    #: z-score features with mean/std of the rows each model is fitted on.
    standardize: bool = True
    refit_on_train_val: bool = True
    dtype: str = "float32"


@dataclass
class ProbeResult:
    test_top1: float  # mean AUROC for multi-label data
    chosen_c: float
    val_top1_per_c: dict[float, float]  # the selection score per C (val mean AUROC for multi-label data)
    test_correct: np.ndarray  # per test sample (empty for multi-label data)
    test_pred: np.ndarray
    test_scores: np.ndarray  # (N, C) logits of the final model
    n_iter: int
    #: wall time of the whole probe: C sweep, selection and refit.
    fit_seconds: float
    #: where the features lived: ``device``, or ``host`` (streamed to the device per row block)
    placement: str = "device"


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unsupported probe dtype {name!r}")
    return dtype


def _as_tensor(x: ArrayLike, dtype: torch.dtype, device: str | torch.device) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=dtype)


def _as_labels(y: ArrayLike, num_classes: int, device: str | torch.device) -> torch.Tensor:
    """Class indices ``(N,)`` as long, or multi-label 0/1 targets ``(N, C)`` as float."""
    labels = torch.as_tensor(y).to(device=device)
    if labels.ndim == 2:
        if labels.shape[1] != num_classes or (labels.numel() and not ((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"multi-label targets must be 0/1 of shape (N, {num_classes}), got {tuple(labels.shape)}")
        return labels.float()
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got {labels.min()}..{labels.max()}")
    return labels


def mean_auroc(scores: np.ndarray, targets: np.ndarray, defined_only: bool = False) -> float:
    """Mean over classes of the ROC AUC (scikit-learn's ``roc_auc_score``, macro average).

    A class with one label value only on these samples has no AUROC: the mean is then NaN, or with
    ``defined_only`` the mean over the classes that have one (what model selection on a small
    validation split needs; NaN if no class has one)."""
    from sklearn.metrics import roc_auc_score

    targets, scores = np.asarray(targets), np.asarray(scores, dtype=np.float64)
    if defined_only:
        defined = [j for j in range(targets.shape[1]) if len(np.unique(targets[:, j])) == 2]
        if not defined:
            return float("nan")
        targets, scores = targets[:, defined], scores[:, defined]
    elif any(len(np.unique(column)) < 2 for column in targets.T):
        return float("nan")
    return float(roc_auc_score(targets, scores, average="macro"))


def logistic_objective(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, c: float
) -> torch.Tensor:
    """scikit-learn's objective ``C * sum CE + 0.5 * ||W||^2`` (for checks and tests)."""
    ce = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="sum")
    return c * ce + 0.5 * (weight * weight).sum()


def fit_logistic_regression(
    x: ArrayLike,
    y: ArrayLike,
    c: float,
    num_classes: int,
    options: ProbeOptions = ProbeOptions(),
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Fit one model on ``x`` exactly as given; return ``(weight, bias, n_iter)``.

    ``weight`` is ``(num_classes, dim)`` and ``bias`` ``(num_classes,)``, both on
    ``device`` in ``options.dtype``. ``init`` warm-starts from a previous
    solution (used along the C grid). Standardisation is *not* done here:
    :func:`linear_probe` owns it, because the statistics depend on which rows
    a fit sees.
    """
    features = _as_tensor(x, _torch_dtype(options.dtype), device)
    labels = _as_labels(y, num_classes, device)
    return _fit(features, labels, c, num_classes, options, init, torch.device(device))


def _fit(
    features: torch.Tensor,
    labels: torch.Tensor,
    c: float,
    num_classes: int,
    options: ProbeOptions,
    init: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
    block_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`fit_logistic_regression` on ``features`` wherever they are: on ``device``, or in (pinned) host
    memory, from where each closure evaluation streams them to ``device`` in row blocks. Loss and gradient
    are sums over row blocks of ``block_rows`` (default :func:`default_block_rows`), so the ``(rows, classes)``
    temporaries stay bounded; a problem that fits one block computes exactly what a single pass does."""
    if c <= 0:
        raise ValueError(f"C must be positive, got {c}")
    dtype = _torch_dtype(options.dtype)
    n, dim = features.shape
    if n == 0:
        raise ValueError("cannot fit a probe on zero rows")
    block = block_rows or default_block_rows(dim, num_classes, features.element_size())
    if init is None:
        weight = torch.zeros(num_classes, dim, dtype=dtype, device=device)
        bias = torch.zeros(num_classes, dtype=dtype, device=device)
    else:
        weight = init[0].detach().to(device=device, dtype=dtype).clone()
        bias = init[1].detach().to(device=device, dtype=dtype).clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)

    reg = 1.0 / (c * n)
    rows = torch.arange(min(block, n), device=device)
    multilabel = labels.ndim == 2

    def closure() -> torch.Tensor:
        with torch.no_grad():
            loss_sum = grad_w = grad_b = None
            for start in range(0, n, block):
                xb = features[start : start + block].to(device, non_blocking=True)
                yb = labels[start : start + block]
                logits = torch.addmm(bias, xb, weight.T)
                if multilabel:  # independent binary logistic regressions: sigmoid minus target
                    part = (torch.nn.functional.softplus(logits) - yb * logits).sum(dim=1).sum()
                    residual = torch.sigmoid(logits).sub_(yb).div_(n)
                else:
                    lse = torch.logsumexp(logits, dim=1, keepdim=True)
                    part = (lse.squeeze(1) - logits[rows[: len(yb)], yb]).sum()
                    residual = logits.sub_(lse).exp_()  # softmax, in the logits' memory
                    residual[rows[: len(yb)], yb] -= 1.0
                    residual /= n
                if grad_w is None:
                    loss_sum, grad_b = part, residual.sum(dim=0)
                    grad_w = torch.addmm(weight, residual.T, xb, beta=reg)
                else:
                    loss_sum += part
                    grad_b += residual.sum(dim=0)
                    grad_w.addmm_(residual.T, xb)
            weight.grad, bias.grad = grad_w, grad_b
            return loss_sum / n + 0.5 * reg * (weight * weight).sum()

    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=options.max_iter,
        max_eval=2 * options.max_iter,
        tolerance_grad=options.tolerance,
        # A stalled loss/step only ends the fit far below the gradient
        # tolerance; torch's absolute default (1e-9) is this for tolerance 1e-6.
        # Scaling with ``tolerance`` keeps float32 fits from stopping early on
        # a flat stretch (eps-sized thresholds did, 1e-5 relative off optimum).
        tolerance_change=1e-3 * options.tolerance,
        history_size=LBFGS_HISTORY,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(closure)
    n_iter = int(optimizer.state[weight].get("n_iter", 0))
    return weight.detach(), bias.detach(), n_iter


PLACEMENTS = ("auto", "device", "host")


def choose_placement(placement: str, n_rows: int, dim: int, num_classes: int, dtype: torch.dtype,
                     device: torch.device, multilabel: bool = False) -> str:
    """``device``: the features live on the device; ``host``: in pinned host memory, streamed per block.

    ``auto`` keeps them on the device where :func:`device_bytes_needed` fits in 90% of its free memory
    (always on the CPU, where host and device are one)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"feature placement {placement!r} is not one of {PLACEMENTS}")
    if placement != "auto":
        return placement
    if device.type != "cuda":
        return "device"
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    needed = device_bytes_needed(n_rows, dim, num_classes, dtype.itemsize, multilabel=multilabel)
    if fits_on_device(needed, free):
        return "device"
    log.warning(
        "linear probe: the features need %.1f GB on %s, %.1f GB are free: streaming row blocks from pinned host "
        "memory instead (same solution, slower)", needed / 1e9, device, free / 1e9,
    )
    return "host"


def _feature_store(n_rows: int, dim: int, dtype: torch.dtype, device: torch.device, placement: str) -> torch.Tensor:
    """The one buffer every split's features live in (train, val, test rows, in that order)."""
    if placement == "device":
        return torch.empty((n_rows, dim), dtype=dtype, device=device)
    if device.type == "cuda":
        try:  # pinned pages copy to the GPU asynchronously and at full bus speed
            return torch.empty((n_rows, dim), dtype=dtype, pin_memory=True)
        except RuntimeError as error:
            log.warning("could not pin %.1f GB of host memory (%s): streaming from pageable memory",
                        n_rows * dim * dtype.itemsize / 1e9, error)
    return torch.empty((n_rows, dim), dtype=dtype)


def _column_stats(x: torch.Tensor, block_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) std of ``x``'s columns, accumulated in float64 one row block at a time (no
    float64 copy of the matrix); constant columns get std 1."""
    n = len(x)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, n, block_rows):
        total += x[start : start + block_rows].to(torch.float64).sum(dim=0)
    mean = total / n
    squares = torch.zeros_like(total)
    for start in range(0, n, block_rows):
        squares += (x[start : start + block_rows].to(torch.float64) - mean).square_().sum(dim=0)
    std = (squares / n).sqrt_()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.to(x.dtype), std.to(x.dtype)


def _standardize_(x: torch.Tensor, stats_rows: slice, block_rows: int) -> None:
    """z-score every row of ``x`` in place, with the statistics of ``x[stats_rows]``."""
    mean, std = _column_stats(x[stats_rows], block_rows)
    for start in range(0, len(x), block_rows):
        x[start : start + block_rows].sub_(mean).div_(std)


def _scores(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, block_rows: int) -> torch.Tensor:
    """Logits of every row of ``x`` (wherever it lives), on the CPU, computed block by block on the weights' device."""
    scores = torch.empty((len(x), len(bias)), dtype=weight.dtype)
    for start in range(0, len(x), block_rows):
        block = x[start : start + block_rows].to(weight.device, non_blocking=True)
        scores[start : start + block_rows] = torch.addmm(bias, block, weight.T)
    return scores


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    val_x: ArrayLike,
    val_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    num_classes: int,
    options: ProbeOptions = ProbeOptions(),
    device: str | torch.device = "cpu",
    placement: str = "auto",
    block_rows: int | None = None,
) -> ProbeResult:
    """Sweep C on train (scored on val), then refit the chosen C and score test.

    The grid is walked from small to large C, each fit warm-started from the
    previous one (strong regularisation converges fast and is a good start
    for the next). C is chosen by val top-1, ties going to the smaller C (the
    simpler model). With ``refit_on_train_val`` the final model is refitted on
    train+val, with standardisation statistics recomputed on those rows,
    warm-started from the chosen train-only solution.

    Memory: the features of all three splits are copied once into one buffer (the callers' arrays are
    never changed) and z-scored there in place; the fits read row blocks of it. ``placement`` (see
    :func:`choose_placement`) puts that buffer on ``device`` or, where it does not fit, in pinned host
    memory, from where every closure evaluation streams it to ``device`` block by block: the same sums, in
    the same blocks, so the same solution. ``block_rows`` overrides :func:`default_block_rows`.
    """
    start = time.perf_counter()
    dtype = _torch_dtype(options.dtype)
    device = torch.device(device)
    if not options.c_grid:
        raise ValueError("c_grid is empty")
    splits = [torch.as_tensor(x) for x in (train_x, val_x, test_x)]
    dims = {tuple(x.shape[1:]) for x in splits}
    if len(dims) != 1 or any(x.ndim != 2 for x in splits):
        raise ValueError(f"train, val and test features must be 2-D with one width, got {[tuple(x.shape) for x in splits]}")
    n_tr, n_va, n_te = (len(x) for x in splits)
    tr_y = _as_labels(train_y, num_classes, device)
    va_y = _as_labels(val_y, num_classes, device)
    te_y = _as_labels(test_y, num_classes, device)
    if va_y.numel() == 0:
        raise ValueError("the validation split is empty; C cannot be selected")
    dim = splits[0].shape[1]
    placement = choose_placement(placement, n_tr + n_va + n_te, dim, num_classes, dtype, device, tr_y.ndim == 2)
    store = _feature_store(n_tr + n_va + n_te, dim, dtype, device, placement)
    block = block_rows or default_block_rows(dim, num_classes, dtype.itemsize)
    train, val, train_val, test = slice(0, n_tr), slice(n_tr, n_tr + n_va), slice(0, n_tr + n_va), slice(n_tr + n_va, None)

    def load(stats_rows: slice) -> None:
        """The callers' features into the buffer, z-scored with the statistics of ``stats_rows``."""
        for rows, x in zip((train, val, test), splits):
            store[rows].copy_(x)
        if options.standardize:
            _standardize_(store, stats_rows, block)

    def fit(rows: slice, y: torch.Tensor, c: float, init) -> tuple[torch.Tensor, torch.Tensor, int]:
        return _fit(store[rows], y, c, num_classes, options, init, device, block)

    load(train)
    multilabel = tr_y.ndim == 2

    def selection_score(weight: torch.Tensor, bias: torch.Tensor) -> float:
        scores = _scores(store[val], weight, bias, block)
        if multilabel:
            return mean_auroc(scores.numpy(), va_y.cpu().numpy(), defined_only=True)
        return float((scores.argmax(dim=1) == va_y.cpu()).float().mean())

    val_top1: dict[float, float] = {}
    params: tuple[torch.Tensor, torch.Tensor] | None = None
    best_c, best_acc, best_params, best_iter = None, -1.0, None, 0
    for c in sorted(float(c) for c in options.c_grid):
        weight, bias, n_iter = fit(train, tr_y, c, params)
        params = (weight, bias)
        acc = selection_score(weight, bias)
        val_top1[c] = acc
        log.debug("C=%g: val top-1 %.4f after %d L-BFGS iterations", c, acc, n_iter)
        if acc > best_acc:
            best_c, best_acc, best_params, best_iter = c, acc, params, n_iter
    if best_c is None or best_params is None:
        raise ValueError(
            "no C could be selected: the validation split has no class with both label values, so no AUROC is "
            "defined on it; give the dataset a larger val split"
        )

    if options.refit_on_train_val:
        if options.standardize:
            load(train_val)
        weight, bias, final_iter = fit(train_val, torch.cat([tr_y, va_y]), best_c, best_params)
    else:
        (weight, bias), final_iter = best_params, best_iter

    scores = _scores(store[test], weight, bias, block)
    pred = scores.argmax(dim=1)
    if multilabel:
        correct = np.zeros(0, dtype=bool)
        test_top1 = mean_auroc(scores.numpy(), te_y.cpu().numpy())
    else:
        correct = (pred == te_y.cpu()).numpy()
        test_top1 = float(correct.mean()) if correct.size else float("nan")
    elapsed = time.perf_counter() - start
    log.info(
        "linear probe: C=%g (val top-1 %.4f), test top-1 %.4f, %.2fs, features on %s",
        best_c, best_acc, test_top1, elapsed, device if placement == "device" else "the host (streamed)",
    )
    return ProbeResult(
        test_top1=test_top1,
        chosen_c=best_c,
        val_top1_per_c=val_top1,
        test_correct=correct,
        test_pred=pred.numpy().astype(np.int64),
        test_scores=scores.float().numpy(),
        n_iter=final_iter,
        fit_seconds=elapsed,
        placement=placement,
    )
