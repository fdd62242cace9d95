"""Tiny models, data and runs for the trainer tests (plain helpers; fixtures are in conftest.py).

Everything is small enough that a 2-epoch run takes well under a second on CPU, and it does
not depend on the real model zoo or datasets: a 2-layer conv net that follows the
`(logits, feats)` contract, a KD-style distiller built on the `Distiller` base class, and an
in-memory dataset whose augmentation draws from python, numpy and torch RNGs (so that exact
resume has to restore all three).
"""
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mdistiller.config import load_cfg
from mdistiller.distillers.base import Distiller
from mdistiller.engine.distributed import DistInfo
from mdistiller.engine.paired import SharedTeacherStep
from mdistiller.engine.trainer import StudentRun, Trainer

NUM_CLASSES = 4
IMAGE = 8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLOUR_CLASSES = ("ant", "bee", "cat")  # write_colour_folder's classes in the image-folder tests


class TinyNet(nn.Module):
    """conv -> (BN) -> ReLU -> conv -> ReLU -> pool -> linear, returning (logits, feats)."""

    def __init__(self, num_classes=NUM_CLASSES, bn=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        pre1 = self.bn1(self.conv1(x))
        f1 = F.relu(pre1)
        pre2 = self.conv2(f1)
        f2 = F.relu(pre2)
        pooled = f2.mean(dim=(2, 3))
        return self.fc(pooled), {"feats": [f1, f2], "preact_feats": [pre1, pre2], "pooled_feat": pooled}


class TinyKD(Distiller):
    """CE on every view + KL to the teacher (T=2); predictions = first view's logits."""

    views = (1, 2)

    def __init__(self, student, teacher, cfg=None):
        super().__init__(student, teacher)

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        ce = sum(F.cross_entropy(s, target) for s, _ in student_outs)
        kd = sum(F.kl_div(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean") * 4
                 for (s, _), (t, _) in zip(student_outs, teacher_outs))
        return student_outs[0][0], {"loss_ce": ce, "loss_kd": kd}


class TinyData(Dataset):
    """Learnable toy images; `augment` flips (torch RNG), adds noise (numpy) and shifts (python)."""

    def __init__(self, n=64, views=1, augment=True, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % NUM_CLASSES
        pattern = torch.randn(NUM_CLASSES, 3, IMAGE, IMAGE, generator=g)
        self.x = pattern[self.y] + 0.5 * torch.randn(n, 3, IMAGE, IMAGE, generator=g)
        self.views, self.augment = views, augment

    def __len__(self):
        return len(self.y)

    def _view(self, i):
        img = self.x[i]
        if self.augment:
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
            img = img + float(np.random.uniform(-0.1, 0.1))
            img = img.roll(random.randint(-1, 1), dims=-2)
        return img

    def __getitem__(self, i):
        item = {"target": self.y[i], "index": i}
        if self.views == 1:
            item["image"] = self._view(i)
        else:
            item["image_weak"], item["image_strong"] = self._view(i), self._view(i)
        return item


def tiny_cfg(tmp_path, *opts):
    base = ["DEVICE", "cpu", "LOG.PREFIX", str(tmp_path), "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", "run",
            "SOLVER.EPOCHS", 2, "SOLVER.BATCH_SIZE", 16, "SOLVER.LR", 0.05, "LOG.QUIET", True,
            "LOG.SAVE_CHECKPOINT_FREQ", 1, "DATASET.TEST.BATCH_SIZE", 32, "DISTILLER.TYPE", "KD"]
    return load_cfg(None, base + [str(o) if not isinstance(o, str) else o for o in opts])


def tiny_loaders(cfg, views=1, info=DistInfo(), n=64, augment=True, distributed_sampler=False, test_n=32):
    """Train loader (global batch SOLVER.BATCH_SIZE split over ranks) and test loader (each rank
    its share, as `data.loaders.make_loader`'s). `distributed_sampler` also for one process:
    the same global order as N ranks together."""
    train = TinyData(n, views, augment)
    per_rank = cfg.SOLVER.BATCH_SIZE // info.world_size
    if info.enabled or distributed_sampler:
        sampler = DistributedSampler(train, info.world_size, info.rank, shuffle=True, seed=cfg.SEED)
        train_loader = DataLoader(train, per_rank, sampler=sampler)
    else:
        train_loader = DataLoader(train, per_rank, shuffle=True)
    test = TinyData(test_n, 1, augment=False, seed=1)
    test_loader = DataLoader(torch.utils.data.TensorDataset(test.x, test.y), cfg.DATASET.TEST.BATCH_SIZE,
                             sampler=range(info.rank, test_n, info.world_size))
    return train_loader, test_loader


def tiny_trainer(cfg, views=1, info=DistInfo(), bn=True, distiller_cls=TinyKD, hooks=(), loaders=None):
    torch.manual_seed(cfg.SEED)
    teacher = TinyNet(bn=bn)
    distiller = distiller_cls(TinyNet(bn=bn), teacher, cfg)
    folder = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME)
    run = StudentRun(cfg, distiller, folder, torch.device("cpu"), info)
    train_loader, test_loader = loaders or tiny_loaders(cfg, views, info)
    return Trainer(cfg, run, train_loader, test_loader, torch.device("cpu"), info, step_hooks=hooks)


def folder(cfg):
    """The run folder LOG.PREFIX/EXPERIMENT.PROJECT/EXPERIMENT.NAME."""
    return os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME)


def paired_trainer(cfgs, classes, views=None):
    """The tiny counterpart of engine.build.train_paired: every student built from the random
    state its solo tiny_trainer run has, all distillers on the first run's teacher object."""
    teacher, runs = None, []
    for cfg, cls in zip(cfgs, classes):
        torch.manual_seed(cfg.SEED)
        own_teacher = TinyNet()
        teacher = teacher or own_teacher
        runs.append(StudentRun(cfg, cls(TinyNet(), teacher, cfg), folder(cfg), torch.device("cpu")))
    views = views or [1] * len(cfgs)
    step = SharedTeacherStep(runs, views)
    return Trainer(cfgs[0], runs, *tiny_loaders(cfgs[0], max(views)), torch.device("cpu"), step=step,
                   stop_diverged=True)


def subprocess_env():
    """Environment for child processes that import tests/helpers and the package."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "tests"), env.get("PYTHONPATH", "")])
    return env


def write_colour_folder(root, classes, counts=(("train", 8), ("test", 4))):
    """root/<split>/<class>/<i>.png, 16x16, for each (split, count) in `counts`: noise below 60
    plus 180 in the class's own channel, so a tiny model learns the up to 3 classes in an epoch
    or two. Seeded: the same arguments write the same images."""
    rng = np.random.default_rng(0)
    for split, count in counts:
        for c, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                pixels = rng.integers(0, 60, (16, 16, 3)) + np.eye(3, dtype=np.int64)[c] * 180
                Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, split, name, f"{i}.png"))
