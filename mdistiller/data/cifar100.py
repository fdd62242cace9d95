"""CIFAR-100 as in-memory uint8 arrays, from either layout under DATASET.ROOT.

- the official `cifar-100-python/` pickles (what torchvision downloads), read directly;
- an image-folder tree `train/<class>/*.png`, `test/<class>/*.png` (also accepted one level
  down, in `cifar100/`, which is how the project's archive unpacks). Its 60,000 PNGs are
  decoded once and cached (see cache.py), so later runs start in about a second.
"""
import logging
import os
import pickle
import sys
import time
from typing import List, NamedTuple

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .cache import cache_path, folder_fingerprint, load_cache, save_cache
from .datasets import ArraySource
from .folders import check_split_classes, not_found, open_rgb, scan_split
from .transforms import cifar_spec

log = logging.getLogger(__name__)

NUM_CLASSES = 100
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
LAYOUTS = ("the official cifar-100-python/ pickles (train, test, meta), or image folders train/<class>/*.png "
           "and test/<class>/*.png with 100 class folders of 32x32 images (also inside cifar100/)")
HOW_TO_GET = ("set DATASET.DOWNLOAD True to let torchvision download it (needs network access), or download "
              "the python version from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and set DATASET.ROOT "
              "to the folder holding cifar-100-python/")


class CifarArrays(NamedTuple):
    images: np.ndarray  # (N, 32, 32, 3) uint8, RGB
    labels: np.ndarray  # (N,) int64, official fine-label order
    classes: List[str]  # label -> class name


def load_cifar100_arrays(root, split, cache_dir="", download=False):
    """One CIFAR-100 split as `(images, labels, classes)`.

    `root` is DATASET.ROOT, `split` "train" or "test", `cache_dir` DATASET.CACHE_DIR ("" = cache
    beside the image folders), `download` DATASET.DOWNLOAD. Raises DataError when the data is
    missing or malformed.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    layout, folder = locate_cifar100(root, download)
    if layout == "pickle":
        return _read_pickles(folder, split)
    return _read_folder(folder, split, cache_dir)


def _candidates(root):
    pickles = os.path.join(root, "cifar-100-python")
    return pickles, [root, os.path.join(root, "cifar100")]


def _find_layout(root):
    pickles, trees = _candidates(root)
    if os.path.isdir(pickles):
        return "pickle", pickles
    for tree in trees:
        if all(os.path.isdir(os.path.join(tree, s)) for s in SPLITS):
            return "folder", tree
    return None


def locate_cifar100(root, download=False):
    """("pickle" | "folder", folder) of the first layout found under `root`, downloading the
    pickles first when nothing is there and `download` is set."""
    found = _find_layout(root)
    if found is None and download:
        _download(root)
        found = _find_layout(root)
    if found is None:
        pickles, trees = _candidates(root)
        searched = [pickles] + [os.path.join(t, "{train,test}") for t in trees]
        raise not_found("CIFAR-100", root, searched, LAYOUTS, HOW_TO_GET)
    return found


def _download(root):
    from torchvision.datasets import CIFAR100

    try:
        CIFAR100(root, train=True, download=True)  # fetches and unpacks both splits
    except Exception as err:  # network failures arrive as URLError, HTTPError, timeouts, OSError...
        reason = (str(err).splitlines() or [""])[0]
        raise DataError(f"downloading CIFAR-100 into DATASET.ROOT={root} failed ({type(err).__name__}: {reason}); "
                        f"downloads need network access: without it, place the data there yourself "
                        f"({LAYOUTS})") from None


# ---------------------------------------------------------------- official pickles
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR files contain (dicts, lists, numpy arrays): a pickle can
    otherwise run arbitrary code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy.core."):  # numpy >= 2 moved numpy.core to numpy._core
            module = module.replace("numpy.core.", "numpy._core.", 1) if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(path):
    if not os.path.isfile(path):
        raise DataError(f"CIFAR-100 pickle {path} is missing; re-download with DATASET.DOWNLOAD True "
                        f"or use the image-folder layout")
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, OSError) as err:
        raise _bad_pickle(path, err) from None


def _bad_pickle(path, err):
    reason = (str(err).splitlines() or [""])[0]
    return DataError(f"{path} is not a valid CIFAR-100 pickle ({type(err).__name__}: {reason}); "
                     f"re-download with DATASET.DOWNLOAD True or use the image-folder layout")


def _read_pickles(folder, split):
    path = os.path.join(folder, split)
    data, meta = _unpickle(path), _unpickle(os.path.join(folder, "meta"))
    try:
        rows = np.asarray(data["data"], dtype=np.uint8)
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored as R, G, B planes
        labels = np.asarray(data["fine_labels"], dtype=np.int64)
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta["fine_label_names"]]
    except (KeyError, ValueError, TypeError) as err:
        raise _bad_pickle(path, err) from None
    if len(classes) != NUM_CLASSES:
        raise DataError(f"{os.path.join(folder, 'meta')} lists {len(classes)} fine labels, expected {NUM_CLASSES}; "
                        f"re-download CIFAR-100")
    if len(labels) != len(images) or labels.min(initial=0) < 0 or labels.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"{path} has {len(images)} images and {len(labels)} labels in [0, {NUM_CLASSES}) "
                        f"expected; re-download CIFAR-100")
    return CifarArrays(np.ascontiguousarray(images), labels, classes)


# ---------------------------------------------------------------- image folders
def _read_folder(folder, split, cache_dir):
    check_split_classes(os.path.join(folder, "train"), os.path.join(folder, "test"), NUM_CLASSES,
                        "CIFAR-100 has 100 classes")
    split_dir = os.path.join(folder, split)
    classes, paths, labels = scan_split(split_dir)
    key = folder_fingerprint(split_dir, paths)
    where = cache_path(folder, cache_dir, f"cifar100-{split}")
    cached = load_cache(where, key)
    if cached is not None:
        return CifarArrays(cached["images"], cached["labels"], [str(c) for c in cached["classes"]])
    start = time.perf_counter()
    # The first decode of the 50,000 training PNGs takes several seconds: say what and where.
    print(f"decoding {len(paths):,} CIFAR-100 {split} images once; caching them at {where} "
          "(DATASET.CACHE_DIR sets the folder)", file=sys.stderr, flush=True)
    images = _decode(paths)
    log.info("decoded %d CIFAR-100 %s images in %.1f s; caching them at %s", len(paths), split,
             time.perf_counter() - start, where)
    save_cache(where, key, {"images": images, "labels": labels, "classes": np.array(classes)})
    return CifarArrays(images, labels, classes)


def _decode(paths):
    images = np.empty((len(paths),) + IMAGE_SHAPE, dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc="decoding", unit="img", file=sys.stderr, leave=False,
                                  disable=None)):  # None: a bar on a terminal only
        img = open_rgb(path)
        if img.size != IMAGE_SHAPE[:2]:
            raise DataError(f"image {path} is {img.size[0]}x{img.size[1]}; CIFAR-100 images must be 32x32 "
                            f"(resize or remove it, or use DATASET.TYPE imagefolder)")
        images[i] = np.asarray(img)
    return images


def build(cfg):
    """(train source, test source, classes, view spec) for DATASET.TYPE cifar100."""
    d = cfg.DATASET
    train = load_cifar100_arrays(d.ROOT, "train", d.CACHE_DIR, d.DOWNLOAD)
    test = load_cifar100_arrays(d.ROOT, "test", d.CACHE_DIR, d.DOWNLOAD)
    return ArraySource(train.images, train.labels), ArraySource(test.images, test.labels), train.classes, cifar_spec()
