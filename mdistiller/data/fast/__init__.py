"""`DATASET.LOADER: fast` — CIFAR kept on the training device as uint8, augmented there in batches.

ops.py      batched, per-sample image ops that reproduce PIL's results (RandAugment's 14 ops,
            pad-crop/flip, Cutout, normalisation)
augment.py  the weak and strong views of a batch, each sample with its own random draws
loader.py   the train/test loaders and `build_fast_loaders` (what `build_loaders` dispatches to)
contrast.py CRD's contrastive indices, drawn on the device a batch at a time
bench.py    `two_view_throughput`: images/s of the fast and the PIL two-view pipelines
"""
from .loader import FastTestLoader, FastTrainLoader, build_fast_loaders

__all__ = ["build_fast_loaders", "FastTrainLoader", "FastTestLoader"]
