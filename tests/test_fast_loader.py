"""Fast loader (DATASET.LOADER fast): batch format, epochs, determinism, DDP shards, pairing of
images with labels, configs and errors, and the test loader against the PIL path's."""
import numpy as np
import pytest
import torch

from mdistiller.data import build_loaders, build_sources
from mdistiller.data.fast import FastTestLoader, FastTrainLoader, build_fast_loaders
from mdistiller.data.fast.augment import OpTable
from mdistiller.data.fast.loader import shard_order
from mdistiller.data.transforms import CIFAR100_MEAN, CIFAR100_STD
from mdistiller.errors import ConfigError
from helpers.data import cfg_for, no_host_syncs

MEAN = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)


def marked(n):
    """n constant images with distinct levels for n <= 250 — never 0 (the crop's padding) nor
    125 (the Cutout fill's red) — and label i % 10: a view's pixels tell which image it is."""
    levels = torch.arange(n) % 250 + 1
    levels = levels + (levels >= 125).long()
    images = levels.to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    return images, torch.arange(n) % 10, levels


def loader(n=203, batch_size=16, views=2, **kwargs):
    images, labels, _ = marked(n)
    return FastTrainLoader(images, labels, batch_size, views, CIFAR100_MEAN, CIFAR100_STD, **kwargs)


def levels_of(view):
    """Undo the normalisation: the uint8 levels of a float view."""
    return torch.round((view * STD + MEAN) * 255).long()


def epoch(train_loader):
    return list(train_loader)


def test_two_view_batches():
    batches = epoch(loader(203, 16))
    assert len(batches) == len(loader(203, 16)) == 13
    for batch in batches:
        assert set(batch) == {"image_weak", "image_strong", "target", "index"}
        assert batch["image_weak"].dtype == batch["image_strong"].dtype == torch.float32
        assert batch["target"].dtype == batch["index"].dtype == torch.long
    assert [b["target"].shape[0] for b in batches] == [16] * 12 + [11]
    assert batches[0]["image_strong"].shape == (16, 3, 32, 32)


def test_one_view_batches():
    batch = next(iter(loader(views=1)))
    assert set(batch) == {"image", "target", "index"} and batch["image"].shape == (16, 3, 32, 32)
    with pytest.raises(ValueError, match="views must be 1 or 2"):
        loader(views=3)


def test_an_epoch_visits_every_sample_once():
    indices = torch.cat([b["index"] for b in epoch(loader(203, 16))])
    assert sorted(indices.tolist()) == list(range(203))


def test_a_last_batch_of_one_sample_is_dropped():
    assert len(loader(17, 16)) == 1 and len(epoch(loader(17, 16))) == 1
    assert len(loader(18, 16)) == 2


def test_views_and_targets_belong_to_the_indexed_sample():
    images, labels, levels = marked(203)
    identity = OpTable([("Identity", 0.0, 1.0)])  # strong = crop/flip + Cutout only: levels survive
    for batch in loader(203, 16, table=identity):
        index = batch["index"]
        assert torch.equal(batch["target"], labels[index])
        weak = levels_of(batch["image_weak"])
        assert torch.equal(weak[:, :, 16, 16], levels[index].view(-1, 1).expand(-1, 3))  # always inside the crop
        strong = levels_of(batch["image_strong"])[:, 0].flatten(1)
        assert torch.equal(torch.mode(strong, dim=1).values, levels[index])


def test_same_seed_same_batches_new_epoch_new_batches():
    def first(train_loader):
        return next(iter(train_loader))

    a, b = loader(seed=1), loader(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(first(a).values(), first(b).values()))
    assert not torch.equal(first(loader(seed=2))["index"], first(loader(seed=1))["index"])
    c = loader(seed=1)
    c.set_epoch(5)
    fifth = first(c)
    c.set_epoch(6)
    assert not torch.equal(first(c)["index"], fifth["index"])
    d = loader(seed=1)
    d.load_state_dict({"epoch": 5})
    assert torch.equal(first(d)["image_strong"], fifth["image_strong"])
    assert d.state_dict() == {"epoch": 6}  # a pass without set_epoch moves to the next epoch


def test_workers_do_not_change_the_batches():
    threads = torch.get_num_threads()
    plain = epoch(loader(203, 16, block_size=32))
    threaded = epoch(loader(203, 16, block_size=32, num_workers=2))
    for x, y in zip(plain, threaded):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert torch.get_num_threads() == threads


def test_stopping_early_is_clean():
    train_loader = loader(203, 16, block_size=16, num_workers=2)
    for i, _ in enumerate(train_loader):
        if i == 2:
            break
    assert len(epoch(train_loader)) == 13


