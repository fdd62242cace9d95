"""Tiny-ImageNet (200 classes, 64x64) in its standard layout, with mdistiller's transforms.

Standard layout (as distributed): tiny-imagenet-200/train/<wnid>/images/*.JPEG and
val/images/*.JPEG labelled by val/val_annotations.txt (`file<TAB>wnid<TAB>box...`). A val/ already
sorted into val/<wnid>/ folders (what mdistiller's loader expects) is accepted too.
"""
import os

from ..errors import DataError
from .datasets import FileSource
from .folders import check_classes, check_split_classes, list_class_folders, locate_train_val, scan_split
from .transforms import tiny_imagenet_spec

NUM_CLASSES = 200
WHY = "Tiny-ImageNet has 200 classes"
LAYOUTS = ("tiny-imagenet-200/train/<wnid>/images/*.JPEG with val/images/*.JPEG and val/val_annotations.txt, "
           "or val/<wnid>/*.JPEG")
HOW_TO_GET = ("download tiny-imagenet-200.zip from http://cs231n.stanford.edu/ (needs network access), unzip it "
              "and point DATASET.ROOT at tiny-imagenet-200/ or its parent")


def locate(root):
    """The folder holding train/ and val/."""
    return locate_train_val(root, "tiny-imagenet-200", "Tiny-ImageNet", LAYOUTS, HOW_TO_GET)


def _annotated_val(val_dir, annotations, classes):
    """(paths, labels) from val_annotations.txt; every listed file must exist with a known class."""
    label_of = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    with open(annotations) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split("\t")
            if not line.strip():
                continue
            if len(fields) < 2 or fields[1].strip() not in label_of:
                raise DataError(f"{annotations} line {line_no} does not name an image and a class of train/ "
                                f"({line.strip()[:60]!r}); restore the original file")
            path = os.path.join(val_dir, "images", fields[0].strip())
            if not os.path.isfile(path):
                raise DataError(f"image {path} listed in {annotations} is missing; restore it or re-download the data")
            paths.append(path)
            labels.append(label_of[fields[1].strip()])
    if not paths:
        raise DataError(f"{annotations} lists no images; restore the original file")
    return paths, labels


def build(cfg):
    """(train source, test source, classes, view spec) for DATASET.TYPE tiny_imagenet."""
    folder = locate(cfg.DATASET.ROOT)
    train_dir, val_dir = os.path.join(folder, "train"), os.path.join(folder, "val")
    annotations = os.path.join(val_dir, "val_annotations.txt")
    if os.path.isfile(annotations):
        classes = list_class_folders(train_dir)
        check_classes(train_dir, classes, NUM_CLASSES, WHY)
        val_paths, val_labels = _annotated_val(val_dir, annotations, classes)
    else:
        classes = check_split_classes(train_dir, val_dir, NUM_CLASSES, WHY)
        _, val_paths, val_labels = scan_split(val_dir)
    _, train_paths, train_labels = scan_split(train_dir)
    return FileSource(train_paths, train_labels), FileSource(val_paths, val_labels), classes, tiny_imagenet_spec()
