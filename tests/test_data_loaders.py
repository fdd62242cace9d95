"""build_loaders: batch format, views, CRD indices, worker seeding, sharding, pinning, dispatch."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler

from mdistiller.data import build_loaders
from mdistiller.data.datasets import ContrastSampler
from mdistiller.data import loaders, sources
from mdistiller.data.loaders import TEST, make_loader, seed_worker
from mdistiller.errors import ConfigError
from helpers.data import cfg_for


def test_one_view_batch_format(root):
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=16, DATASET__TEST__BATCH_SIZE=10)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views=1)
    assert (num_data, num_classes) == (400, 100)
    batch = next(iter(train_loader))
    assert sorted(batch) == ["image", "index", "target"]
    assert batch["image"].shape == (16, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["target"].dtype == batch["index"].dtype == torch.int64
    labels = torch.from_numpy(train_loader.dataset.source.labels)
    assert torch.equal(batch["target"], labels[batch["index"]])
    images, targets = next(iter(test_loader))
    assert images.shape == (10, 3, 32, 32) and targets.dtype == torch.int64
    assert len(train_loader) == 25 and len(test_loader) == 10


def test_two_view_batch_format(root):
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=8)
    train_loader, _, _, _ = build_loaders(cfg, views=2)
    batch = next(iter(train_loader))
    assert sorted(batch) == ["image_strong", "image_weak", "index", "target"]
    assert batch["image_weak"].shape == batch["image_strong"].shape == (8, 3, 32, 32)
    assert not torch.equal(batch["image_weak"], batch["image_strong"])


def test_views_must_be_one_or_two(root):
    with pytest.raises(ValueError, match="views must be 1 or 2"):
        build_loaders(cfg_for(root), views=3)


def test_crd_contrastive_index(root):
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=32, CRD__NCE__K=50)
    train_loader, _, _, _ = build_loaders(cfg, views=2, with_index=True)
    batch = next(iter(train_loader))
    labels = torch.from_numpy(train_loader.dataset.source.labels)
    contrast = batch["contrastive_index"]
    assert contrast.shape == (32, 51) and contrast.dtype == torch.int64
    assert torch.equal(contrast[:, 0], batch["index"])  # exact mode: the sample itself
    assert (labels[contrast[:, 1:]] != batch["target"][:, None]).all()  # negatives: other classes
    assert all(len(set(row.tolist())) == 50 for row in contrast[:, 1:])  # without replacement


def test_contrast_sampler_modes_and_distribution():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    rng = np.random.default_rng(0)
    relax = ContrastSampler(labels, k=4, mode="relax")
    positives = [relax.sample(5, rng)[0] for _ in range(300)]  # class 1 = samples 5, 6, 7
    assert set(positives) == {5, 6, 7}
    exact = ContrastSampler(labels, k=4, mode="exact")
    negatives = np.concatenate([exact.sample(5, rng)[1:] for _ in range(3000)])
    counts = np.bincount(negatives, minlength=10)
    assert counts[5:8].sum() == 0
    others = np.r_[counts[:5], counts[8:]]
    assert np.abs(others / others.sum() - 1 / 7).max() < 0.02  # uniform over the other classes
    # more negatives than exist: drawn with replacement
    many = ContrastSampler(labels, k=20).sample(0, rng)
    assert len(many) == 21 and set(labels[many[1:]]) <= {1, 2}


def test_contrast_sampler_differs_per_process(monkeypatch):
    sampler = ContrastSampler(np.arange(1000) % 10, k=30)
    first = sampler.sample(0)
    monkeypatch.setattr("os.getpid", lambda: -1)  # as if forked into a worker
    np.random.seed(123)
    assert not np.array_equal(sampler.sample(0), first)


class _Probe(Dataset):
    """Reports what each worker's three generators produce."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = torch.utils.data.get_worker_info()
        return info.id, random.random(), float(np.random.rand()), torch.rand(1).item()


def _draws(seed, rank=0):
    loader = make_loader(_Probe(), batch_size=1, role=TEST, seed=seed, rank=rank, num_workers=2)
    return [(int(w), a.item(), b.item(), c.item()) for w, a, b, c in loader]


def test_workers_are_seeded_distinctly_and_reproducibly():
    draws = _draws(seed=0)
    by_worker = {w: (a, b, c) for w, a, b, c in draws[:2]}  # each worker's first item
    assert set(by_worker) == {0, 1}
    assert len({v for vals in by_worker.values() for v in vals}) == 6  # all generators differ
    assert draws == _draws(seed=0)
    assert draws != _draws(seed=1)
    assert draws != _draws(seed=0, rank=1)


