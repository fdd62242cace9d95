"""`build_loaders`: config -> (train loader, test loader, number of training samples, classes).

Reproducibility: every loader owns a torch.Generator seeded from (SEED, rank, role). It fixes
the shuffling and the base seed torch hands to the workers; `seed_worker` then gives each
worker's `random`, numpy and torch generators distinct seeds derived from that base, so the
augmentations of a run repeat exactly for a given SEED, number of workers and world size.
With NUM_WORKERS 0 the augmentations use the main process's generators (seeded by the trainer).
"""
import math
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import ConfigError
from .datasets import ContrastSampler, EvalDataset, TrainDataset
from .fast import build_fast_loaders
from .sources import TEST, TRAIN, build_sources
from .transforms import test_view, train_views


def build_loaders(cfg, views, with_index=False, rank=0, world_size=1, device=None):
    """(train_loader, test_loader, num_data, num_classes).

    views: 1 (batches carry "image") or 2 ("image_weak" + "image_strong"); the distiller decides
    (`mdistiller.distillers.input_views`).
    with_index: CRD's variant, adding "contrastive_index" ([positive, CRD.NCE.K negatives], CRD.MODE).
    Every train batch also carries "target" and "index" (position in the training set); test
    batches are (image, target). With world_size > 1 each rank gets a DistributedSampler shard
    of SOLVER.BATCH_SIZE / world_size samples per step (call `train_loader.sampler.set_epoch`
    every epoch) and evaluates its share of the test set. `device` (default: from DEVICE) only
    decides pinned memory, and is passed on to the fast loader.
    """
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, got {views!r}")
    return LOADERS[cfg.DATASET.LOADER](cfg, views, with_index, rank, world_size, device)


def build_pil_loaders(cfg, views, with_index=False, rank=0, world_size=1, device=None):
    """`DATASET.LOADER: pil` — torchvision-style DataLoaders over PIL images (`build_loaders`)."""
    if cfg.SOLVER.BATCH_SIZE % world_size:
        raise ConfigError(f"config key SOLVER.BATCH_SIZE is {cfg.SOLVER.BATCH_SIZE}, which {world_size} processes "
                          f"cannot share evenly; use a multiple of {world_size}")
    train_source, test_source, classes, spec = build_sources(cfg)
    contrast = ContrastSampler(train_source.labels, cfg.CRD.NCE.K, cfg.CRD.MODE) if with_index else None
    train_set = TrainDataset(train_source, train_views(spec, views), contrast)
    test_set = EvalDataset(test_source, test_view(spec))
    common = dict(seed=cfg.SEED, rank=rank, num_workers=cfg.DATASET.NUM_WORKERS, pin_memory=_pin_memory(cfg, device))
    train_loader = make_loader(train_set, cfg.SOLVER.BATCH_SIZE // world_size, TRAIN, world_size=world_size, **common)
    test_loader = make_loader(test_set, cfg.DATASET.TEST.BATCH_SIZE, TEST, world_size=world_size, **common)
    return train_loader, test_loader, len(train_set), len(classes)


def make_loader(dataset, batch_size, role, seed, rank=0, world_size=1, num_workers=0, pin_memory=False):
    """A seeded DataLoader; role TRAIN shuffles, TEST keeps order. With world_size > 1 each rank
    gets its shard: TRAIN DistributedSampler's, TEST every world_size-th sample from `rank` on,
    unpadded (DistributedSampler would repeat samples to even the shards and bias the metrics;
    `engine.evaluation.evaluate` adds the ranks' sums)."""
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, rank, role]).generate_state(1)[0]))
    sampler = None
    if role == TRAIN and world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    elif world_size > 1:
        sampler = range(rank, len(dataset), world_size)
    per_rank = math.ceil(len(dataset) / world_size) if role == TRAIN else len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=role == TRAIN and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # A last training batch of one sample would make BatchNorm fail; drop only that case.
        drop_last=role == TRAIN and per_rank % batch_size == 1,
        generator=generator,
        worker_init_fn=seed_worker,
        # Fresh workers every epoch (as mdistiller's loaders), seeded from `generator`: the
        # stream then follows from the generator's state, which checkpoints keep, so a resumed
        # run repeats an uninterrupted one exactly with the same NUM_WORKERS. (Persistent
        # workers would carry their random state across epochs, out of the checkpoint's reach.)
        persistent_workers=False,
    )


def seed_worker(worker_id):
    """DataLoader worker_init_fn: distinct `random`, numpy and torch streams per worker, all
    derived from torch's per-worker seed (the loader generator's base seed + worker id)."""
    py_seed, np_seed, torch_seed = np.random.SeedSequence(torch.initial_seed()).generate_state(3)
    random.seed(int(py_seed))
    np.random.seed(int(np_seed))
    torch.manual_seed(int(torch_seed))


def _pin_memory(cfg, device):
    """Pinned host memory speeds up copies to a GPU and is useless (and wasteful) otherwise."""
    if device is not None:
        return torch.device(device).type == "cuda"
    return cfg.DEVICE != "cpu" and torch.cuda.is_available()


# DATASET.LOADER -> builder(cfg, views, with_index, rank, world_size, device)
LOADERS = {"pil": build_pil_loaders, "fast": build_fast_loaders}
