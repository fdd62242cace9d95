"""The fast loader: the whole split as a uint8 tensor on the training device, augmented there.

Per epoch a permutation is drawn on the device and a rank takes its shard. Samples are
augmented a *block* (several batches) at a time — every op is one batched call per block, so
per-call overhead is shared by many images — and each block is cut into batches in the
trainer's format: {"image": T} (one view) or {"image_weak": T, "image_strong": T} (two views),
plus "target" (long) and "index" (long, position in the training set). On the CPU a block's
views are normalised where the block is made (in a worker thread, off the training thread); on
an accelerator they stay uint8 in a block and are normalised batch by batch as they are handed
out (a block of float views would hold device memory for nothing).

Reproducibility: the permutation is seeded from (SEED, epoch), the same on every rank; block k's
augmentations from (SEED, epoch, rank, k), and CRD's contrastive indices (drawn batch by batch
as the block is handed out, `contrast.py`) from (SEED, epoch, rank, k, CONTRAST_SALT). A run
repeats exactly for the same seed, device type, world size and block size, whatever the number
of workers.

Workers: on the CPU, `num_workers` threads make the next blocks while the trainer consumes the
current one (like the PIL DataLoader's worker processes; threads need no inter-process copies,
and torch ops release the GIL — worker processes were tried and handing their blocks back cost
more than it saved). On an accelerator blocks are made in the main thread: the device runs the
kernels asynchronously anyway.

On the CPU each block is made on one intra-op thread: its tensors are small, so splitting ops
over threads gains little, and while other processes load the cores an OpenMP barrier can stall
a whole time slice per op (measured: 20-50x slower on the 2-core CI machine).
"""
import collections
import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ...errors import ConfigError
from . import augment, ops
from .contrast import DeviceContrastSampler

# Samples augmented per call; other devices use ACCELERATOR_BLOCK. On the CPU 2,048: fewer Python
# calls per sample than 1,024 (loader throughput 1.06-1.24x, 2 threads), while a block's float32
# view (25 MB) stays below glibc's 32 MiB mmap limit (`keep_freed_memory`; 4,096 measured slower).
DEFAULT_BLOCK = {"cpu": 2048}
ACCELERATOR_BLOCK = 8192
BLOCKS_AHEAD_PER_WORKER = 2  # as DataLoader's prefetch_factor
VIEW_KEYS = {1: ("image",), 2: ("image_weak", "image_strong")}
CONTRAST_SALT = 1  # tells the contrastive-index stream's seeds from the augmentation's


def derived_seed(*entropy):
    """A 63-bit seed mixing the given integers (numpy's SeedSequence: nearby inputs give
    unrelated streams)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(2, dtype=np.uint64)[0] >> 1)


def device_generator(device, seed):
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@contextlib.contextmanager
def one_cpu_thread(device, threads_after):
    """CPU tensor ops of this thread run on one intra-op thread inside the block (see the
    module docstring); afterwards `threads_after`. (torch.set_num_threads acts on the calling
    thread and sets the count that threads created later start with — hence an explicit value
    to restore, rather than whatever a worker thread happened to start with.)"""
    if device.type != "cpu":
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads_after)


def images_to_tensor(images, device):
    """(N, H, W, C) uint8 array -> (N, C, H, W) uint8 tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).contiguous()


def shard_order(num_samples, seed, epoch, rank, world_size, device):
    """This rank's sample order for `epoch`, as DistributedSampler(shuffle=True) builds it: one
    permutation shared by all ranks, padded with its own first entries to a multiple of
    world_size, rank r taking positions r, r + world_size, ... (equal length on every rank)."""
    order = torch.randperm(num_samples, generator=device_generator(device, derived_seed(seed, epoch)),
                           device=device)
    total = math.ceil(num_samples / world_size) * world_size
    if total > num_samples:
        order = torch.cat([order, order[: total - num_samples]])
    return order[rank:total:world_size]


