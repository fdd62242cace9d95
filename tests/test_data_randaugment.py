"""The strong view (PIL reference path): exact ops against the authors' outputs, and statistics.

The exact tests read ../shared/compat/official_augment_ops.npz (the official op functions run on
real CIFAR-100 images); they are skipped with a reason when the shared folder is absent
(set MDISTILLER_SHARED to point at it).
"""
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from mdistiller.data import randaugment as ra
from mdistiller.data.transforms import CIFAR100_MEAN, CIFAR100_STD, PadCropFlip, cifar_spec, to_tensor, train_views
from helpers.data import pixels

OP_NAMES = [name for name, _, _ in ra.OPS]


def test_op_table_is_the_papers():
    assert ra.OPS == [
        ("AutoContrast", 0, 1), ("Brightness", 0.05, 0.95), ("Color", 0.05, 0.95), ("Contrast", 0.05, 0.95),
        ("Equalize", 0, 1), ("Identity", 0, 1), ("Posterize", 4, 8), ("Rotate", -30, 30),
        ("Sharpness", 0.05, 0.95), ("ShearX", -0.3, 0.3), ("ShearY", -0.3, 0.3), ("Solarize", 0, 256),
        ("TranslateX", -0.3, 0.3), ("TranslateY", -0.3, 0.3)]
    assert ra.OPS_PER_IMAGE == 2 and ra.CUTOUT_MAX == 0.5 and ra.CUTOUT_FILL == (125, 123, 114)


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_matches_official_exactly(official, name):
    images, expected = official["images"], official[name]
    for m, v in enumerate(official[f"{name}__magnitudes"]):
        for i, image in enumerate(images):
            out = np.asarray(ra.apply_op(Image.fromarray(image), name, float(v)))
            assert out.shape == image.shape and out.dtype == np.uint8
            np.testing.assert_array_equal(out, expected[m, i], err_msg=f"{name}({v}) on image {i}")


def test_geometric_ops_really_move_pixels(official):
    # Guard against a fixture where the op would be the identity: then "exact" proves nothing.
    for name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Solarize", "Posterize"):
        assert (official[name] != official["images"][None]).any(), name


def test_cutout_matches_official_at_recorded_centres(official):
    image = official["images"][0]
    for m, v in enumerate(official["Cutout__magnitudes"]):
        cx, cy = official[f"Cutout_v{v}_centre"]
        out = np.asarray(ra.cutout(Image.fromarray(image), float(v), float(cx), float(cy)))
        np.testing.assert_array_equal(out, official["Cutout"][m, 0], err_msg=f"Cutout v={v}")
        assert (out != image).any()


def test_cutout_box_is_pils_inclusive_rectangle():
    # The official code draws with ImageDraw.rectangle; our box must cover the same pixels for
    # any side, centre and image size (fractional ends, clipping at every border).
    rng = random.Random(0)
    for _ in range(2000):
        w, h = rng.choice([(32, 32), (37, 29), (64, 64)])
        v, cx, cy = ra.sample_cutout(w, h, rng)
        side = v * w
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        reference = Image.new("RGB", (w, h))
        if v > 0:
            ImageDraw.Draw(reference).rectangle((x0, y0, min(w, x0 + side), min(h, y0 + side)), ra.CUTOUT_FILL)
        out = ra.cutout(Image.new("RGB", (w, h)), v, cx, cy)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(reference))


def test_cutout_with_zero_side_is_a_no_op():
    img = Image.fromarray(pixels(1))
    assert ra.cutout(img, 0.0, 10.0, 10.0) is img


def test_randaugment_applies_the_sampled_ops_then_cutout():
    img = Image.fromarray(pixels(2))
    out = ra.RandAugment()(img, random.Random(7))
    rng = random.Random(7)
    expected = img
    for name, v in ra.sample_ops(rng):
        expected = ra.apply_op(expected, name, v)
    expected = ra.cutout(expected, *ra.sample_cutout(32, 32, rng))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def _chi2(counts, expected):
    counts = np.asarray(counts, dtype=float)
    return float(((counts - expected) ** 2 / expected).sum())


# chi-square critical values at p = 0.001 (fixed seeds make the tests deterministic anyway)
CHI2_999 = {8: 26.12, 9: 27.88, 13: 34.53}


