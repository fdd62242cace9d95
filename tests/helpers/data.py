"""Helpers for the data tests: tiny datasets written on the fly, configs, the shared folder,
the real CIFAR-100 tree (plain helpers; the data fixtures built on them are in conftest.py).
"""
import contextlib
import hashlib
import os
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdistiller.config import load_cfg

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def no_host_syncs():
    """CUDA: any op inside the block that makes the host wait for the device raises (torch's
    sync debug mode); work queued before the block is finished first."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def shared_dir():
    """The project's read-only shared folder: $MDISTILLER_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("MDISTILLER_SHARED") or REPO.parent / "shared")


def cfg_for(root, **opts):
    """A validated config for a data test; `opts` are KEY=value with dots written as '__'."""
    pairs = ["DATASET.ROOT", str(root), "DATASET.NUM_WORKERS", 0]
    for key, value in opts.items():
        pairs += [key.replace("__", "."), value]
    return load_cfg(opts=pairs)


def pixels(seed, size=(32, 32)):
    """Deterministic random RGB pixels, (H, W, 3) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def write_image(path, seed=0, size=(32, 32), mode="RGB"):
    """An image file whose format follows the extension; returns its RGB pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels(seed, size)).convert(mode)
    img.save(path)
    return np.asarray(img.convert("RGB"))


def class_tree(root, classes, per_class, size=(32, 32), ext=".png", seed=0):
    """root/<class>/<i><ext> for every class; returns {path: RGB pixels}."""
    written = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            path = Path(root) / name / f"img{i:03d}{ext}"
            written[str(path)] = write_image(path, seed=seed + 1000 * c + i, size=size)
    return written


CIFAR_CLASSES = [f"class{c:03d}" for c in range(100)]


def cifar_folder(root, train_per_class=2, test_per_class=1):
    """A CIFAR-100 image-folder tree (100 classes of 32x32 PNGs) under root/{train,test}."""
    train = class_tree(Path(root) / "train", CIFAR_CLASSES, train_per_class)
    test = class_tree(Path(root) / "test", CIFAR_CLASSES, test_per_class, seed=500_000)
    return train, test


def cifar_pickles(root, train_per_class=2, test_per_class=1):
    """A fake root/cifar-100-python/{train,test,meta} in the official format (dicts of
    'data' rows of R, G, B planes and 'fine_labels'); returns {split: (images HWC, labels)}."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    expected = {}
    for split, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        labels = np.repeat(np.arange(100), per_class)[::-1].copy()  # not sorted, like the real files
        images = np.random.default_rng(seed).integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
        rows = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
        _write_pickle(folder / split, {"data": rows, "fine_labels": labels.tolist(), "coarse_labels": [0] * len(labels)})
        expected[split] = (images, labels)
    _write_pickle(folder / "meta", {"fine_label_names": CIFAR_CLASSES, "coarse_label_names": ["x"] * 20})
    return expected


def _write_pickle(path, obj):
    # Protocol 2 and numpy 1.x's module path for arrays, as in the real (Python 2 era) files.
    data = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    Path(path).write_bytes(data)


def unpacked_archive(parts):
    """Unpack the archive parts once per machine; a half-finished unpack is never reused."""
    tag = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}\n" for p in parts).encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"mdistiller-cifar100-{tag}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpacking-"))
        with subprocess.Popen(["cat", *map(str, parts)], stdout=subprocess.PIPE) as cat:
            subprocess.run(["tar", "xz", "-C", str(staging)], stdin=cat.stdout, check=True)
        try:
            staging.rename(target)
        except OSError:  # another session finished first
            shutil.rmtree(staging)
    return target / "cifar100"


def write_real_subset(cifar, root, classes, counts):
    """root/<split>/<class>/*.png: the first images of the first `classes` real CIFAR-100 classes,
    `counts` = ((split, images per class), ...)."""
    for split, count in counts:
        names = sorted(os.listdir(os.path.join(cifar, split)))[:classes]
        for name in names:
            os.makedirs(os.path.join(root, split, name))
            for image in sorted(os.listdir(os.path.join(cifar, split, name)))[:count]:
                shutil.copy(os.path.join(cifar, split, name, image), os.path.join(root, split, name, image))
