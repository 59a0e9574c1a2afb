"""Cosine k-nearest-neighbour classifier with DINO's weighted vote.

Bank and queries are L2-normalised, so the dot product is the cosine
similarity. Each query takes its ``k`` most similar bank items; neighbour
``j`` votes for its label with weight ``exp(sim_j / T)`` and the class with
the largest summed weight wins (Wu et al. 2018, as used by DINO's
``eval_knn.py``). Queries are processed in chunks so memory stays at
``chunk_size x bank_size`` similarities whatever the query count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class KnnOptions:
    k: int = 20
    temperature: float = 0.07
    chunk_size: int = 1024


@dataclass
class KnnResult:
    top1: float
    correct: np.ndarray
    pred: np.ndarray
    #: effective k (``options.k`` clipped to the bank size).
    k: int
    temperature: float


def knn_classify(
    bank_x: ArrayLike,
    bank_y: ArrayLike,
    query_x: ArrayLike,
    query_y: ArrayLike,
    num_classes: int,
    options: KnnOptions = KnnOptions(),
    device: str | torch.device = "cpu",
) -> KnnResult:
    """Classify ``query_x`` by a weighted vote of its cosine neighbours in the bank.

    Weights are computed as ``exp((sim - max_sim) / T)``: dividing every
    weight of a query by the same ``exp(max_sim / T)`` leaves the argmax
    unchanged and keeps small temperatures from overflowing float32. Exact
    score ties go to the lowest class index.
    """
    if options.k < 1 or options.temperature <= 0 or options.chunk_size < 1:
        raise ValueError(f"invalid kNN options {options}")
    bank = F.normalize(torch.as_tensor(bank_x).to(device=device, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(bank_y).to(device=device, dtype=torch.long)
    queries = torch.as_tensor(query_x).to(device=device, dtype=torch.float32)
    targets = torch.as_tensor(query_y).to(device=device, dtype=torch.long)
    if bank.shape[0] == 0:
        raise ValueError("the kNN bank is empty")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"bank labels must lie in [0, {num_classes})")
    k = min(options.k, bank.shape[0])

    preds = []
    for start in range(0, queries.shape[0], options.chunk_size):
        chunk = F.normalize(queries[start : start + options.chunk_size], dim=1)
        sims, idx = (chunk @ bank.T).topk(k, dim=1)
        weights = torch.exp((sims - sims[:, :1]) / options.temperature)
        voters = labels[idx]
        scores = torch.zeros(chunk.shape[0], num_classes, device=device)
        # One neighbour rank at a time: no (row, class) cell is hit twice in a
        # call, so CUDA's atomic scatter cannot reorder float additions and
        # the vote is bit-reproducible on every device.
        for j in range(k):
            scores.scatter_add_(1, voters[:, j : j + 1], weights[:, j : j + 1])
        preds.append(scores.argmax(dim=1))
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=device)

    correct = (pred == targets).cpu().numpy()
    top1 = float(correct.mean()) if correct.size else float("nan")
    log.info("kNN (k=%d, T=%g): top-1 %.4f on %d queries", k, options.temperature, top1, correct.size)
    return KnnResult(
        top1=top1,
        correct=correct,
        pred=pred.cpu().numpy().astype(np.int64),
        k=k,
        temperature=options.temperature,
    )