def test_each_op_is_drawn_uniformly_with_replacement():
    rng = random.Random(0)
    draws = [ra.sample_ops(rng) for _ in range(7000)]
    assert all(len(d) == 2 for d in draws)
    names = [name for d in draws for name, _ in d]
    counts = [names.count(n) for n in OP_NAMES]
    assert _chi2(counts, len(names) / 14) < CHI2_999[13]
    assert all(abs(c / len(names) - 1 / 14) < 0.01 for c in counts)
    # with replacement: the same op twice happens about 1/14 of the time
    repeats = np.mean([d[0][0] == d[1][0] for d in draws])
    assert abs(repeats - 1 / 14) < 0.015


def test_magnitudes_are_uniform_in_each_range():
    rng = random.Random(1)
    by_op = {n: [] for n in OP_NAMES}
    for _ in range(14000):
        for name, v in ra.sample_ops(rng):
            by_op[name].append(v)
    for name, low, high in ra.OPS:
        values = np.asarray(by_op[name])
        assert values.min() >= low and values.max() < high, name
        # deciles of a uniform: ten equal bins
        bins = np.histogram(values, bins=10, range=(low, high))[0]
        assert _chi2(bins, len(values) / 10) < CHI2_999[9], name


def test_cutout_sizes_and_centres():
    rng = random.Random(2)
    draws = np.array([ra.sample_cutout(32, 32, rng) for _ in range(5000)])
    sides = draws[:, 0] * 32
    assert sides.min() >= 0 and sides.max() < 16
    assert _chi2(np.histogram(sides, bins=8, range=(0, 16))[0], len(sides) / 8) < CHI2_999[8] + 5
    # official quirk, kept: np.random.uniform(w) draws centres in (1, w], not [0, w)
    for centre in (draws[:, 1], draws[:, 2]):
        assert centre.min() > 1 and centre.max() <= 32
        assert _chi2(np.histogram(centre, bins=10, range=(1, 32))[0], len(centre) / 10) < CHI2_999[9]


def test_crop_offsets_uniform_and_flip_half():
    crop = PadCropFlip(4)
    rng = random.Random(3)
    draws = np.array([crop.sample(rng) for _ in range(9000)])
    for offsets in (draws[:, 0], draws[:, 1]):
        counts = np.bincount(offsets.astype(int), minlength=9)
        assert len(counts) == 9  # 0..8 only
        assert _chi2(counts, len(offsets) / 9) < CHI2_999[8]
    assert abs(draws[:, 2].mean() - 0.5) < 0.025


def test_pad_crop_flip_equals_torchvision_pad_crop_flip():
    image = pixels(4)
    pil = Image.fromarray(image)
    crop = PadCropFlip(4)
    for top, left, flip in [(0, 0, False), (8, 8, True), (3, 6, False), (5, 1, True)]:
        expected = TF.crop(TF.pad(pil, 4, fill=0), top, left, 32, 32)
        if flip:
            expected = TF.hflip(expected)
        np.testing.assert_array_equal(crop.apply(image, top, left, flip), np.asarray(expected))


def test_to_tensor_is_bitwise_torchvision():
    image = pixels(5)
    reference = T.Compose([T.ToTensor(), T.Normalize(CIFAR100_MEAN, CIFAR100_STD)])(Image.fromarray(image))
    assert torch.equal(to_tensor(image, CIFAR100_MEAN, CIFAR100_STD), reference)
    assert torch.equal(to_tensor(Image.fromarray(image), CIFAR100_MEAN, CIFAR100_STD), reference)


def test_two_views_draw_independent_crops():
    weak, strong = train_views(cifar_spec(), 2)
    assert weak.augment is None and isinstance(strong.augment, ra.RandAugment)
    assert train_views(cifar_spec(), 1)[0].augment is None
    strong.augment = None  # compare the geometric steps alone
    image = pixels(6)  # every pixel distinct: two crops agree only with the same offsets and flip
    random.seed(0)
    same = sum(torch.equal(weak(image), strong(image)) for _ in range(300))
    assert same < 10  # independent draws agree with probability 1/162; one shared draw would give 300
