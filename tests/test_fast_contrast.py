"""CRD's contrastive indices on the fast path (data/fast/contrast.py): the rules of the PIL path's
ContrastSampler (negatives from other classes, without replacement when possible, exact/relax
positives), uniform draws, and the loader's batches (shapes, determinism, workers, config)."""
import pytest
import torch

from mdistiller.data import build_loaders
from mdistiller.data.fast import FastTrainLoader
from mdistiller.data.fast.contrast import DeviceContrastSampler
from mdistiller.data.transforms import CIFAR100_MEAN, CIFAR100_STD
from helpers.data import cfg_for, no_host_syncs


def draw(labels, k, mode, index, seed=0):
    sampler = DeviceContrastSampler(labels, k, mode)
    return sampler, sampler.sample(index, labels[index], torch.Generator().manual_seed(seed))


def test_exact_negatives_are_distinct_samples_of_other_classes():
    labels = torch.arange(1000) % 10  # 100 per class: 900 others
    index = torch.randperm(1000, generator=torch.Generator().manual_seed(1))[:64]
    sampler, out = draw(labels, 50, "exact", index)
    assert (sampler.replace_none, sampler.replace_all) == (True, False)
    assert out.shape == (64, 51) and out.dtype == torch.long
    assert torch.equal(out[:, 0], index)
    assert (labels[out[:, 1:]] != labels[index].unsqueeze(1)).all()
    assert all(len(set(row.tolist())) == 50 for row in out[:, 1:])


def test_relax_positive_is_another_sample_of_the_class():
    labels = torch.arange(1000) % 10
    index = torch.zeros(400, dtype=torch.long)
    _, out = draw(labels, 5, "relax", index)
    assert (labels[out[:, 0]] == 0).all()
    assert (out[:, 0] != 0).sum() > 380  # the sample itself only 1 time in 100


def test_with_replacement_when_k_exceeds_the_other_classes():
    labels = torch.arange(30) % 3  # 10 per class: 20 others
    sampler, out = draw(labels, 50, "exact", torch.arange(30))
    assert sampler.replace_all and out.shape == (30, 51)
    assert (labels[out[:, 1:]] != labels.unsqueeze(1)).all()


def test_classes_of_different_sizes_choose_row_by_row():
    labels = torch.cat([torch.zeros(5, dtype=torch.long), torch.ones(50, dtype=torch.long)])
    index = torch.tensor([0, 1, 2, 10, 20, 30])  # three of class 0 (50 others), three of class 1 (5 others)
    sampler, out = draw(labels, 10, "exact", index)
    assert not sampler.replace_all and not sampler.replace_none
    negatives = out[:, 1:]
    assert (labels[negatives[:3]] == 1).all() and all(len(set(row.tolist())) == 10 for row in negatives[:3])
    assert (labels[negatives[3:]] == 0).all()  # 10 drawn from 5: with replacement


@pytest.mark.parametrize("per_class, k", [(50, 30), (10, 100)])  # without / with replacement
def test_negatives_and_relaxed_positives_are_uniform(per_class, k):
    labels = torch.arange(4 * per_class) % 4
    rows = 2000
    _, out = draw(labels, k, "relax", torch.zeros(rows, dtype=torch.long), seed=3)
    others = 3 * per_class
    counts = torch.bincount(out[:, 1:].reshape(-1), minlength=len(labels)).double()
    assert (counts[labels == 0] == 0).all()
    expected = rows * k / others
    spread = (expected * (1 - min(k / others, 0.999))) ** 0.5 if k <= others else expected ** 0.5
    assert (counts[labels != 0] - expected).abs().max() < 5 * spread
    positives = torch.bincount(out[:, 0], minlength=len(labels)).double()[labels == 0]
    assert (positives - rows / per_class).abs().max() < 5 * (rows / per_class) ** 0.5


def test_modes_are_checked():
    with pytest.raises(ValueError, match="CRD mode must be 'exact' or 'relax'"):
        DeviceContrastSampler(torch.arange(10) % 2, 3, "loose")


