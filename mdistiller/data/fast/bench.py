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


def two_view_throughput(images, labels, batch_size=64, num_workers=2, batches=100, device="cpu", seed=0,
                        channels_last=False):
    """Weak + strong views per second of the PIL DataLoader (`num_workers` worker processes) and
    of the fast loader (`num_workers` threads on the CPU; on `device`; batches in channels_last
    layout on request, as training with SOLVER.CHANNELS_LAST gets them).

    images: (N, 32, 32, 3) uint8 array; labels: (N,) integers. Returns
    {"pil": images/s, "fast": images/s, "speedup": fast / pil}.
    """
    dataset = TrainDataset(ArraySource(images, labels), train_views(cifar_spec(), 2))
    pil = make_loader(dataset, batch_size, TRAIN, seed, num_workers=num_workers)
    fast = FastTrainLoader(images_to_tensor(images, device), torch.as_tensor(labels, device=device), batch_size, 2,
                           CIFAR100_MEAN, CIFAR100_STD, seed=seed, num_workers=num_workers,
                           channels_last=channels_last)
    result = {"pil": images_per_second(pil, batches), "fast": images_per_second(fast, batches, device=device)}
    result["speedup"] = result["fast"] / result["pil"]
    return result


def profile_fast_pipeline(images, labels, batch_size=64, blocks=8, device="cpu", seed=0, channels_last=False, top=8):
    """Where the fast two-view pipeline spends its time: `blocks` blocks made in the calling
    thread under torch.profiler. Returns {"stages": {label: ms per block}, "ops": {aten op: self
    ms per block}, "lines": the same as printable text}. Stages are the `fast.*` labels of
    augment.py / loader.py (one per RandAugment kernel); "other" is what no label covers
    (drawing random numbers, sorting samples by kernel, slicing batches)."""
    from torch.profiler import ProfilerActivity, profile

    loader = FastTrainLoader(images_to_tensor(images, device), torch.as_tensor(labels, device=device), batch_size, 2,
                             CIFAR100_MEAN, CIFAR100_STD, seed=seed, channels_last=channels_last)
    stream = _endless(loader)
    per_block = loader.block_size // batch_size
    for _ in range(per_block):  # first-call set-up out of the measurement
        next(stream)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(blocks * per_block):
            next(stream)
    total = 1e3 * (time.perf_counter() - start) / blocks
    events = prof.key_averages()
    stages = {e.key[5:]: e.cpu_time_total / 1e3 / blocks for e in events if e.key.startswith("fast.")}
    stages["other"] = max(0.0, total - sum(stages.values()))
    aten = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    ops_ms = {e.key: e.self_cpu_time_total / 1e3 / blocks for e in aten[:top]}
    lines = [f"fast pipeline profile: {loader.block_size} samples per block, {total:.1f} ms per block "
             f"(one thread, profiler on)", f"{'stage':<44}{'ms/block':>10}{'share':>8}"]
    lines += [f"{name:<44}{ms:>10.2f}{ms / total:>8.1%}" for name, ms in sorted(stages.items(), key=lambda kv: -kv[1])]
    lines += [f"{'aten op (self time)':<44}{'ms/block':>10}"] + [f"{name:<44}{ms:>10.2f}" for name, ms in ops_ms.items()]
    return {"stages": stages, "ops": ops_ms, "lines": lines}
