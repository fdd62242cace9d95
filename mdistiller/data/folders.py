"""Class-folder trees (`<split>/<class>/**/<image>`): scanning, checking, opening images.

Labels follow the sorted class-folder names (torchvision's ImageFolder order, which for the
CIFAR-100 and ImageNet trees is the official label order). Hidden entries (".cache" etc.) are
ignored so a cache beside the data never counts as a class.
"""
import os

import numpy as np
from PIL import Image

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def _visible(names):
    return sorted(n for n in names if not n.startswith("."))


def list_class_folders(split_dir):
    if not os.path.isdir(split_dir):
        raise DataError(f"dataset folder {split_dir} does not exist; create it with one sub-folder per class")
    with os.scandir(split_dir) as entries:
        return _visible(e.name for e in entries if e.is_dir())


def list_images(folder):
    """Image files under `folder` (recursively), in sorted order."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = _visible(dirs)
        found.extend(os.path.join(here, f) for f in _visible(files) if f.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def scan_split(split_dir):
    """(classes, paths, labels) of one split; every class folder must hold images."""
    classes = list_class_folders(split_dir)
    if not classes:
        raise DataError(f"dataset folder {split_dir} has no class folders; expected {split_dir}/<class>/<image files>")
    paths, labels = [], []
    for label, name in enumerate(classes):
        images = list_images(os.path.join(split_dir, name))
        if not images:
            raise DataError(f"class folder {os.path.join(split_dir, name)} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        paths.extend(images)
        labels.extend([label] * len(images))
    return classes, paths, np.asarray(labels, dtype=np.int64)


def check_classes(split_dir, classes, expected, why):
    """A split must have exactly `expected` classes (None = any number); `why` says who expects it."""
    if expected is not None and len(classes) != expected:
        raise DataError(f"dataset folder {split_dir} has {len(classes)} class folders, expected {expected} ({why}); "
                        f"it must hold exactly one folder per class")


def check_same_classes(train_dir, train_classes, test_dir, test_classes):
    """Train and test must list the same class folders (else labels would not correspond).
    Both lists are sorted, so they differ exactly when their sets do."""
    if train_classes != test_classes:
        only_train = ", ".join(sorted(set(train_classes) - set(test_classes))[:5]) or "-"
        only_test = ", ".join(sorted(set(test_classes) - set(train_classes))[:5]) or "-"
        raise DataError(f"class folders of {train_dir} and {test_dir} differ (only in train: {only_train}; "
                        f"only in test: {only_test}); both splits need the same classes")


def check_split_classes(train_dir, test_dir, expected=None, why=""):
    """The class names shared by both splits, after checking their number and agreement."""
    train, test = list_class_folders(train_dir), list_class_folders(test_dir)
    check_classes(train_dir, train, expected, why)
    check_classes(test_dir, test, expected, why)
    check_same_classes(train_dir, train, test_dir, test)
    return train


# What PIL raises for missing, truncated or non-image files (broken PNG chunks raise SyntaxError).
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _unreadable(path, err):
    reason = (str(err).splitlines() or [""])[0]
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return DataError(f"image {path} is empty (0 bytes); replace or delete it")
    return DataError(f"image {path} cannot be read ({type(err).__name__}: {reason}); replace or delete it")


def open_rgb(path):
    """The image at `path` as RGB (grayscale, palette and alpha images are converted)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from None


def image_size(path):
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except _READ_ERRORS as err:
        raise _unreadable(path, err) from None


def not_found(kind, root, searched, layouts, how):
    """The one message for a dataset that is not where the config says."""
    return DataError(f"{kind} not found under DATASET.ROOT={root} (searched {', '.join(searched)}); "
                     f"accepted layouts: {layouts}; {how}")


def locate_train_val(root, subfolder, kind, layouts, how):
    """The folder holding train/ and val/: DATASET.ROOT itself or its `subfolder` (the name the
    archive unpacks to), so that either the dataset folder or its parent may be configured."""
    candidates = [root, os.path.join(root, subfolder)]
    for folder in candidates:
        if os.path.isdir(os.path.join(folder, "train")) and os.path.isdir(os.path.join(folder, "val")):
            return folder
    raise not_found(kind, root, [os.path.join(c, "{train,val}") for c in candidates], layouts, how)
