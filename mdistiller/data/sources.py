"""Dataset sources for every loader: DATASET.TYPE -> (train source, test source, classes, view
spec), with DATASET.TRAIN/TEST_SUBSET applied. The PIL loaders (loaders.py) and the fast
on-device loader (fast/loader.py) both start here, so they see the same samples.
"""
import logging

from ..errors import ConfigError
from . import cifar100, demo, imagefolder, imagenet, tiny_imagenet
from .datasets import stratified_subset

BUILDERS = {
    "cifar100": cifar100.build,
    "imagenet": imagenet.build,
    "tiny_imagenet": tiny_imagenet.build,
    "imagefolder": imagefolder.build,
    "demo": demo.build,  # digits bundled in an installed package (demo.py)
}
# Where each dataset is looked for, without reading an image: the error a loader would raise first.
LOCATORS = {
    "cifar100": lambda d: None if d.DOWNLOAD else cifar100.locate_cifar100(d.ROOT),  # a download is not tried here
    "imagenet": lambda d: imagenet.locate(d.ROOT),
    "tiny_imagenet": lambda d: tiny_imagenet.locate(d.ROOT),
    "imagefolder": lambda d: imagefolder.locate(d.ROOT),
    "demo": lambda d: demo.bundled_path(),
}
log = logging.getLogger(__name__)
TRAIN, TEST = 0, 1  # roles: keep the train and test streams (generators, subsets) apart


def _subset(source, wanted, seed, role):
    """DATASET.TRAIN/TEST_SUBSET applied; a subset as large as the data is all of it (said once)."""
    if not wanted:
        return source
    split = ("train", "test")[role]
    if wanted >= len(source.labels):
        log.warning("warning: DATASET.%s_SUBSET %d is not smaller than the %d %s images; using all of them",
                    split.upper(), wanted, len(source.labels), split)
        return source
    return source.subset(stratified_subset(source.labels, wanted, seed, role))


def check_data(cfg):
    """Raise the DataError (or ConfigError) that loading cfg's dataset would raise first because
    its folder or files are missing; reads no image, so a whole matrix is checked in moments."""
    _check_type(cfg.DATASET.TYPE)
    LOCATORS[cfg.DATASET.TYPE](cfg.DATASET)


def _check_type(name):
    if name not in BUILDERS:
        raise ConfigError(f"config key DATASET.TYPE is {name!r}, which this installation cannot load; "
                          f"choose one of {', '.join(BUILDERS)}")


def build_sources(cfg):
    """(train source, test source, classes, view spec), with DATASET.TRAIN/TEST_SUBSET applied."""
    d = cfg.DATASET
    _check_type(d.TYPE)
    train, test, classes, spec = BUILDERS[d.TYPE](cfg)
    train = _subset(train, d.TRAIN_SUBSET, cfg.SEED, TRAIN)
    test = _subset(test, d.TEST_SUBSET, cfg.SEED, TEST)
    return train, test, classes, spec
