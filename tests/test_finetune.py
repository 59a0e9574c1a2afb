"""Fine-tuning survives: resume after a kill is exact, OOM halves the micro-batch, NaN stops clearly.
Calibration metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bobench.backbones.model import create_backbone
from bobench.calibration import expected_calibration_error, per_sample_nll
from bobench.tasks.finetune import FinetuneOptions, TrainingDiverged, attach_head, finetune

NUM_CLASSES = 3
OPTIONS = FinetuneOptions(
    epochs=3, warmup_epochs=1, lr=1e-3, warmup_lr=1e-4, batch_size=16, micro_batch=8, eval_batch_size=32,
    precision="fp32",
)


def tiny_data(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three classes of 12×12 grey images that differ in brightness."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, NUM_CLASSES, n)
        images = rng.integers(0, 60, (n, 12, 12, 1)) + 90 * labels[:, None, None, None]
        return images.astype(np.uint8), labels

    return {"train": split(48), "val": split(24), "test": split(30)}


def tiny_classifier():
    entry = {"architecture": {"library": "timm", "name": "test_resnet"}, "weights": {"source": "random", "seed": 0},
             "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}}
    backbone = create_backbone("tiny", entry)
    return attach_head(backbone.model, backbone.feature_dim, NUM_CLASSES, seed=0), backbone.transform


class Killed(Exception):
    pass


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    data = tiny_data()
    model, transform = tiny_classifier()
    uninterrupted = finetune(model, data, NUM_CLASSES, transform, OPTIONS, tmp_path / "a.pt", seed=1)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    def kill_after_second_epoch(epoch: int) -> None:
        if epoch == 1:
            raise Killed

    model, transform = tiny_classifier()
    with pytest.raises(Killed):
        finetune(model, data, NUM_CLASSES, transform, OPTIONS, tmp_path / "b.pt", seed=1, on_epoch_end=kill_after_second_epoch)
    model, transform = tiny_classifier()  # a fresh process: nothing but the checkpoint survives
    resumed = finetune(model, data, NUM_CLASSES, transform, OPTIONS, tmp_path / "b.pt", seed=1)

    assert resumed.resumed_from_epoch == 2 and uninterrupted.resumed_from_epoch == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    np.testing.assert_array_equal(resumed.test_probs, uninterrupted.test_probs)
    assert [h["val_top1"] for h in resumed.history] == [h["val_top1"] for h in uninterrupted.history]
    assert resumed.test_probs.shape == (30, NUM_CLASSES)

    # The selected epoch's weights reproduce its test predictions.
    from bobench.tasks.finetune import predict_probs

    fresh, transform = tiny_classifier()
    fresh.load_state_dict(uninterrupted.best_state)
    probs = predict_probs(fresh, data["test"][0], transform, 32, torch.device("cpu"), None, torch.contiguous_format)
    np.testing.assert_allclose(probs, uninterrupted.test_probs, rtol=1e-5, atol=1e-6)


def test_other_options_do_not_resume_a_stale_checkpoint(tmp_path):
    data = tiny_data()
    model, transform = tiny_classifier()
    finetune(model, data, NUM_CLASSES, transform, OPTIONS, tmp_path / "c.pt", seed=1)
    model, transform = tiny_classifier()
    again = finetune(model, data, NUM_CLASSES, transform, FinetuneOptions(**{**OPTIONS.__dict__, "lr": 5e-4}),
                     tmp_path / "c.pt", seed=1)
    assert again.resumed_from_epoch == 0


class OutOfMemoryAbove(nn.Module):
    """Raises CUDA's out-of-memory error for micro-batches larger than ``limit``."""

    def __init__(self, model: nn.Module, limit: int):
        super().__init__()
        self.model, self.limit = model, limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and len(x) > self.limit:
            raise torch.OutOfMemoryError(f"simulated: {len(x)} > {self.limit}")
        return self.model(x)


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_maths(tmp_path):
    """The loader keeps collating micro-batches of 8; the forward runs them in chunks of 4 after the
    out-of-memory error, each chunk's gradient added in order: the weights of a run asked for 4 from the start.
    (Without mixup: mixup mixes within each loaded micro-batch, and the out-of-memory run still loads 8.)"""
    data = tiny_data()
    options = FinetuneOptions(**{**OPTIONS.__dict__, "mixup": 0.0, "cutmix": 0.0})
    model, transform = tiny_classifier()
    backed_off = OutOfMemoryAbove(model, limit=4)
    result = finetune(backed_off, data, NUM_CLASSES, transform, options, tmp_path / "oom.pt", seed=1)
    assert result.micro_batch == 4

    model4, transform = tiny_classifier()
    plain = OutOfMemoryAbove(model4, limit=10**6)
    options4 = FinetuneOptions(**{**options.__dict__, "micro_batch": 4})
    finetune(plain, data, NUM_CLASSES, transform, options4, tmp_path / "four.pt", seed=1)
    for (key, a), b in zip(model.state_dict().items(), model4.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_out_of_memory_in_backward_leaves_no_partial_gradient():
    """An out-of-memory error halfway through a backward pass (some parameters' gradients already added):
    that chunk's partial gradient is dropped and only that chunk redone, in halves; the step's gradient is the
    one of an undisturbed step over the same chunks."""
    from bobench.training import step_over_micro_batches

    torch.manual_seed(0)
    x, y = torch.randn(12, 5), torch.randn(12, 1)

    def run(fail_once: bool) -> tuple[torch.Tensor, ...]:
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1))
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (i + 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: look at the gradient
        failed = []

        def fail_halfway(grad: torch.Tensor) -> torch.Tensor:  # runs after the last layer's gradient is added
            if fail_once and not failed:
                failed.append(1)
                raise torch.OutOfMemoryError("simulated, halfway through backward")
            return grad

        model[0].weight.register_hook(fail_halfway)

        def backward(rows):
            loss = ((model(rows[0]) - rows[1]) ** 2).sum()
            loss.backward()
            return float(loss.detach())

        _, chunk = step_over_micro_batches(optimizer, [(x[:6], y[:6]), (x[6:], y[6:])], 6,
                                           torch.device("cpu"), backward)
        return chunk, *(p.grad.clone() for p in model.parameters())

    reference_chunks = run(False)
    failing = run(True)
    assert failing[0] == 3 and reference_chunks[0] == 6
    for a, b in zip(failing[1:], reference_chunks[1:]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


class OutOfMemoryInEval(nn.Module):
    """Raises CUDA's out-of-memory error for any forward batch larger than ``limit``; counts the calls."""

    def __init__(self, model: nn.Module, limit: int):
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError(f"simulated: {len(x)} > {self.limit}")
        return self.model(x)


def test_evaluation_halves_the_batch_on_out_of_memory_and_loses_nothing():
    """predict_logits (fine-tuning's and the frozen probe's evaluation, OOD): the failed chunk is redone in
    halves, finished ones kept, and the logits equal an undisturbed run's."""
    from bobench.tasks.finetune import predict_logits

    model, transform = tiny_classifier()
    images = tiny_data()["test"][0]
    cpu = torch.device("cpu")
    reference = predict_logits(model, images, transform, 16, cpu, None, torch.contiguous_format)
    limited = OutOfMemoryInEval(model, limit=5)
    logits = predict_logits(limited, images, transform, 16, cpu, None, torch.contiguous_format)
    np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-6)
    assert limited.sizes[:3] == [16, 8, 4] and max(limited.sizes[3:]) <= 4  # halved, then kept small


class Indexed(torch.utils.data.Dataset):
    """Item i: its index, and noise from the global torch RNG (an augmentation's randomness)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((3,), float(index)) + 0.1 * torch.randn(3), index


def test_training_loaders_collate_micro_batches_with_the_whole_batches_samples():
    """Each step's samples are the whole-batch loader's (same seed, same order); what is collated, and so held
    in host memory per worker and prefetch slot, is a micro-batch."""
    from bobench.training import OptimisationSteps, epoch_loader, seed_epoch

    dataset = Indexed(45)  # 2 steps of 20, 5 samples dropped
    whole = [batch[1].tolist() for batch in epoch_loader(dataset, 20, seed_epoch(3, 1), 0)]
    loader = epoch_loader(dataset, 20, seed_epoch(3, 1), 0, micro_batch=8)
    steps = OptimisationSteps(loader)
    assert len(steps) == 2 and len(loader) == 6
    collated = [[part[1].tolist() for part in step] for step in steps]
    assert [[len(p) for p in step] for step in collated] == [[8, 8, 4], [8, 8, 4]]
    assert [sum(step, []) for step in collated] == whole


def test_micro_batch_training_matches_the_whole_batch_reference_bitwise():
    """Loading micro-batches and accumulating over them gives the weights of the reference, which collates
    the whole batch and accumulates over its micro-batches (as the loaders did before): same samples, same
    augmentation randomness, same additions. With a BatchNorm, whose statistics see each micro-batch."""
    from bobench.training import OptimisationSteps, epoch_loader, seed_epoch, step_over_micro_batches

    dataset, batch, micro, cpu = Indexed(45), 20, 8, torch.device("cpu")

    def fresh():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
        return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_of(model, x, index, weight):
        return torch.nn.functional.cross_entropy(model(x / 45), index % 3) * weight

    reference, optimizer = fresh()
    for epoch in range(2):
        for x, index in epoch_loader(dataset, batch, seed_epoch(7, epoch), 0):
            optimizer.zero_grad(set_to_none=True)
            for start in range(0, batch, micro):
                loss_of(reference, x[start : start + micro], index[start : start + micro], len(x[start : start + micro]) / batch).backward()
            optimizer.step()

    model, optimizer = fresh()
    for epoch in range(2):
        for step in OptimisationSteps(epoch_loader(dataset, batch, seed_epoch(7, epoch), 0, micro_batch=micro)):
            def backward(rows):
                loss = loss_of(model, rows[0], rows[1], len(rows[0]) / batch)
                loss.backward()
                return float(loss.detach())

            step_over_micro_batches(optimizer, step, micro, cpu, backward)
    for (key, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_finetune_loaders_collate_the_micro_batch(tmp_path, monkeypatch):
    """finetune's (and so the frozen probe's) training loader collates options.micro_batch samples."""
    import bobench.tasks.finetune as ft

    loaders = []
    original = ft.epoch_loader
    monkeypatch.setattr(ft, "epoch_loader", lambda *a, **k: loaders.append(original(*a, **k)) or loaders[-1])
    model, transform = tiny_classifier()
    options = FinetuneOptions(**{**OPTIONS.__dict__, "epochs": 1, "micro_batch": 4})
    finetune(model, tiny_data(), NUM_CLASSES, transform, options, tmp_path / "m.pt", seed=1)
    assert len(loaders) == 1
    assert [len(indices) for indices in loaders[0].batch_sampler] == [4] * (48 // 4)
    with pytest.raises(ValueError, match="micro_batch 3 is odd"):
        finetune(model, tiny_data(), NUM_CLASSES, transform, FinetuneOptions(**{**options.__dict__, "micro_batch": 3}),
                 tmp_path / "odd.pt", seed=1)


class NonFinite(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * float("nan")


def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    model, transform = tiny_classifier()
    with pytest.raises(TrainingDiverged, match=r"non-finite loss in epoch 1, step 1 .*lower the lr"):
        finetune(NonFinite(model), tiny_data(), NUM_CLASSES, transform, OPTIONS, tmp_path / "nan.pt", seed=1)
    assert not (tmp_path / "nan.pt").exists()  # nothing that looks like progress


class GrowingLogits(nn.Module):
    """Training-mode logits ten times larger at every forward: a loss that climbs from where it started, as
    with too high a learning rate."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        return self.model(x) * 10.0 ** min(self.calls, 20)