def test_seed_worker_derives_all_three_generators_from_the_torch_seed():
    def after_seed_worker(torch_seed):
        torch.manual_seed(torch_seed)  # what torch sets in worker k: base seed + k
        seed_worker(0)
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    assert after_seed_worker(11) == after_seed_worker(11)
    assert len(set(after_seed_worker(11) + after_seed_worker(12))) == 6


def test_same_seed_same_batches_with_workers(root):
    def first_batch(seed):
        cfg = cfg_for(root, SEED=seed, SOLVER__BATCH_SIZE=8, DATASET__NUM_WORKERS=2)
        batch = next(iter(build_loaders(cfg, views=2, with_index=True)[0]))
        return batch

    a, b, c = first_batch(5), first_batch(5), first_batch(6)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["index"], c["index"])


def test_distributed_shards(root):
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=16)
    seen = []
    for rank in (0, 1):
        train_loader, test_loader, num_data, _ = build_loaders(cfg, views=1, rank=rank, world_size=2)
        assert isinstance(train_loader.sampler, DistributedSampler) and train_loader.batch_size == 8
        assert num_data == 400 and len(test_loader.dataset) == 100  # every rank evaluates everything
        train_loader.sampler.set_epoch(0)
        seen.append([i for batch in train_loader for i in batch["index"].tolist()])
    assert len(seen[0]) == len(seen[1]) == 200
    assert sorted(seen[0] + seen[1]) == list(range(400))


def test_batch_size_must_split_over_processes(root):
    with pytest.raises(ConfigError, match=r"SOLVER.BATCH_SIZE is 10, which 3 processes cannot share evenly"):
        build_loaders(cfg_for(root, SOLVER__BATCH_SIZE=10), views=1, world_size=3)


def test_last_batch_of_one_is_dropped(root):
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=7, DATASET__TRAIN_SUBSET=50)  # 50 = 7 * 7 + 1
    train_loader, _, _, _ = build_loaders(cfg, views=1)
    assert train_loader.drop_last and len(train_loader) == 7
    cfg = cfg_for(root, SOLVER__BATCH_SIZE=8, DATASET__TRAIN_SUBSET=50)  # remainder 2: kept
    assert not build_loaders(cfg, views=1)[0].drop_last


def test_pinned_memory_only_for_cuda(root, monkeypatch):
    cfg = cfg_for(root)
    assert not build_loaders(cfg, views=1, device="cpu")[0].pin_memory
    assert build_loaders(cfg, views=1, device="cuda:0")[0].pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_loaders(cfg, views=1)[1].pin_memory
    assert not build_loaders(cfg_for(root, DEVICE="cpu"), views=1)[0].pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not build_loaders(cfg, views=1)[0].pin_memory


def test_fast_loader_dispatch(root, monkeypatch):
    calls = []
    monkeypatch.setitem(loaders.LOADERS, "fast", lambda *args: calls.append(args) or "fast loaders")
    cfg = cfg_for(root, DATASET__LOADER="fast")
    assert build_loaders(cfg, 2, True, 1, 2, device="cuda:1") == "fast loaders"
    assert calls == [(cfg, 2, True, 1, 2, "cuda:1")]
    assert loaders.LOADERS["pil"] is loaders.build_pil_loaders


def test_unsupported_dataset_type(root, monkeypatch):
    monkeypatch.delitem(sources.BUILDERS, "cifar100")  # as for a type no module provides
    with pytest.raises(ConfigError, match=r"DATASET.TYPE is 'cifar100', which this installation cannot load; "
                                          r"choose one of imagenet, tiny_imagenet, imagefolder"):
        build_loaders(cfg_for(root), views=1)


@pytest.mark.parametrize("loader", ["pil", "fast"])
def test_ranks_evaluate_disjoint_shares_of_the_test_set(root, loader):
    cfg = cfg_for(root, DATASET__LOADER=loader, DEVICE="cpu", DATASET__TEST__BATCH_SIZE=16, SOLVER__BATCH_SIZE=30)

    def targets(rank, world):
        test_loader = build_loaders(cfg, 1, rank=rank, world_size=world)[1]
        return torch.cat([target for _, target in test_loader])

    whole = targets(0, 1)
    shares = [targets(rank, 3) for rank in range(3)]
    assert [len(s) for s in shares] == [34, 33, 33]  # 100 test images, unpadded
    for rank, share in enumerate(shares):
        assert torch.equal(share, whole[rank::3])