def test_distributed_shards_are_equal_disjoint_and_cover_the_data():
    n, world = 203, 3
    shards = [torch.cat([b["index"] for b in epoch(loader(n, 16, rank=r, world_size=3))]) for r in range(world)]
    assert [len(s) for s in shards] == [68] * 3  # ceil(203 / 3), padded like DistributedSampler
    merged = torch.cat(shards).tolist()
    assert set(merged) == set(range(n)) and len(merged) - len(set(merged)) == 1
    order = shard_order(n, 0, 0, 0, 1, torch.device("cpu"))  # the shared permutation
    padded = torch.cat([order, order[:1]])
    assert all(torch.equal(shard_order(n, 0, 0, r, world, torch.device("cpu")), padded[r::world]) for r in range(world))


def test_channels_last_and_dtype():
    batch = next(iter(loader(dtype=torch.bfloat16, channels_last=True)))
    assert batch["image_weak"].dtype == torch.bfloat16
    assert batch["image_strong"].is_contiguous(memory_format=torch.channels_last)


def test_test_loader_yields_normalised_batches_in_order():
    images, labels, levels = marked(25)
    batches = list(FastTestLoader(images, labels, 10, CIFAR100_MEAN, CIFAR100_STD))
    assert len(batches) == 3 and [t.shape[0] for _, t in batches] == [10, 10, 5]
    assert torch.equal(torch.cat([t for _, t in batches]), labels)
    assert torch.equal(levels_of(torch.cat([x for x, _ in batches]))[:, 0, 0, 0], levels)


def test_build_fast_loaders_from_config(root):
    cfg = cfg_for(root, DATASET__LOADER="fast", DEVICE="cpu", SOLVER__BATCH_SIZE=32, DATASET__TEST__BATCH_SIZE=50)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, 2, rank=1, world_size=2)
    assert isinstance(train_loader, FastTrainLoader) and (num_data, num_classes) == (400, 100)
    assert train_loader.batch_size == 16 and len(train_loader) == 200 // 16 + 1
    assert next(iter(train_loader))["image_weak"].shape == (16, 3, 32, 32)
    pil_test = build_loaders(cfg_for(root, DATASET__TEST__BATCH_SIZE=50, SOLVER__BATCH_SIZE=32), 1, rank=1,
                             world_size=2)[1]  # rank 1's share of the test set, as the fast loader's
    assert len(test_loader) == len(pil_test) == 1
    for (image, target), (pil_image, pil_target) in zip(test_loader, pil_test):
        assert torch.equal(image, pil_image) and torch.equal(target, pil_target)  # bit for bit


def test_subsets_are_the_pil_paths(root):
    cfg = cfg_for(root, DATASET__LOADER="fast", DEVICE="cpu", DATASET__TRAIN_SUBSET=150, DATASET__TEST_SUBSET=30)
    train_loader, test_loader, num_data, _ = build_fast_loaders(cfg, 1)
    train, test, _, _ = build_sources(cfg)
    assert num_data == 150 and len(test_loader.targets) == 30
    assert torch.equal(train_loader.images.permute(0, 2, 3, 1), torch.from_numpy(train.images))
    assert torch.equal(test_loader.targets, torch.from_numpy(test.labels))


@pytest.mark.parametrize("opts, with_index, world, message", [
    ({"DATASET__TYPE": "imagenet"}, False, 1,
     r"^config key DATASET.LOADER is 'fast', which supports DATASET.TYPE cifar100 only \(got 'imagenet'\); "
     r"use DATASET.LOADER pil$"),
    ({"SOLVER__BATCH_SIZE": 30}, False, 4,
     r"^config key SOLVER.BATCH_SIZE is 30, which 4 processes cannot share evenly; use a multiple of 4$"),
])
def test_config_errors(root, opts, with_index, world, message):
    cfg = cfg_for(root, DATASET__LOADER="fast", DEVICE="cpu", **opts)
    with pytest.raises(ConfigError, match=message):
        build_fast_loaders(cfg, 2, with_index, 0, world)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_epoch_stays_on_the_device_without_host_syncs():
    images, labels, _ = marked(500)
    train_loader = FastTrainLoader(images.cuda(), labels.cuda(), 64, 2, CIFAR100_MEAN, CIFAR100_STD, num_workers=2)
    epoch(train_loader)  # first pass makes the cached constants
    with no_host_syncs():
        batches = epoch(train_loader)
    assert len(batches) == 8 and all(b["image_strong"].is_cuda and b["index"].is_cuda for b in batches)
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(500))


def test_two_view_throughput_measures_both_pipelines():
    from mdistiller.data.fast.bench import two_view_throughput

    images = np.random.default_rng(0).integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    result = two_view_throughput(images, np.arange(96) % 10, batch_size=16, num_workers=0, batches=4)
    assert set(result) == {"pil", "fast", "speedup"}
    assert result["pil"] > 0 and result["fast"] > 0
    assert result["speedup"] == pytest.approx(result["fast"] / result["pil"])
