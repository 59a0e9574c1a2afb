"""Detection, instance segmentation and OOD detection: the detector, its data, training and COCO scoring."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bobench.backbones.model import create_backbone
from bobench.detection.data import CocoInstances, evaluation_sizes, load_coco, train_transform
from bobench.detection.evaluate import coco_metrics, to_coco_results
from bobench.detection.model import build_detector, detection_spec
from bobench.detection.synthetic import coco_annotations, make_canvases, write_canvases
from bobench.detection.train import DetectionOptions, lr_factor, train_detector

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
LOG = logging.getLogger("test")


def random_twin(backbone_id: str) -> dict:
    return {**BACKBONES[backbone_id], "weights": {"source": "random", "seed": 0}}


def objects(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey blobs on black (stand-ins for Fashion-MNIST items) and their labels 0/1."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:28, 0:28]
    items = []
    for i in range(n):
        if i % 2:  # a disc
            items.append(((x - 14) ** 2 + (y - 14) ** 2 < rng.integers(60, 140)) * 220)
        else:  # a bar
            items.append(((abs(x - 14) < 4) & (abs(y - 14) < 12)) * 220)
    return np.stack(items).astype(np.uint8), np.arange(n) % 2


def synthetic_split(tmp_path: Path, n_images: int, background: str = "plain", seed: int = 0, canvas: int = 64) -> Path:
    """A COCO file (+ images) of synthetic canvases; returns the annotation file."""
    items, labels = objects(seed=seed)
    canvases = make_canvases(items, labels, n_images, canvas, (1, 3), (16, 32), background, seed)
    write_canvases(canvases, tmp_path / "images", f"{background}/")
    path = tmp_path / f"{background}_{seed}.json"
    path.write_text(json.dumps(coco_annotations(canvases, ["bar", "disc"], f"{background}/")))
    return path


# --------------------------------------------------------------------------- every family plugs in

# One registry entry per architecture family and code path: CNNs (torchvision-style ResNet, ConvNeXt,
# EfficientNet, CLIP's ResNet with attention pool), hierarchical ViTs (SwinV2, MiDaS' backbone), plain
# ViTs (timm ViT, SAM's ViT) and Stable Diffusion's UNet encoder.
FAMILY_REPRESENTATIVES = [
    "random_rn50", "random_cnxt_t", "random_effnet_lite0", "clip_rn50_openai",
    "random_swinv2_t", "random_vit_s16", "sam_vit_b", "sd_v14",
]


def test_the_representatives_cover_every_registry_family():
    assert {BACKBONES[b]["family"] for b in FAMILY_REPRESENTATIVES} == {e["family"] for e in BACKBONES.values()}


@pytest.mark.parametrize("backbone_id", FAMILY_REPRESENTATIVES)
def test_every_family_plugs_into_mask_rcnn_forward_and_backward(backbone_id):
    """The pyramid of every family; the cascade's heads take the same pyramid (tests/test_fidelity_detection.py)."""
    backbone = create_backbone(backbone_id, detection_spec(random_twin(backbone_id), drop_path=0.1))
    detector = build_detector(backbone, num_classes=2, detector="mask_rcnn", test_short_side=64, test_max_side=96,
                              rois_per_image=16, proposals_per_image=20)
    plain = backbone.is_plain()
    assert plain == (BACKBONES[backbone_id]["family"] == "ViT")
    image = torch.rand(3, 64, 96)  # not square: any size goes through
    mask = torch.zeros(1, 64, 96, dtype=torch.uint8)
    mask[0, 10:40, 20:60] = 1
    target = {"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([1]), "masks": mask}
    detector.train()
    losses = detector([image], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    # Gradients reach the backbone's first parameters (fine-tuned setting) and the pyramid.
    first = next(p for p in backbone.model.parameters() if p.requires_grad)
    assert first.grad is not None and torch.isfinite(first.grad).all()
    detector.eval()
    with torch.no_grad():
        (output,) = detector([image])
    assert output["boxes"].shape[1] == 4 and output["masks"].shape[-2:] == (64, 96)


def test_frozen_setting_trains_only_the_pyramid_and_heads():
    backbone = create_backbone("random_rn50", detection_spec(random_twin("random_rn50")))
    detector = build_detector(backbone, num_classes=2, frozen=True)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert all(p.requires_grad for p in detector.backbone.fpn.parameters())
    detector.train()
    assert not backbone.model.training  # BatchNorm statistics stay too


def test_plain_vits_get_vitdet_pyramid_and_layernorm_heads():
    backbone = create_backbone("random_vit_s16", detection_spec(random_twin("random_vit_s16")))
    detector = build_detector(backbone, num_classes=2)
    maps = detector.backbone(torch.rand(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2, 1]  # strides 4, 8, 16, 32, 64
    norms = {type(m).__name__ for m in detector.roi_heads.modules()}  # every stage's box and mask heads
    assert "LayerNorm2d" in norms and "BatchNorm2d" not in norms


# --------------------------------------------------------------------------- COCO scoring


def perfect_predictions(coco) -> list[dict]:
    """Every ground-truth object as a detection with its own box and mask."""
    from pycocotools import mask as mask_utils

    results = []
    for image_id in sorted(coco.imgs):
        anns = coco.imgToAnns[image_id]
        if not anns:
            continue
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).float()[:, None]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns])
        output = {"boxes": boxes, "scores": torch.linspace(0.9, 0.5, len(anns)),
                  "labels": torch.tensor([a["category_id"] for a in anns]), "masks": masks}
        results += to_coco_results(image_id, output, [1, 2], masks=True)
    assert all(mask_utils.area(r["segmentation"]) > 0 for r in results)
    return results


