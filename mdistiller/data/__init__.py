"""Datasets and loaders: CIFAR-100, ImageNet, Tiny-ImageNet and any image folder, with one-view
(weak) or two-view (weak + strong) training pipelines.

Entry point: `build_loaders(cfg, views, with_index=False, rank=0, world_size=1)` returns
`(train_loader, test_loader, num_data, num_classes)`. Shared with the fast on-device loader:
`load_cifar100_arrays` (decoded uint8 CIFAR splits), `stratified_subset`, and the op table
`randaugment.OPS` with the Cutout constants.
"""
from .cifar100 import load_cifar100_arrays
from .datasets import stratified_subset
from .loaders import build_loaders
from .randaugment import OPS
from .sources import build_sources, locate_data

__all__ = ["build_loaders", "build_sources", "locate_data", "load_cifar100_arrays", "stratified_subset", "OPS"]
