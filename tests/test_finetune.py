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
    data = tiny_data()
    model, transform = tiny_classifier()
    backed_off = OutOfMemoryAbove(model, limit=4)
    result = finetune(backed_off, data, NUM_CLASSES, transform, OPTIONS, tmp_path / "oom.pt", seed=1)
    assert result.micro_batch == 4

    model4, transform = tiny_classifier()
    plain = OutOfMemoryAbove(model4, limit=10**6)
    options4 = FinetuneOptions(**{**OPTIONS.__dict__, "micro_batch": 4})
    finetune(plain, data, NUM_CLASSES, transform, options4, tmp_path / "four.pt", seed=1)
    for (key, a), b in zip(model.state_dict().items(), model4.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


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