def test_perfect_predictions_score_ap_one_and_shuffled_ones_near_zero(tmp_path):
    coco = load_coco(synthetic_split(tmp_path, 30))
    perfect = perfect_predictions(coco)
    for iou_type in ("bbox", "segm"):
        assert coco_metrics(coco, perfect, iou_type)["ap"] == pytest.approx(1.0)
    # Each image gets another image's detections.
    ids = sorted({r["image_id"] for r in perfect})
    moved = dict(zip(ids, ids[1:] + ids[:1]))
    shuffled = [{**r, "image_id": moved[r["image_id"]]} for r in perfect]
    for iou_type in ("bbox", "segm"):
        assert coco_metrics(coco, shuffled, iou_type)["ap"] < 0.05
    assert coco_metrics(coco, [], "bbox")["ap"] == 0.0


def test_our_metrics_equal_pycocotools_run_directly(tmp_path):
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    coco = load_coco(synthetic_split(tmp_path, 30))
    rng = np.random.default_rng(0)
    noisy = [{**r, "bbox": list(np.asarray(r["bbox"]) + rng.normal(0, 1, 4)), "score": float(rng.uniform())}
             for r in perfect_predictions(coco) if rng.uniform() < 0.8]
    for iou_type in ("bbox", "segm"):
        ours = coco_metrics(coco, noisy, iou_type)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco, coco.loadRes([dict(r) for r in noisy]), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        direct = [v if v >= 0 else float("nan") for v in evaluator.stats[:6]]
        assert list(ours.values()) == pytest.approx(direct, nan_ok=True)
        assert 0.1 < ours["ap"] < 1.0  # neither trivial case


