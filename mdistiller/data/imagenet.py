"""ImageNet (ILSVRC-2012) from class folders, read lazily with mdistiller's transforms."""
import os

from .datasets import FileSource
from .folders import check_split_classes, locate_train_val, scan_split
from .transforms import imagenet_spec

NUM_CLASSES = 1000
LAYOUTS = "train/<class>/*.JPEG and val/<class>/*.JPEG with 1000 class folders each (also inside imagenet/)"
HOW_TO_GET = ("download ILSVRC-2012 from image-net.org (needs an account and network access), sort val/ into "
              "class folders and point DATASET.ROOT at the folder holding train/ and val/")


def locate(root):
    """The folder holding train/ and val/."""
    return locate_train_val(root, "imagenet", "ImageNet", LAYOUTS, HOW_TO_GET)


def build(cfg):
    """(train source, test source, classes, view spec) for DATASET.TYPE imagenet."""
    folder = locate(cfg.DATASET.ROOT)
    train_dir, val_dir = os.path.join(folder, "train"), os.path.join(folder, "val")
    classes = check_split_classes(train_dir, val_dir, NUM_CLASSES, "ImageNet has 1000 classes")
    _, train_paths, train_labels = scan_split(train_dir)
    _, val_paths, val_labels = scan_split(val_dir)
    return FileSource(train_paths, train_labels), FileSource(val_paths, val_labels), classes, imagenet_spec()