def fast_loader(num_workers=0, seed=0):
    n = 300
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    return FastTrainLoader(images, labels, 32, 1, CIFAR100_MEAN, CIFAR100_STD, seed=seed, num_workers=num_workers,
                           block_size=64, contrast=DeviceContrastSampler(labels, 40, "exact"))


def test_loader_batches_carry_reproducible_contrast_indices():
    first, again, workers = list(fast_loader()), list(fast_loader()), list(fast_loader(2))
    assert len(first) == 10 and all(b["contrastive_index"].shape == (b["index"].shape[0], 41) for b in first)
    assert all(torch.equal(b["contrastive_index"][:, 0], b["index"]) for b in first)
    labels = torch.arange(300) % 10
    assert all((labels[b["contrastive_index"][:, 1:]] != b["target"].unsqueeze(1)).all() for b in first)
    for a, b, c in zip(first, again, workers):  # same seed, any number of workers: the same draws
        assert torch.equal(a["contrastive_index"], b["contrastive_index"])
        assert torch.equal(a["contrastive_index"], c["contrastive_index"])
    loader = fast_loader()
    one, two = list(loader), list(loader)  # the next pass is the next epoch: new draws
    assert not torch.equal(one[0]["contrastive_index"][:, 1:], two[0]["contrastive_index"][:, 1:])


def test_fast_loaders_for_crd_from_config(root):
    cfg = cfg_for(root, DATASET__LOADER="fast", DEVICE="cpu", SOLVER__BATCH_SIZE=32, CRD__NCE__K=50,
                  CRD__MODE="relax")
    train_loader, _, _, _ = build_loaders(cfg, views=1, with_index=True)
    batch = next(iter(train_loader))
    contrast = batch["contrastive_index"]
    assert set(batch) == {"image", "target", "index", "contrastive_index"} and contrast.shape == (32, 51)
    labels = train_loader.targets
    assert (labels[contrast[:, 0]] == batch["target"]).all()  # relax: a sample of the same class
    assert (labels[contrast[:, 1:]] != batch["target"].unsqueeze(1)).all()
    assert all(len(set(row.tolist())) == 50 for row in contrast[:, 1:])


def test_crd_trains_on_the_fast_path(root, tmp_path):
    from mdistiller.config import load_cfg
    from mdistiller.engine.build import train
    from mdistiller.models import create_model

    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", 100, "cifar100").state_dict()}, tmp_path / "teacher.pth")
    cfg = load_cfg(opts=["DATASET.ROOT", str(root), "DATASET.LOADER", "fast", "DATASET.NUM_WORKERS", 0, "DEVICE", "cpu",
                         "DISTILLER.TYPE", "CRD", "SOLVER.TRAINER", "crd", "DISTILLER.STUDENT", "resnet8",
                         "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS", str(tmp_path / "teacher.pth"),
                         "CRD.FEAT.STUDENT_DIM", 64, "CRD.FEAT.TEACHER_DIM", 64, "CRD.NCE.K", 50,
                         "SOLVER.EPOCHS", 1, "SOLVER.BATCH_SIZE", 64, "LOG.QUIET", True, "LOG.PREFIX", str(tmp_path)])
    assert train(cfg) >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_contrast_indices_need_no_host_sync():
    labels = (torch.arange(5000) % 100).cuda()
    loader = FastTrainLoader(torch.zeros(5000, 3, 32, 32, dtype=torch.uint8, device="cuda"), labels, 64, 2,
                             CIFAR100_MEAN, CIFAR100_STD, contrast=DeviceContrastSampler(labels, 4096, "exact"))
    list(loader)  # the first pass makes the cached constants
    with no_host_syncs():
        batches = list(loader)
    contrast = torch.cat([b["contrastive_index"] for b in batches])
    assert contrast.is_cuda and contrast.shape == (5000, 4097)  # every sample once (no batch of one to drop)
    assert (labels[contrast[:, 1:]] != labels[contrast[:, :1]]).all()
