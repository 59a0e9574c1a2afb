"""The input cache (train split decoded once) and the evaluation crops (val/test cropped once per job)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image

from bobench.backbones.transforms import EvalTransform
from bobench.datasets import load_prepared, write_prepared
from bobench.datasets.input_cache import (
    CACHE_META,
    CachedImages,
    InputCacheError,
    cache_short_side,
    cached_shape,
    load_input_cache,
    write_input_cache,
)
from bobench.eval_crops import EvalCrops, crop_once
from bobench.features import eval_batches
from bobench.jobs.finetune import cached_splits
from bobench.plan import InputCaches
from bobench.tasks.finetune import AugmentedImages, FinetuneOptions, train_transform
from bobench.tasks.probe_input import bob_probe_train_transform
from photos import jpegs

CPU = torch.device("cpu")


@pytest.fixture
def prepared(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    splits = {
        split: (jpegs(raw, n, seed), np.arange(n, dtype=np.int64) % 2)
        for seed, (split, n) in enumerate([("train", 12), ("val", 7), ("test", 6)])
    }
    write_prepared(tmp_path / "prepared", splits, ["a", "b"], {"test_split": "test"})
    return load_prepared(tmp_path / "prepared", verify=True)


TRANSFORMS = [
    EvalTransform(224, 0.875, "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    EvalTransform(96, 0.9, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=["224-bicubic", "96-bilinear"])
def test_evaluation_crops_give_the_tensors_of_the_jpeg_path_bit_for_bit(prepared, transform, tmp_path):
    images, _ = prepared.split("val")
    crops = crop_once(images, transform, tmp_path, "val", max_bytes=10**9, batch_size=3)
    assert isinstance(crops, EvalCrops) and len(crops) == len(images)
    for pad in (False, True):
        jpeg_path = list(eval_batches(images, transform, 4, CPU, pad_to_batch=pad))
        cached_path = list(eval_batches(crops, transform, 4, CPU, pad_to_batch=pad))
        assert [n for _, n in jpeg_path] == [n for _, n in cached_path] == [4, 3]
        for (a, _), (b, _) in zip(jpeg_path, cached_path, strict=True):
            assert a.dtype == b.dtype == torch.float32
            assert torch.equal(a, b)
    # Crops of one geometry refuse a transform of another: they would be silently wrong.
    other = EvalTransform(transform.size, 1.0, transform.interpolation, transform.mean, transform.std)
    with pytest.raises(ValueError, match="crops were made for"):
        next(eval_batches(crops, other, 4, CPU))


def test_a_split_over_the_crop_budget_and_pixel_arrays_stay_as_they_are(prepared, tmp_path):
    images, _ = prepared.split("test")
    transform = TRANSFORMS[0]
    assert crop_once(images, transform, tmp_path, "test", max_bytes=len(images) * 3 * 224**2 * 4 - 1) is images
    pixels = np.zeros((3, 32, 32, 3), np.uint8)
    assert crop_once(pixels, transform, tmp_path, "test", max_bytes=10**9) is pixels


def test_cached_shapes_bring_the_shorter_side_down_and_keep_smaller_images():
    assert cache_short_side(224, 8 / 7) == 256 and cache_short_side(384, 1.142857) == 439
    assert cached_shape(500, 375, 256) == (256, 341)  # (height, width)
    assert cached_shape(375, 500, 256) == (341, 256)
    assert cached_shape(120, 90, 256) == (90, 120)
    with pytest.raises(ValueError, match="short_side_ratio"):
        cache_short_side(224, 0.9)


def test_training_augmentation_draws_from_the_cached_images(prepared, tmp_path):
    short_side = 100
    meta = write_input_cache(prepared, tmp_path / "cache", short_side, workers=2)
    cached = load_input_cache(tmp_path / "cache", prepared, verify=True)
    files, labels = prepared.split("train")
    assert isinstance(cached, CachedImages) and len(cached) == len(files) == meta["size"]
    for i in range(len(files)):
        original = files[i]
        image = cached[i]
        assert image.dtype == np.uint8 and image.shape[-1] == 3
        assert min(image.shape[:2]) == min(short_side, *original.shape[:2])
        if min(original.shape[:2]) <= short_side:  # small images are kept exactly as decoded
            assert np.array_equal(image, original)
        else:  # the rest are the decoded image resized once, as PIL does it
            width, height = image.shape[1], image.shape[0]
            expected = np.asarray(Image.fromarray(original).resize((width, height), Image.BICUBIC))
            assert np.array_equal(image, expected)
    subset = cached[np.array([3, 0])]
    assert np.array_equal(subset[1], cached[0])

    # The training Dataset hands the transform the cached image ...
    seen = AugmentedImages(cached, labels, lambda pil: np.asarray(pil))
    assert all(np.array_equal(seen[i][0], cached[i]) for i in range(len(cached)))
    # ... and BoB's augmentation still draws a new crop at every epoch.
    transform = train_transform(FinetuneOptions(), 64, TRANSFORMS[0].mean, TRANSFORMS[0].std)
    dataset = AugmentedImages(cached, labels, transform)
    torch.manual_seed(0)
    first = dataset[0][0]
    torch.manual_seed(1)
    second = dataset[0][0]
    assert first.shape == (3, 64, 64) and not torch.equal(first, second)


def test_the_cache_is_written_atomically_and_checked(prepared, tmp_path):
    out = tmp_path / "cache"
    write_input_cache(prepared, out, 128)
    assert sorted(p.name for p in out.iterdir()) == sorted(["train_pixels.npy", "train_index.npy", CACHE_META])

    # A byte changed in the pixels: the manifest catches it.
    pixels = np.load(out / "train_pixels.npy", mmap_mode="r+")
    pixels[5] ^= 0xFF
    pixels.flush()
    del pixels
    with pytest.raises(InputCacheError, match="fails its checksum"):
        load_input_cache(out, prepared, verify=True)

    # A rewrite that fails half-way leaves no cache.json vouching for half-new arrays, and no temporary files.
    files, _ = prepared.split("train")
    (files.root / files.paths[4]).write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="cannot read image"):
        write_input_cache(prepared, out, 128)
    assert not (out / CACHE_META).exists()
    assert not [p for p in out.iterdir() if ".partial" in p.name]
    with pytest.raises(InputCacheError, match="cache.json is missing"):
        load_input_cache(out, prepared)


def test_a_cache_of_another_preparation_is_refused(prepared, tmp_path):
    write_input_cache(prepared, tmp_path / "cache", 128)
    images, labels = prepared.split("train")
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    splits["train"] = (images[np.arange(len(images) - 1)], labels[:-1])
    write_prepared(tmp_path / "again", splits, ["a", "b"], {"test_split": "test"})
    with pytest.raises(InputCacheError, match="another preparation"):
        load_input_cache(tmp_path / "cache", load_prepared(tmp_path / "again"))


def test_a_training_job_reads_train_from_the_cache_and_val_test_as_crops(prepared, tmp_path):
    write_input_cache(prepared, tmp_path / "cache", 128)
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    out = cached_splits(splits, prepared, tmp_path / "cache", TRANSFORMS[1], tmp_path, FinetuneOptions(), 10**9)
    assert isinstance(out["train"][0], CachedImages)
    assert isinstance(out["val"][0], EvalCrops) and isinstance(out["test"][0], EvalCrops)
    assert all(np.array_equal(out[s][1], splits[s][1]) for s in splits)


def test_a_dataset_of_pixel_arrays_needs_no_cache(tmp_path):
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8), np.array([0, 1, 0, 1])) for s in ("train", "val", "test")}
    write_prepared(tmp_path / "prepared", splits, ["a", "b"], {"test_split": "test"})
    prepared = load_prepared(tmp_path / "prepared")
    meta = write_input_cache(prepared, tmp_path / "cache", 64)
    assert meta["storage"] == "pixels" and meta["bytes"] == 0
    assert load_input_cache(tmp_path / "cache", prepared, verify=True) is None
    loaded = {s: prepared.split(s) for s in splits}
    assert cached_splits(loaded, prepared, tmp_path / "cache", TRANSFORMS[1], tmp_path, FinetuneOptions(), 10**9) is loaded


def test_a_job_reads_the_smallest_shared_cache_at_least_its_short_side():
    """bobench.plan.InputCaches, which both the Snakefile and the planner ask: 224-px jobs the cache at 256,
    240..448-px ones the one at 512, larger ones their files (or, with min_jobs, a cache of their own)."""
    backbones = {name: {"input": {"size": size}} for name, size in [("a", 224), ("b", 256), ("c", 448), ("d", 1024), ("e", 1024)]}
    cells = [("frozen_probe", b, "imagenet") for b in backbones] + [("frozen_probe", "d", "flowers102")]
    options = {"enabled": True, "short_side_ratio": 1.142857}
    config = {"frozen_probe": {}, "input_cache": options}
    caches = InputCaches(config, backbones, cells)
    assert [caches.short_side("frozen_probe", b, "imagenet") for b in backbones] == [256, 512, 512, None, None]
    # min_jobs: 1170 px is needed by two ImageNet jobs (a cache), by one Flowers-102 job (its files).
    caches = InputCaches({**config, "input_cache": {**options, "min_jobs": 2}}, backbones, cells)
    assert [caches.short_side("frozen_probe", b, "imagenet") for b in backbones] == [256, 512, 512, 1170, 1170]
    assert caches.short_side("frozen_probe", "d", "flowers102") is None
    # One shared cache; and share: false, one cache per short side as before.
    caches = InputCaches({**config, "input_cache": {**options, "shared_short_sides": [512]}}, backbones, cells)
    assert [caches.short_side("frozen_probe", b, "imagenet") for b in backbones] == [512, 512, 512, None, None]
    caches = InputCaches({**config, "input_cache": {**options, "share": False}}, backbones, cells)
    assert [caches.short_side("frozen_probe", b, "imagenet") for b in backbones] == [256, 293, 512, 1170, 1170]
    # Off: every job reads its files.
    caches = InputCaches({**config, "input_cache": {"enabled": False}}, backbones, cells)
    assert caches.short_side("frozen_probe", "a", "imagenet") is None


@pytest.mark.parametrize("recipe", ["bob_probe", "finetune"])
def test_a_smaller_job_reads_the_shared_cache_and_crops_as_from_an_image_of_its_size(prepared, tmp_path, recipe):
    """A 56-px job (short side 64) trains from the cache at 128: its random-resized crop takes the same share of
    the image (scale and aspect drawn as from the 64-px image), and the same box gives the same picture."""
    size, own, shared = 56, cache_short_side(56, 8 / 7), 128
    write_input_cache(prepared, tmp_path / "own", own)
    write_input_cache(prepared, tmp_path / "shared", shared)
    splits = {name: prepared.split(name) for name in ("train", "val", "test")}
    options = FinetuneOptions()
    out = cached_splits(splits, prepared, tmp_path / "shared", TRANSFORMS[1], tmp_path, options, 10**9)
    small, large = load_input_cache(tmp_path / "own", prepared), out["train"][0]
    assert min(large[0].shape[:2]) == shared  # the job reads the larger images ...
    if recipe == "bob_probe":
        transform = bob_probe_train_transform(size)
    else:
        transform = train_transform(options, size, TRANSFORMS[0].mean, TRANSFORMS[0].std)
    crop = transform.transforms[0]  # the random-resized crop: the only step that sees the source's size
    dataset = AugmentedImages(large, out["train"][1], transform)
    assert dataset[0][0].shape == (3, size, size)  # ... and trains at its own size

    def crop_at(image, *box):
        return np.asarray(F.resized_crop(image, *box, [size, size], F.InterpolationMode.BICUBIC), float)

    agree, same, elsewhere = [], [], []
    for i in range(len(large)):
        a, b = Image.fromarray(small[i]), Image.fromarray(large[i])
        (h_a, w_a), (h_b, w_b) = small[i].shape[:2], large[i].shape[:2]
        ky, kx = h_b / h_a, w_b / w_a
        for seed in range(10):
            boxes = []
            for image in (a, b):
                random.seed(seed)  # timm's crop draws from random, BoB's (MAE's) from torch
                torch.manual_seed(seed)
                boxes.append(crop.get_params(image, crop.scale, crop.ratio))
            (top, left, h1, w1), (_, _, h2, w2) = boxes
            # The same share of the image, up to the rounding of each side to whole pixels.
            agree.append(abs(h1 / h_a - h2 / h_b) <= 1 / h_a + 1 / h_b and abs(w1 / w_a - w2 / w_b) <= 1 / w_a + 1 / w_b)
            # The same box, scaled to the larger image, gives the same picture up to the resampling.
            mine = crop_at(a, top, left, h1, w1)
            scaled = round(top * ky), round(left * kx), round(h1 * ky), round(w1 * kx)
            same.append(np.abs(mine - crop_at(b, *scaled)).mean())
            moved = (h_b - scaled[2]) // 2 if scaled[0] < (h_b - scaled[2]) // 4 else 0, scaled[1], *scaled[2:]
            if moved[0] != scaled[0]:
                elsewhere.append(np.abs(mine - crop_at(b, *moved)).mean())
    # A few draws fall on either side of a whole pixel (an image of exactly 4:3, the aspect bound, taken whole).
    assert np.mean(agree) >= 0.9
    assert np.mean(same) < 0.2 * np.mean(elsewhere) and np.percentile(same, 90) < 0.5 * np.mean(elsewhere)
