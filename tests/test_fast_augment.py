"""Fast weak/strong views (mdistiller.data.fast.augment): draws per sample, their distribution,
and the order of the steps, against the PIL path's sampling."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from mdistiller.data import randaugment as ra
from mdistiller.data.fast import augment
from mdistiller.data.transforms import PadCropFlip
from helpers.data import no_host_syncs, pixels

TABLE = augment.OpTable()
N = 14000


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def batch_of(image, n):
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).contiguous()


def test_table_is_the_pil_paths():
    assert TABLE.names == [name for name, _, _ in ra.OPS]
    assert TABLE.low == tuple(low for _, low, _ in ra.OPS) and TABLE.high == tuple(high for _, _, high in ra.OPS)


def test_each_op_is_drawn_uniformly_with_replacement():
    op_ids, _ = TABLE.sample(N, 2, generator(1), "cpu")
    counts = torch.bincount(op_ids.flatten(), minlength=len(TABLE)).numpy()
    expected = 2 * N / len(TABLE)  # 2000; binomial sd ~ 43
    assert np.all(np.abs(counts - expected) < 200), counts
    same = (op_ids[:, 0] == op_ids[:, 1]).float().mean().item()  # with replacement: 1/14 repeat
    assert abs(same - 1 / len(TABLE)) < 0.01


def test_magnitudes_are_uniform_in_each_range():
    op_ids, magnitudes = TABLE.sample(N, 2, generator(2), "cpu")
    for i, (name, low, high) in enumerate(ra.OPS):
        m = magnitudes[op_ids == i].numpy()
        assert m.min() >= low and m.max() < high, name
        assert abs(m.mean() - (low + high) / 2) < 0.05 * (high - low), name
        assert abs(m.std() - (high - low) / np.sqrt(12)) < 0.05 * (high - low), name
    bits = torch.floor(magnitudes[op_ids == TABLE.names.index("Posterize")]).long()
    assert set(bits.tolist()) == {4, 5, 6, 7}  # int(v) for v in [4, 8)


def test_cutout_sizes_and_centres():
    side, cx, cy = augment.sample_cutout(N, 32, 32, generator(3), "cpu")
    assert side.min() >= 0 and side.max() < 16 and abs(side.mean().item() - 8) < 0.3
    for centre in (cx, cy):  # the official np.random.uniform(32) draws from (1, 32]
        assert centre.min() > 1 and centre.max() <= 32 and abs(centre.mean().item() - 16.5) < 0.5


def test_crop_offsets_uniform_and_flip_half():
    offsets, flips = augment.sample_crop_flip(N, generator(4), "cpu")
    for column in offsets.T:
        counts = torch.bincount(column, minlength=9).numpy()
        assert len(counts) == 9 and np.all(np.abs(counts - N / 9) < 200), counts  # sd ~ 37
    assert abs(flips.float().mean().item() - 0.5) < 0.02


def test_every_sample_draws_its_own_views():
    """A batch of one image repeated: per-sample draws give (almost) all-different views."""
    images = batch_of(pixels(0), 256)
    distinct = lambda views: len({bytes(v.numpy()) for v in views})
    # weak: 81 crops x 2 flips are possible; 256 independent draws hit ~129 of them on average
    assert distinct(augment.weak_view(images, generator(5))) > 110
    assert distinct(augment.strong_view(images, generator(5), TABLE)) > 250
    weak = augment.weak_view(images, generator(6))
    assert torch.equal(weak, augment.weak_view(images, generator(6)))  # a generator fixes the draws


def test_strong_view_is_crop_flip_then_ops_then_cutout():
    """Replaying the strong view's draws (same generator order) step by step, with the PIL
    path's own functions, gives the same images: the steps and their order are the official."""
    images = np.stack([pixels(seed) for seed in range(24)])
    strong = augment.strong_view(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), generator(7), TABLE)
    g = generator(7)
    offsets, flips = augment.sample_crop_flip(len(images), g, "cpu")
    op_ids, magnitudes = TABLE.sample(len(images), ra.OPS_PER_IMAGE, g, "cpu")
    side, cx, cy = augment.sample_cutout(len(images), 32, 32, g, "cpu")
    for i, img in enumerate(images):
        out = Image.fromarray(PadCropFlip(4).apply(img, *offsets[i].tolist(), bool(flips[i])))
        for k in range(ra.OPS_PER_IMAGE):
            out = ra.apply_op(out, TABLE.names[op_ids[i, k]], float(magnitudes[i, k]))
        out = ra.cutout(out, float(side[i]) / 32, float(cx[i]), float(cy[i]))
        np.testing.assert_array_equal(strong[i].permute(1, 2, 0).numpy(), np.asarray(out))


def test_strong_view_statistics_match_the_pil_path():
    """Same image, many draws: per-channel mean and spread of the strong views agree with the
    PIL RandAugment's (identical in distribution, not only op by op)."""
    image = pixels(8)
    n = 1500
    fast = augment.strong_view(batch_of(image, n), generator(9), TABLE).permute(0, 2, 3, 1).double().numpy()
    rng = random.Random(10)
    crop_flip = PadCropFlip(4)
    pil = np.stack([np.asarray(ra.RandAugment()(Image.fromarray(crop_flip(image, rng=rng)), rng=rng))
                    for _ in range(n)]).astype(float)
    fast_means, pil_means = fast.mean(axis=(1, 2)), pil.mean(axis=(1, 2))  # (n, 3): one per view
    standard_error = np.sqrt(fast_means.var(0) / n + pil_means.var(0) / n)
    assert np.all(np.abs(fast_means.mean(0) - pil_means.mean(0)) < 4 * standard_error)
    assert np.all(np.abs(fast_means.std(0) / pil_means.std(0) - 1) < 0.1)
    cut = lambda views: (views == ra.CUTOUT_FILL).all(-1).mean()  # fraction of pixels in the square
    assert cut(fast) == pytest.approx(cut(pil), abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_match_cpu_and_never_wait_for_the_host():
    """The whole-batch path on the GPU gives the CPU's exact pixels for the same draws, and no
    op in it synchronises with the host (torch raises on any that does)."""
    images = torch.from_numpy(np.stack([pixels(seed) for seed in range(64)])).permute(0, 3, 1, 2).contiguous()
    op_ids, magnitudes = TABLE.sample(64, 1, generator(11), "cpu")
    cpu = augment.apply_ops(images, op_ids[:, 0], magnitudes[:, 0], TABLE)
    cuda, ids, mags = images.cuda(), op_ids[:, 0].cuda(), magnitudes[:, 0].cuda()
    augment.strong_view(cuda, torch.Generator("cuda").manual_seed(0), TABLE)  # makes the constants
    with no_host_syncs():
        on_gpu = augment.apply_ops(cuda, ids, mags, TABLE)
        augment.strong_view(cuda, torch.Generator("cuda").manual_seed(1), TABLE)
        augment.weak_view(cuda, torch.Generator("cuda").manual_seed(1))
    assert torch.equal(on_gpu.cpu(), cpu)


def test_weak_and_strong_views_together_are_the_views_one_by_one():
    """The loader's joint call (one padding for both crops) draws and computes exactly what
    weak_view then strong_view do with the same generator."""
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    weak, strong = augment.weak_and_strong_views(images, generator(11), TABLE)
    g = generator(11)
    assert torch.equal(weak, augment.weak_view(images, g))
    assert torch.equal(strong, augment.strong_view(images, g, TABLE))
