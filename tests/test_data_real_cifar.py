"""The real CIFAR-100 (image-folder layout) through the loader: counts, class order, pixel means.

Where the data comes from (conftest.py's `cifar_root` fixture; first match wins):
1. $MDISTILLER_CIFAR100: a folder holding the unpacked train/ and test/ trees;
2. the archive parts <shared>/data/cifar100/cifar100-png.tar.gz.part*, where <shared> is
   $MDISTILLER_SHARED or, when unset, ../shared next to the repository. They are unpacked
   once into $TMPDIR/mdistiller-cifar100-<fingerprint of the parts>/ and reused by later
   sessions; the decoded-array cache is written beside the trees, so only the first run
   pays for unpacking (~5 s) and decoding (~10-20 s on 2 cores).
Skipped, with the reason, when neither is available.
"""
import time

import numpy as np
import pytest

from mdistiller.data import build_loaders, load_cifar100_arrays
from helpers.data import cfg_for

# The official fine-label order (the `meta` pickle of cifar-100-python).
OFFICIAL_CLASSES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man
maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain
plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm""".split()


@pytest.fixture(scope="module")
def splits(cifar_root):
    start = time.perf_counter()
    loaded = {s: load_cifar100_arrays(str(cifar_root), s) for s in ("train", "test")}
    print(f"loaded real CIFAR-100 in {time.perf_counter() - start:.1f} s")
    return loaded


def test_counts_and_class_order(splits):
    for split, total, per_class in (("train", 50_000, 500), ("test", 10_000, 100)):
        images, labels, classes = splits[split]
        assert images.shape == (total, 32, 32, 3) and images.dtype == np.uint8
        assert np.bincount(labels, minlength=100).tolist() == [per_class] * 100
        assert classes == OFFICIAL_CLASSES


def test_per_channel_means(splits):
    means = splits["train"].images.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, (0.5071, 0.4865, 0.4409), atol=1e-3)


def test_cached_reload_is_fast_and_identical(cifar_root, splits):
    start = time.perf_counter()
    again = load_cifar100_arrays(str(cifar_root), "train")
    elapsed = time.perf_counter() - start
    print(f"cached reload of the train split: {elapsed:.2f} s")
    assert np.array_equal(again.images, splits["train"].images)
    assert elapsed < 15  # decoding would take longer; generous for a loaded CI machine


def test_loader_over_real_data(cifar_root, splits):
    cfg = cfg_for(cifar_root, SOLVER__BATCH_SIZE=32, DATASET__TRAIN_SUBSET=1000, DATASET__TEST_SUBSET=500)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views=2)
    assert (num_data, num_classes) == (1000, 100) and len(test_loader.dataset) == 500
    assert np.bincount(train_loader.dataset.source.labels).tolist() == [10] * 100
    batch = next(iter(train_loader))
    assert batch["image_weak"].shape == batch["image_strong"].shape == (32, 3, 32, 32)
