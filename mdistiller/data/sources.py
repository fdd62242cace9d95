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


def build_sources(cfg):
    """(train source, test source, classes, view spec), with DATASET.TRAIN/TEST_SUBSET applied."""
    d = cfg.DATASET
    if d.TYPE not in BUILDERS:
        raise ConfigError(f"config key DATASET.TYPE is {d.TYPE!r}, which this installation cannot load; "
                          f"choose one of {', '.join(BUILDERS)}")
    train, test, classes, spec = BUILDERS[d.TYPE](cfg)
    train = _subset(train, d.TRAIN_SUBSET, cfg.SEED, TRAIN)
    test = _subset(test, d.TEST_SUBSET, cfg.SEED, TEST)
    return train, test, classes, spec
