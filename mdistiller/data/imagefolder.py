"""Any image-folder dataset (`DATASET.TYPE: imagefolder`), so users can distil on their own data.

Layout: train/<class>/<images> and test/<class>/<images> (val/ is accepted for test/); labels
follow the sorted class names. The number of classes is counted (DATASET.NUM_CLASSES, when set,
must agree) and the training resolution is DATASET.IMAGE_SIZE or, when 0, the median shorter
side of the training images. Up to 64 px the pipeline is CIFAR-like (resize to size x size,
pad-crop, flip); above, ImageNet-like (random-resized crop / resize + centre crop). ImageNet
mean/std normalise the tensors; grayscale, palette and alpha images are converted to RGB.
Every file's header is read once up front, so an unreadable image is reported before training.
"""
import os

import numpy as np

from .datasets import FileSource
from .folders import check_split_classes, image_size, not_found, scan_split
from .transforms import imagenet_spec, small_folder_spec

SMALL_IMAGE_MAX = 64  # up to this size, CIFAR-style augmentation; above, ImageNet-style
LAYOUTS = "train/<class>/<images> and test/<class>/<images> (or val/<class>/<images>)"
HOW_TO_GET = "create that tree (one folder per class, same class folders in both splits) and point DATASET.ROOT at it"


def locate(root):
    """(train folder, test folder)."""
    train = os.path.join(root, "train")
    for name in ("test", "val"):
        test = os.path.join(root, name)
        if os.path.isdir(train) and os.path.isdir(test):
            return train, test
    raise not_found("image-folder dataset", root, [os.path.join(root, "{train,test}"), os.path.join(root, "{train,val}")],
                    LAYOUTS, HOW_TO_GET)


def build(cfg):
    """(train source, test source, classes, view spec) for DATASET.TYPE imagefolder."""
    d = cfg.DATASET
    train_dir, test_dir = locate(d.ROOT)
    classes = check_split_classes(train_dir, test_dir, d.NUM_CLASSES or None, "DATASET.NUM_CLASSES")
    _, train_paths, train_labels = scan_split(train_dir)
    _, test_paths, test_labels = scan_split(test_dir)
    train_sizes = [image_size(p) for p in train_paths]
    for path in test_paths:
        image_size(path)
    size = d.IMAGE_SIZE or int(np.median([min(s) for s in train_sizes]))
    spec = small_folder_spec(size) if size <= SMALL_IMAGE_MAX else imagenet_spec(size)
    return FileSource(train_paths, train_labels), FileSource(test_paths, test_labels), classes, spec