def test_a_climbing_loss_stops_with_a_clear_message(tmp_path):
    model, transform = tiny_classifier()
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 1: mean loss .* the first step's loss .*lower the lr"):
        finetune(GrowingLogits(model), tiny_data(), NUM_CLASSES, transform, OPTIONS, tmp_path / "up.pt", seed=1)


class Scaled(nn.Module):
    def __init__(self, model: nn.Module, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


def test_a_probe_that_starts_far_above_chance_is_not_divergence(tmp_path):
    """BoB's linear head on a ResNet's features (no BatchNorm before it) starts where the features' scale puts
    it, far above chance for a random-init backbone: divergence is measured from the first step's loss."""
    import dataclasses
    import math

    from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, attach_probe_head

    backbone = create_backbone("tiny", {"architecture": {"library": "timm", "name": "test_resnet"},
                                        "weights": {"source": "random", "seed": 0},
                                        "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}})
    model = attach_probe_head(Scaled(backbone.model, 1e4), backbone.feature_dim, NUM_CLASSES, seed=0, head="linear")
    options = dataclasses.replace(OPTIONS, **FROZEN_PROBE_RECIPE, lr=1e-6)
    result = finetune(model, tiny_data(), NUM_CLASSES, backbone.transform, options, tmp_path / "lp.pt", seed=1)
    assert result.history[0]["train_loss"] > 10 * math.log(NUM_CLASSES)  # over chance level's bound from the start
    assert len(result.history) == options.epochs


def test_ece_and_nll_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    # Two bins of width 0.5: every top confidence (0.9, 0.6, 0.7, 0.8) is in the upper bin,
    # where accuracy is 3/4 and mean confidence 0.75: ECE = 0. With 10 bins: bins 0.9 (1 right),
    # 0.6 (wrong), 0.7 (right), 0.8 (right) → (|1-.9| + |0-.6| + |1-.7| + |1-.8|) / 4 = 0.3.
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.0)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.3)
    np.testing.assert_allclose(per_sample_nll(probs, labels), -np.log([0.9, 0.4, 0.7, 0.8]))


def tiny_probe():
    from bobench.tasks.finetune import attach_probe_head

    entry = {"architecture": {"library": "timm", "name": "test_resnet"}, "weights": {"source": "random", "seed": 0},
             "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}}
    backbone = create_backbone("tiny", entry)
    return attach_probe_head(backbone.model, backbone.feature_dim, NUM_CLASSES, seed=0), backbone.transform


def test_frozen_probe_trains_only_its_head(tmp_path):
    """BoB's linear probe: LARS on a BatchNorm + linear head; the backbone, statistics included, stays put.
    Its checkpoint and its saved weights hold the head alone (the backbone is the registry's), and a killed
    probe resumes to the same head."""
    import dataclasses

    from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, predict_probs

    model, transform = tiny_probe()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head[1].weight.clone()
    options = dataclasses.replace(OPTIONS, **FROZEN_PROBE_RECIPE, lr=0.1 * 16 / 256)
    result = finetune(model, tiny_data(), NUM_CLASSES, transform, options, tmp_path / "lp.pt", seed=1)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.head[1].weight, head_before)
    assert model.head[0].running_mean.abs().sum() > 0  # the probe's own BatchNorm learnt the feature statistics
    assert result.test_probs.shape == (30, NUM_CLASSES)

    head_keys = set(model.head.state_dict())
    assert set(result.best_state) == head_keys
    assert set(torch.load(tmp_path / "lp.pt", weights_only=True)["model"]) == head_keys
    fresh, _ = tiny_probe()
    fresh.head.load_state_dict(result.best_state)
    probs = predict_probs(fresh, tiny_data()["test"][0], transform, 32, torch.device("cpu"), None, torch.contiguous_format)
    np.testing.assert_allclose(probs, result.test_probs, rtol=1e-5, atol=1e-6)

    def kill_after_second_epoch(epoch: int) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        finetune(tiny_probe()[0], tiny_data(), NUM_CLASSES, transform, options, tmp_path / "b.pt", seed=1,
                 on_epoch_end=kill_after_second_epoch)
    resumed = finetune(tiny_probe()[0], tiny_data(), NUM_CLASSES, transform, options, tmp_path / "b.pt", seed=1)
    assert resumed.resumed_from_epoch == 2
    np.testing.assert_array_equal(resumed.test_probs, result.test_probs)


def test_multilabel_data_train_with_sigmoids_and_select_on_mean_auroc(tmp_path):
    """CheXpert's setting: 0/1 labels per class, binary cross-entropy, selection on val mean AUROC."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, (n, NUM_CLASSES))
        images = rng.integers(0, 60, (n, 12, 12, 1)) + 60 * labels[:, :1, None, None]  # finding 0 shows as brightness
        return images.astype(np.uint8), labels

    data = {"train": split(48), "val": split(24), "test": split(30)}
    model, transform = tiny_classifier()
    options = FinetuneOptions(**{**OPTIONS.__dict__, "epochs": 2, "mixup": 0.0, "cutmix": 0.0})
    result = finetune(model, data, NUM_CLASSES, transform, options, tmp_path / "ckpt.pt", seed=0, device=torch.device("cpu"))
    assert result.test_probs.shape == (30, NUM_CLASSES) and result.test_labels.shape == (30, NUM_CLASSES)
    assert ((result.test_probs > 0) & (result.test_probs < 1)).all() and not np.allclose(result.test_probs.sum(1), 1)
    assert all("val_mean_auroc" in h for h in result.history) and 0 <= result.best_val_score <= 1
    with pytest.raises(ValueError, match="mixup/cutmix need single-label data"):
        finetune(tiny_classifier()[0], data, NUM_CLASSES, transform, OPTIONS, tmp_path / "other.pt", seed=0, device=torch.device("cpu"))


@pytest.mark.parametrize("backbone_id", ["random_vit_b16", "random_swinv2_t"])
def test_a_transformer_fine_tunes_at_a_dataset_resolution_of_its_own(backbone_id, backbone_registry):
    """BoB fine-tunes 224-px ViTs and 256/384-px SwinV2s on CheXpert at 256 px: the classifier accepts it
    (built with timm's dynamic-size switch), and its parameters are the native model's (loading stays strict)."""
    from bobench.tasks.finetune import build_classifier

    entry = backbone_registry[backbone_id]
    classifier, backbone = build_classifier(backbone_id, entry, num_classes=5, image_size=96, frozen=False,
                                            drop_path=0.1, seed=0)
    assert backbone.transform.size == 96
    with torch.no_grad():
        assert classifier.eval()(torch.zeros(2, 3, 96, 96)).shape == (2, 5)
    native = create_backbone(backbone_id, entry)
    trained = {k: v.shape for k, v in backbone.model.state_dict().items() if not k.startswith("head.")}
    assert {k: v.shape for k, v in native.model.state_dict().items()} == trained
