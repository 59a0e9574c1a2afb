"""Feature extraction on real data: pretrained features carry signal; the probe matches sklearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bobench.backbones.model import create_backbone
from bobench.datasets import load_prepared, prepare_dataset
from bobench.features import ExtractionOptions, extract_features, resolve_channels_last, resolve_precision
from bobench.tasks.linear_probe import ProbeOptions, fit_logistic_regression, linear_probe

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SIZE = 96
C_GRID = (1e-3, 1e-2, 1e-1, 1.0)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory, dataset_registry):
    if not FASHION_DEBIAN.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (setup.sh installs it)")
    entry = {**dataset_registry["fashion_mnist"], "splits": {"train": 1000, "val": 300, "test": 600}}
    out = tmp_path_factory.mktemp("fashion")
    prepare_dataset("fashion_mnist", entry, out_dir=out / "prepared", raw_dir=out / "raw")
    dataset = load_prepared(out / "prepared", verify=True)
    return {split: dataset.split(split) for split in ("train", "val", "test")}


@pytest.fixture(scope="module")
def features(fashion, backbone_registry):
    out = {}
    for backbone_id in ("effnet_lite0_in1k", "random_effnet_lite0"):
        backbone = create_backbone(backbone_id, backbone_registry[backbone_id], image_size=IMAGE_SIZE)
        arrays, info = extract_features(backbone, fashion, family="CNN", options=ExtractionOptions(batch_size=128))
        out[backbone_id] = (arrays, info)
    return out


def probe(arrays, options=None):
    options = options or ProbeOptions(c_grid=C_GRID)
    return linear_probe(
        arrays["train_features"], arrays["train_labels"], arrays["val_features"], arrays["val_labels"],
        arrays["test_features"], arrays["test_labels"], num_classes=10, options=options,
    )


def test_extraction_shapes_and_record(features, fashion):
    arrays, info = features["effnet_lite0_in1k"]
    for split, (images, labels) in fashion.items():
        assert arrays[f"{split}_features"].shape == (len(images), 1280)
        assert np.array_equal(arrays[f"{split}_labels"], labels)
    assert info["transform"]["size"] == IMAGE_SIZE
    assert info["n_images"] == sum(len(images) for images, _ in fashion.values())
    assert info["weights"]["sha256"].startswith("579344")


def test_pretrained_lite0_beats_its_random_twin(features):
    pretrained = probe(features["effnet_lite0_in1k"][0])
    random = probe(features["random_effnet_lite0"][0])
    assert pretrained.test_top1 > random.test_top1 + 0.02, (pretrained.test_top1, random.test_top1)


def test_probe_matches_sklearn_on_real_features(features):
    """Same features, same objective (C·ΣCE + ½‖W‖², standardised inputs), same C: accuracy within 1 point."""
    from sklearn.linear_model import LogisticRegression

    arrays = features["effnet_lite0_in1k"][0]
    mean, std = arrays["train_features"].mean(0), arrays["train_features"].std(0) + 1e-6
    train_x = (arrays["train_features"] - mean) / std
    test_x = (arrays["test_features"] - mean) / std
    for c in (1e-2, 1.0):
        sk = LogisticRegression(C=c, max_iter=2000, tol=1e-8).fit(train_x, arrays["train_labels"])
        weight, bias, _ = fit_logistic_regression(
            train_x, arrays["train_labels"], c=c, num_classes=10, options=ProbeOptions(max_iter=2000, tolerance=1e-8, standardize=False)
        )
        ours = (torch.from_numpy(test_x) @ weight.T + bias).argmax(1).numpy()
        theirs = sk.predict(test_x)
        acc_ours = float((ours == arrays["test_labels"]).mean())
        acc_theirs = float((theirs == arrays["test_labels"]).mean())
        assert abs(acc_ours - acc_theirs) <= 0.01, (c, acc_ours, acc_theirs)


def test_precision_and_layout_choices():
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="extraction.precision 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_channels_last("auto", "CNN") is True
    assert resolve_channels_last("auto", "ViT") is False


def test_padding_the_last_batch_leaves_features_unchanged(backbone_registry):
    """The padded last batch (one input shape for cuDNN) gives the real images the same features."""
    from bobench.features import extract_split

    backbone = create_backbone("effnet_lite0_in1k", backbone_registry["effnet_lite0_in1k"], image_size=64)
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    device = torch.device("cpu")
    padded = extract_split(backbone, images, device, 32, None, False, pad_last_batch=True)
    ragged = extract_split(backbone, images, device, 32, None, False, pad_last_batch=False)
    one_by_one = np.concatenate([extract_split(backbone, images[i : i + 1], device, 1, None, False) for i in range(50)])
    assert padded.shape == ragged.shape == (50, 1280)
    np.testing.assert_allclose(padded, ragged, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(padded, one_by_one, rtol=1e-4, atol=1e-5)


def test_out_of_memory_halves_the_forward_batch_and_loses_nothing(backbone_registry):
    """A model that runs out of memory above 3 images per forward (SAM at 1,024 px with the paper's batch of
    256): extraction halves the forward batch, redoes only the failed chunk and gives the same features."""
    from bobench.features import extract_split

    backbone = create_backbone("random_vit_s16", backbone_registry["random_vit_s16"], image_size=32)
    images = np.random.default_rng(0).integers(0, 256, (21, 28, 28, 1), dtype=np.uint8)
    device = torch.device("cpu")
    reference = extract_split(backbone, images, device, 16, None, False)
    model, calls = backbone.model, []

    def limited(x):
        calls.append(len(x))
        if len(x) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return model(x)

    backbone.model = limited
    chunked = extract_split(backbone, images, device, 16, None, False)
    np.testing.assert_allclose(chunked, reference, rtol=1e-4, atol=1e-5)
    assert calls[:3] == [16, 8, 4] and max(c for c in calls if c <= 3) == 2  # halved, then kept small
