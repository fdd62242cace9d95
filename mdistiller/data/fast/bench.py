"""Throughput of the two-view CIFAR pipelines: the PIL reference DataLoader against the fast loader.

For a benchmark CLI (and for checking the fast path's speed-up by hand):
    two_view_throughput(images, labels, num_workers=2)  ->  {"pil": img/s, "fast": img/s, "speedup": x}
"""
import time

import torch

from ..datasets import ArraySource, TrainDataset
from ..loaders import TRAIN, make_loader
from ..transforms import CIFAR100_MEAN, CIFAR100_STD, cifar_spec, train_views
from .loader import FastTrainLoader, images_to_tensor


def _endless(loader):
    while True:
        yield from loader


def images_per_second(loader, batches, warmup=3, device=None):
    """Training samples per second over `batches` batches, after `warmup` batches (worker start-up,
    first-call caches). On CUDA the clock stops when the device has finished the work."""
    stream = _endless(loader)
    for _ in range(warmup):
        next(stream)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(stream)["target"].shape[0]
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def two_view_throughput(images, labels, batch_size=64, num_workers=2, batches=100, device="cpu", seed=0):
    """Weak + strong views per second of the PIL DataLoader (`num_workers` worker processes) and
    of the fast loader (`num_workers` threads on the CPU; on `device`).

    images: (N, 32, 32, 3) uint8 array; labels: (N,) integers. Returns
    {"pil": images/s, "fast": images/s, "speedup": fast / pil}.
    """
    dataset = TrainDataset(ArraySource(images, labels), train_views(cifar_spec(), 2))
    pil = make_loader(dataset, batch_size, TRAIN, seed, num_workers=num_workers)
    fast = FastTrainLoader(images_to_tensor(images, device), torch.as_tensor(labels, device=device), batch_size, 2,
                           CIFAR100_MEAN, CIFAR100_STD, seed=seed, num_workers=num_workers)
    result = {"pil": images_per_second(pil, batches), "fast": images_per_second(fast, batches, device=device)}
    result["speedup"] = result["fast"] / result["pil"]
    return result