def test_a_bootstrap_resample_equals_cocoeval_on_the_resampled_images(tmp_path):
    """The CI reuses COCOeval's per-image matches; one resample must equal a fresh COCOeval on a test
    set in which the drawn images are physically repeated (new ids for the copies)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from bobench.detection.evaluate import _ap_stats, _bootstrap_ap_stats, coco_metrics_with_ci

    path = synthetic_split(tmp_path, 12)
    coco = load_coco(path)
    rng = np.random.default_rng(1)
    noisy = [{**r, "bbox": list(np.asarray(r["bbox"]) + rng.normal(0, 1.5, 4)), "score": float(rng.uniform())}
             for r in perfect_predictions(coco) if rng.uniform() < 0.8]
    for iou_type in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco, coco.loadRes([dict(r) for r in noisy]), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
        (ours,) = _bootstrap_ap_stats(evaluator, 1, seed=5)
        assert evaluator.params.maxDets == [1, 10, 100]  # the replicates accumulate at 100 alone, then restore
        ids = sorted(coco.imgs)
        drawn = [ids[i] for i in np.random.default_rng(5).integers(0, len(ids), len(ids))]
        data = json.loads(path.read_text())
        images, annotations, results = [], [], []
        for copy_id, image_id in enumerate(drawn, start=1):
            images.append({**coco.imgs[image_id], "id": copy_id})
            annotations += [{**a, "id": len(annotations) + j + 1, "image_id": copy_id}
                            for j, a in enumerate(coco.imgToAnns[image_id])]
            results += [{k: v for k, v in r.items() if k in ("bbox", "score", "category_id", "segmentation")} | {"image_id": copy_id}
                        for r in noisy if r["image_id"] == image_id]
        repeated = COCO()
        repeated.dataset = {**data, "images": images, "annotations": annotations}
        with contextlib.redirect_stdout(io.StringIO()):
            repeated.createIndex()
            direct = COCOeval(repeated, repeated.loadRes(results), iou_type)
            direct.evaluate()
            direct.accumulate()
        assert list(ours) == pytest.approx(_ap_stats(direct.eval["precision"]), nan_ok=True)
        # The interval brackets the estimate here and is not degenerate.
        value, low, high = coco_metrics_with_ci(coco, noisy, iou_type, n_boot=200)["ap"]
        assert low < value < high and high - low > 0.01
    value, low, high = coco_metrics_with_ci(coco, perfect_predictions(coco), "bbox", n_boot=50)["ap"]
    assert value == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_detections_of_classes_the_test_set_lacks_are_dropped():
    output = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "scores": torch.tensor([0.9, 0.8]),
              "labels": torch.tensor([1, 2])}
    results = to_coco_results(7, output, [None, 3], masks=False)
    assert results == [{"image_id": 7, "category_id": 3, "bbox": [5.0, 5.0, 15.0, 15.0], "score": pytest.approx(0.8)}]


# --------------------------------------------------------------------------- data and augmentation


def test_synthetic_canvases_are_deterministic_and_masks_match_boxes(tmp_path):
    first = coco_annotations(make_canvases(*objects(), 5, 64, (1, 3), (16, 32), "plain", 3), ["bar", "disc"], "")
    again = coco_annotations(make_canvases(*objects(), 5, 64, (1, 3), (16, 32), "plain", 3), ["bar", "disc"], "")
    assert first == again
    coco = load_coco(synthetic_split(tmp_path, 5))
    for ann in coco.anns.values():
        ys, xs = np.nonzero(coco.annToMask(ann))
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == len(xs)


def test_the_ood_background_differs_from_the_training_one():
    plain = [img for img, _ in make_canvases(*objects(), 10, 64, (0, 0), (16, 16), "plain", 0)]
    texture = [img for img, _ in make_canvases(*objects(), 10, 64, (0, 0), (16, 16), "texture", 0)]
    assert np.mean(plain) > 150 > np.mean(texture)
    assert np.mean([np.abs(np.diff(img.astype(float), axis=1)).mean() for img in texture]) > 3 * np.mean(
        [np.abs(np.diff(img.astype(float), axis=1)).mean() for img in plain])


@pytest.mark.parametrize("augmentation", ["lsj", "multi_scale", "single_scale"])
def test_bob_augmentations_keep_boxes_and_masks_together(tmp_path, augmentation):
    path = synthetic_split(tmp_path, 6)
    dataset = CocoInstances(path, tmp_path / "images", ["bar", "disc"], train_transform(augmentation, scale=0.0625))
    torch.manual_seed(0)
    for i in range(len(dataset)):
        image, target = dataset[i]
        assert image.dtype == torch.float32 and image.max() <= 1
        if augmentation == "lsj":
            assert tuple(image.shape[-2:]) == (64, 64)  # 1024 × 0.0625, cropped / padded square
        elif augmentation == "multi_scale":
            assert 30 <= min(image.shape[-2:]) <= 50 and max(image.shape[-2:]) <= 84  # 480-800 (≤ 1333) × 0.0625
        else:
            assert max(image.shape[-2:]) == 32  # fit in 512 × 0.0625 (the square canvases: 32 × 32)
        assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):  # the box encloses what is left of the mask (up to resampling: 1.5 px)
                assert box[0] <= xs.min() + 1.5 and box[2] >= xs.max() - 1.5
                assert box[1] <= ys.min() + 1.5 and box[3] >= ys.max() - 1.5
    assert evaluation_sizes("lsj", 1.0) == (1024, 1024) and evaluation_sizes("multi_scale", 1.0) == (800, 1333)
    assert evaluation_sizes("single_scale", 1.0) == (512, 512)


def test_step_schedule_with_linear_warmup():
    options = DetectionOptions(steps=(27, 33), warmup_iters=1000, warmup_ratio=0.001)
    assert lr_factor(0, 0, options) == pytest.approx(0.001)
    assert lr_factor(500, 0, options) == pytest.approx(0.5005)
    assert lr_factor(1000, 0, options) == 1.0
    assert lr_factor(99999, 27, options) == pytest.approx(0.1)
    assert lr_factor(99999, 33, options) == pytest.approx(0.01)


# --------------------------------------------------------------------------- training survives


def tiny_training(tmp_path: Path):
    path = synthetic_split(tmp_path, 6)
    options = DetectionOptions(epochs=2, steps=(1,), warmup_iters=2, lr=1e-3, batch_size=2, micro_batch=2,
                               augment_scale=0.0625, rois_per_image=16, proposals_per_image=20, precision="fp32")

    def make():
        torch.manual_seed(0)
        backbone = create_backbone("random_effnet_lite0", detection_spec(random_twin("random_effnet_lite0")))
        return build_detector(backbone, 2, rois_per_image=16, proposals_per_image=20)

    dataset = CocoInstances(path, tmp_path / "images", ["bar", "disc"], train_transform("multi_scale", 0.0625))
    return make, dataset, options


class Killed(Exception):
    pass


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    make, dataset, options = tiny_training(tmp_path)
    straight = train_detector(make(), dataset, options, tmp_path / "a.pt")

    def kill(epoch):
        raise Killed

    with pytest.raises(Killed):
        train_detector(make(), dataset, options, tmp_path / "b.pt", on_epoch_end=kill)
    resumed = train_detector(make(), dataset, options, tmp_path / "b.pt")
    assert resumed.resumed_from_epoch == 1 and straight.resumed_from_epoch == 0
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for name, value in straight.model_state.items():
        assert torch.equal(value, resumed.model_state[name]), name


def test_a_non_finite_loss_stops_with_a_clear_message(tmp_path):
    from bobench.training import TrainingDiverged

    make, dataset, options = tiny_training(tmp_path)
    model = make()
    with torch.no_grad():
        model.roi_heads.stages[0].box_predictor.cls_score.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"non-finite loss_classifier.* in epoch 1, iteration 1 .*lower the lr"):
        train_detector(model, dataset, options, tmp_path / "c.pt")


def test_out_of_memory_halves_the_micro_batch_and_keeps_going(tmp_path, monkeypatch):
    make, dataset, options = tiny_training(tmp_path)
    model = make()
    original = type(model).forward
    calls = {"n": 0}

    def flaky(self, images, targets=None):
        calls["n"] += 1
        if calls["n"] == 1 and len(images) > 1:
            raise torch.OutOfMemoryError("simulated")
        return original(self, images, targets)

    monkeypatch.setattr(type(model), "forward", flaky)
    result = train_detector(model, dataset, DetectionOptions(**{**options.__dict__, "epochs": 1}), tmp_path / "d.pt")
    assert result.micro_batch == 1 and result.iterations == 3


# --------------------------------------------------------------------------- Sim10k → Cityscapes conversions


def test_sim10k_voc_becomes_a_car_only_coco_file(tmp_path):
    from bobench.detection.sources import voc_to_coco

    (tmp_path / "3384645.xml").write_text(
        "<annotation><filename>3384645.jpg</filename><size><width>1914</width><height>1052</height></size>"
        "<object><name>car</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>109</xmax><ymax>69</ymax></bndbox></object>"
        "<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>"
        "</annotation>"
    )
    coco = voc_to_coco([tmp_path / "3384645.xml"], "car")
    assert coco["images"] == [{"id": 1, "file_name": "3384645.jpg", "width": 1914, "height": 1052}]
    assert coco["categories"] == [{"id": 1, "name": "car"}]
    # VOC's 1-based inclusive corners → COCO's 0-based x, y, width, height.
    assert [(a["bbox"], a["area"]) for a in coco["annotations"]] == [([9.0, 19.0, 100.0, 50.0], 5000.0)]


def test_cityscapes_cars_keep_only_their_visible_pixels(tmp_path):
    from bobench.detection.sources import cityscapes_to_coco

    city = tmp_path / "gtFine" / "val" / "lindau"
    city.mkdir(parents=True)
    objects = [
        {"label": "car", "polygon": [[0, 0], [39, 0], [39, 19], [0, 19]]},  # 40 × 20, half hidden below
        {"label": "person", "polygon": [[20, 0], [39, 0], [39, 19], [20, 19]]},
        {"label": "cargroup", "polygon": [[50, 0], [59, 0], [59, 9], [50, 9]]},
        {"label": "car", "polygon": [[60, 30], [69, 30], [69, 39], [60, 39]], "deleted": 1},
        # A plate drawn over the car: json2instanceImg skips it (label id -1), so the car keeps these pixels.
        {"label": "license plate", "polygon": [[2, 2], [5, 2], [5, 3], [2, 3]]},
    ]
    (city / "lindau_000000_000019_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": 50, "imgWidth": 80, "objects": objects}))
    coco = cityscapes_to_coco(sorted(city.glob("*.json")), tmp_path / "leftImg8bit" / "val", "car")
    assert coco["images"][0]["file_name"] == "lindau/lindau_000000_000019_leftImg8bit.png"
    (car,) = coco["annotations"]
    assert car["bbox"] == [0.0, 0.0, 20.0, 20.0] and car["area"] == 400.0


def test_coco_download_is_pinned_and_checked(tmp_path, monkeypatch):
    from bobench.datasets import downloads
    from bobench.detection.sources import load_coco2017

    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    calls = []

    def fetch(url, path, md5=None, sha256=None, log=None):
        calls.append((url, md5, sha256))
        raise downloads.DownloadError("offline")

    monkeypatch.setattr(downloads, "fetch_url", fetch)
    with pytest.raises(downloads.DataUnavailableError, match=r"(?s)annotations_trainval2017.zip is missing.*cocodataset.org"):
        load_coco2017(source=registry["coco2017"]["source"], raw_dir=tmp_path, log=LOG)
    assert calls == [("http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                      "f4bbac642086de4f52a3fdda2de5fa2c",
                      "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268")]



def test_the_detector_is_initialised_from_the_run_seed(backbone_registry):
    """torch seeds its default generator from the operating system in every new process: the neck and heads
    are built from the run's seed, so the same seed gives the same detector whatever the generator's state."""
    from bobench.detection.job import build

    def weights(seed):
        detector, _ = build("random_effnet_lite0", backbone_registry["random_effnet_lite0"], ["a", "b"], True, "finetune",
                            DetectionOptions(), seed=seed)
        return detector.state_dict()

    first = weights(3)
    torch.rand(11)  # another generator state, as in another process
    second, other = weights(3), weights(4)
    assert all(torch.equal(value, second[name]) for name, value in first.items())
    heads = [name for name in first if name.startswith(("rpn.", "roi_heads."))]
    assert heads and any(not torch.equal(first[name], other[name]) for name in heads)
