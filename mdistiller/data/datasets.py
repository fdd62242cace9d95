"""Torch datasets over image sources, in the batch format the trainer consumes.

A *source* knows how many images there are, their labels, and how to get image i (a uint8
array held in memory, or a PIL image read from disk). Train datasets yield dicts
(`image` or `image_weak`/`image_strong`, `target`, `index`, optionally CRD's `contrastive_index`);
test datasets yield `(image, target)` tuples, as in mdistiller.
"""
import os

import numpy as np
from torch.utils.data import Dataset, get_worker_info

from .folders import open_rgb


class ArraySource:
    """Images decoded once into a (N, H, W, 3) uint8 array (CIFAR): no file access per item."""

    def __init__(self, images, labels):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def image(self, i):
        return self.images[i]

    def subset(self, indices):
        return ArraySource(self.images[indices], self.labels[indices])


class FileSource:
    """Images read (and converted to RGB) from their files on each access (ImageNet-sized data)."""

    def __init__(self, paths, labels):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def image(self, i):
        return open_rgb(self.paths[i])

    def subset(self, indices):
        return FileSource([self.paths[i] for i in indices], self.labels[indices])


def stratified_subset(labels, total, seed, salt=0):
    """Sorted indices of `total` samples drawn without replacement, stratified over classes.

    Each class gets its proportional share, floor(total * n_c / N), and the samples left over go
    to the classes with the largest fractional shares (ties broken by a seeded shuffle, not by
    class order). `seed` and `salt` (e.g. 0 train / 1 test) fix the draw; total <= 0 or >= N
    means all samples.
    """
    labels = np.asarray(labels)
    if total <= 0 or total >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, salt])
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * total / len(labels)
    quota = np.floor(share).astype(np.int64)
    tie_break = rng.permutation(len(classes))
    order = np.lexsort((tie_break, -(share - quota)))  # last key is the primary one
    quota[order[: total - quota.sum()]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


class ContrastSampler:
    """CRD's contrastive indices for a sample: [positive, k negatives].

    Negatives are drawn uniformly from the *other* classes (without replacement unless k
    exceeds their number, as in CRD's code). The positive is the sample itself ("exact") or a
    random sample of the same class ("relax"). Indices are kept grouped by class so a draw
    needs no per-class negative lists (which would take O(classes x N) memory).
    """

    def __init__(self, labels, k, mode="exact"):
        if mode not in ("exact", "relax"):
            raise ValueError(f"CRD mode must be 'exact' or 'relax', got {mode!r}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.k, self.mode = k, mode
        self.by_class = np.argsort(self.labels, kind="stable")
        self.count = np.bincount(self.labels)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self._rng, self._rng_pid = None, None

    def _process_rng(self):
        """A numpy Generator private to this process (its choice() without replacement is ~10x
        faster than the legacy global one). A DataLoader worker seeds it from its worker seed;
        the main process from the global numpy state. Keyed by pid so a forked worker never
        reuses the parent's generator (all workers would then draw the same negatives)."""
        if self._rng_pid != os.getpid():
            info = get_worker_info()
            seed = info.seed if info is not None else int(np.random.randint(2**63 - 1))
            self._rng, self._rng_pid = np.random.default_rng(seed), os.getpid()
        return self._rng

    def sample(self, index, rng=None):
        rng = rng if rng is not None else self._process_rng()
        c = self.labels[index]
        start, count = self.start[c], self.count[c]
        others = len(self.labels) - count
        positive = index if self.mode == "exact" else self.by_class[start + rng.integers(count)]
        slots = rng.choice(others, self.k, replace=self.k > others)
        slots = slots + count * (slots >= start)  # step over this class's block
        return np.concatenate([[positive], self.by_class[slots]]).astype(np.int64)


class TrainDataset(Dataset):
    """Yields {image | image_weak, image_strong, target, index[, contrastive_index]}."""

    VIEW_KEYS = {1: ("image",), 2: ("image_weak", "image_strong")}

    def __init__(self, source, views, contrast=None):
        self.source, self.views, self.contrast = source, views, contrast
        self.keys = self.VIEW_KEYS[len(views)]

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        img = self.source.image(index)
        item = {key: view(img) for key, view in zip(self.keys, self.views)}
        item["target"] = int(self.source.labels[index])
        item["index"] = index
        if self.contrast is not None:
            item["contrastive_index"] = self.contrast.sample(index)
        return item


class EvalDataset(Dataset):
    """Yields (image, target)."""

    def __init__(self, source, view):
        self.source, self.view = source, view

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        return self.view(self.source.image(index)), int(self.source.labels[index])
