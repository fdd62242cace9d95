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
# DATASET.TYPE -> a check that the data is where the config says, without reading it (preflight):
# it raises the builder's own DataError. CIFAR-100 with DATASET.DOWNLOAD is fetched by the build.
LOCATORS = {
    "cifar100": lambda d: d.DOWNLOAD or cifar100.locate_cifar100(d.ROOT),
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


def _known_type(d):
    if d.TYPE not in BUILDERS:
        raise ConfigError(f"config key DATASET.TYPE is {d.TYPE!r}, which this installation cannot load; "
                          f"choose one of {', '.join(BUILDERS)}")
    return d.TYPE


def locate_data(cfg):
    """DataError when cfg's dataset is not under DATASET.ROOT in an accepted layout (nothing is
    read or decoded: the per-image checks happen when the sources are built)."""
    LOCATORS[_known_type(cfg.DATASET)](cfg.DATASET)


def build_sources(cfg):
    """(train source, test source, classes, view spec), with DATASET.TRAIN/TEST_SUBSET applied."""
    d = cfg.DATASET
    train, test, classes, spec = BUILDERS[_known_type(d)](cfg)
    train = _subset(train, d.TRAIN_SUBSET, cfg.SEED, TRAIN)
    test = _subset(test, d.TEST_SUBSET, cfg.SEED, TEST)
    return train, test, classes, spec
