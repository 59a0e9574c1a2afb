"""The cached-feature linear probe's memory law, without torch: :mod:`bobench.tasks.linear_probe` sizes its
row blocks and picks where the features live by it, and the cost model (:mod:`bobench.cost`, which the
Snakefile imports: no torch there) asks SLURM for the probe's memory by it."""

from __future__ import annotations

#: L-BFGS memory, as in scipy / scikit-learn; a longer history costs
#: ``2 * history * num_classes * dim`` extra floats, too much for 1k classes.
LBFGS_HISTORY = 10
#: Bytes of one row block's largest temporary: its features (streamed) or its ``(rows, classes)`` logits.
#: A few such blocks are alive at once, a fixed cost next to the feature matrix at paper shapes.
BLOCK_BYTES = 64 * 2**20
#: Row-block temporaries alive at once, in units of ``rows × max(dim, classes)`` probe floats: the float64
#: block of the column statistics and its centred copy (4), or the logits and their softmax/sigmoid terms.
BLOCK_COPIES = 6
#: Weight-sized buffers: weights, gradient, the ``2 * LBFGS_HISTORY`` L-BFGS history and L-BFGS's and the
#: line search's working copies, the warm start and the best C's solution (30 measured, with margin).
WEIGHT_COPIES = 2 * LBFGS_HISTORY + 16
#: Share of the device's free memory the features may fill before the probe streams them from the host.
DEVICE_SHARE = 0.9


def default_block_rows(dim: int, num_classes: int, itemsize: int) -> int:
    """Rows per block: as many as keep a block's features and its logits each within :data:`BLOCK_BYTES`."""
    return max(1, BLOCK_BYTES // (max(dim, num_classes) * itemsize))


def device_bytes_needed(
    n_rows: int, dim: int, num_classes: int, itemsize: int, block_rows: int | None = None, multilabel: bool = False
) -> int:
    """The law of the in-memory path's peak device memory: the feature matrix (train, val and test rows, one
    copy, standardised in place), :data:`BLOCK_COPIES` row blocks of temporaries, :data:`WEIGHT_COPIES`
    weight-sized buffers and the labels (int64 class indices, or float32 0/1 targets per class; twice: the
    refit's train + val labels are a copy). Scores
    leave the device block by block. At ImageNet's shape (1.33M rows × 2,048, 1,000 classes) this is 1.07×
    the feature matrix (1.23× at 384 dimensions) (tested against measured peaks on scaled-down shapes, ``tests/test_linear_probe.py``)."""
    block = min(block_rows or default_block_rows(dim, num_classes, itemsize), n_rows)
    blocks = BLOCK_COPIES * block * max(dim, num_classes) * itemsize
    weights = WEIGHT_COPIES * num_classes * (dim + 1) * itemsize
    labels = 2 * n_rows * (num_classes * 4 if multilabel else 8)
    return n_rows * dim * itemsize + blocks + weights + labels


def fits_on_device(needed_bytes: int, free_bytes: float) -> bool:
    """Whether the features stay on the device (else they are streamed from pinned host memory)."""
    return needed_bytes <= DEVICE_SHARE * free_bytes