class FastTrainLoader:
    """Iterable of training batches; `len()` is the number of batches per epoch on this rank.

    images: (N, C, H, W) uint8 tensor on the device; targets: (N,) long tensor there.
    Call `set_epoch(epoch)` before each epoch (a new permutation and new draws); without it,
    every pass over the loader moves on to the next epoch number by itself.
    """

    def __init__(self, images, targets, batch_size, views, mean, std, seed=0, rank=0, world_size=1,
                 num_workers=0, block_size=None, table=None, dtype=torch.float32, channels_last=False,
                 contrast=None):
        if views not in VIEW_KEYS:
            raise ValueError(f"views must be 1 or 2, got {views!r}")
        self.images, self.targets = images, targets
        self.batch_size, self.views = batch_size, views
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = images.device
        self.num_workers = num_workers if self.device.type == "cpu" else 0
        block = block_size or DEFAULT_BLOCK.get(self.device.type, ACCELERATOR_BLOCK)
        self.block_size = max(1, block // batch_size) * batch_size  # whole batches
        self.table = table or augment.OpTable()
        self.dtype, self.channels_last = dtype, channels_last
        self.normalize_blocks = self.device.type == "cpu"  # module docstring
        self.contrast = contrast  # a DeviceContrastSampler: batches also carry "contrastive_index" (CRD)
        self.epoch = 0
        self.per_rank = math.ceil(len(targets) / world_size)
        # A last batch of one sample would make BatchNorm fail in training: drop only that case
        # (the PIL loaders do the same).
        self.drop_last = self.per_rank % batch_size == 1

    def __len__(self):
        return self.per_rank // self.batch_size if self.drop_last else math.ceil(self.per_rank / self.batch_size)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def state_dict(self):
        """All the loader's randomness follows from the epoch number (for exact resumes)."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order = shard_order(len(self.targets), self.seed, epoch, self.rank, self.world_size, self.device)
        order = order[: len(self) * self.batch_size]
        num_blocks = math.ceil(len(order) / self.block_size)
        threads = torch.get_num_threads()

        def block(k):
            rows = order[k * self.block_size:(k + 1) * self.block_size]
            generator = device_generator(self.device, derived_seed(self.seed, epoch, self.rank, k))
            with one_cpu_thread(self.device, threads):
                return self.make_block(rows, generator)

        if not self.num_workers:
            for k in range(num_blocks):
                yield from self._batches(block(k), threads, (epoch, k))
            return
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="fast-loader")
        try:
            ahead = min(num_blocks, BLOCKS_AHEAD_PER_WORKER * self.num_workers)
            pending = collections.deque(pool.submit(block, k) for k in range(ahead))
            for k in range(ahead, num_blocks + ahead):
                made = pending.popleft().result()
                if k < num_blocks:
                    pending.append(pool.submit(block, k))
                yield from self._batches(made, threads, (epoch, k - ahead))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _batches(self, block, threads, where):
        """Cut block `where` = (epoch, k) into batches, normalising each batch's views just before
        it is handed out unless the block's are already (`normalize_blocks`); CRD's indices are
        drawn there too (a block's worth would take ~1 GB on a GPU)."""
        generator = None
        if self.contrast is not None:
            epoch, k = where
            generator = device_generator(self.device, derived_seed(self.seed, epoch, self.rank, k, CONTRAST_SALT))
        for start in range(0, block["target"].shape[0], self.batch_size):
            batch = {key: value[start:start + self.batch_size] for key, value in block.items()}
            with one_cpu_thread(self.device, threads):
                if not self.normalize_blocks:
                    self._normalize(batch)
                if generator is not None:
                    batch["contrastive_index"] = self.contrast.sample(batch["index"], batch["target"], generator)
            yield batch

    def make_block(self, rows, generator):
        """The views (normalised on the CPU, `normalize_blocks`; uint8 elsewhere), targets and
        indices of samples `rows`, all at once."""
        with ops.label("fast.select"):
            images = self.images.index_select(0, rows)  # much faster than images[rows] on the CPU
        if self.views == 2:
            views = augment.weak_and_strong_views(images, generator, self.table)
        else:
            views = [augment.weak_view(images, generator)]
        block = dict(zip(VIEW_KEYS[self.views], views))
        if self.normalize_blocks:
            self._normalize(block)
        block["target"] = self.targets.index_select(0, rows)
        block["index"] = rows
        return block

    def _normalize(self, views):
        """uint8 views of a block or batch (dict entries) -> normalised, in the training layout."""
        for key in VIEW_KEYS[self.views]:
            with ops.label("fast.normalize"):  # labels: bench.profile_fast_pipeline
                views[key] = ops.normalize(views[key], self.mean, self.std, self.dtype, self.channels_last)


class FastTestLoader:
    """Iterable of normalised `(image, target)` test batches on the device, in dataset order."""

    def __init__(self, images, targets, batch_size, mean, std, dtype=torch.float32, channels_last=False):
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.dtype, self.channels_last = dtype, channels_last

    def __len__(self):
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.targets), self.batch_size):
            end = start + self.batch_size
            image = ops.normalize(self.images[start:end], self.mean, self.std, self.dtype, self.channels_last)
            yield image, self.targets[start:end]


def build_fast_loaders(cfg, views, with_index=False, rank=0, world_size=1, device=None):
    """`DATASET.LOADER: fast` — (train_loader, test_loader, num_data, num_classes), like
    `mdistiller.data.build_loaders` but with the data and the augmentation on `device`
    (default: from the DEVICE key). DATASET.TRAIN/TEST_SUBSET are honoured (same stratified
    subsets as the PIL loaders); each rank gets SOLVER.BATCH_SIZE / world_size samples per step
    and every world_size-th test sample from `rank` on.
    `with_index`: batches also carry CRD's "contrastive_index" ([positive, CRD.NCE.K negatives]).
    """
    from ...runtime.devices import resolve_channels_last, resolve_device
    from ..sources import build_sources

    if cfg.DATASET.TYPE != "cifar100":
        raise ConfigError(f"config key DATASET.LOADER is 'fast', which supports DATASET.TYPE cifar100 only "
                          f"(got {cfg.DATASET.TYPE!r}); use DATASET.LOADER pil")
    if cfg.SOLVER.BATCH_SIZE % world_size:
        raise ConfigError(f"config key SOLVER.BATCH_SIZE is {cfg.SOLVER.BATCH_SIZE}, which {world_size} processes "
                          f"cannot share evenly; use a multiple of {world_size}")
    device = torch.device(device) if device is not None else resolve_device(cfg.DEVICE)
    train, test, classes, spec = build_sources(cfg)
    layout = dict(channels_last=resolve_channels_last(cfg.SOLVER.CHANNELS_LAST, device))
    labels = torch.as_tensor(train.labels, device=device)
    contrast = DeviceContrastSampler(labels, cfg.CRD.NCE.K, cfg.CRD.MODE) if with_index else None
    train_loader = FastTrainLoader(
        images_to_tensor(train.images, device), labels, cfg.SOLVER.BATCH_SIZE // world_size, views, spec.mean,
        spec.std, seed=cfg.SEED, rank=rank, world_size=world_size, num_workers=cfg.DATASET.NUM_WORKERS,
        contrast=contrast, **layout)
    shard = slice(rank, None, world_size)  # each rank evaluates its share, as the PIL path's
    test_loader = FastTestLoader(
        images_to_tensor(test.images[shard], device), torch.as_tensor(test.labels[shard], device=device),
        cfg.DATASET.TEST.BATCH_SIZE, spec.mean, spec.std, **layout)
    return train_loader, test_loader, len(train), len(classes)
