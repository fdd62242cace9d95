"""CIFAR-100 from both layouts (fake pickles, fake PNG trees), the decoded-array cache, subsets,
normalisation and every error message."""
import logging
import os
import pickle
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from mdistiller.data import build_loaders, cifar100, load_cifar100_arrays, stratified_subset
from mdistiller.data.cache import cache_path
from mdistiller.data.transforms import CIFAR100_MEAN, CIFAR100_STD
from mdistiller.errors import DataError
from helpers.data import CIFAR_CLASSES, cfg_for, cifar_folder, cifar_pickles, write_image


@pytest.fixture(scope="module")
def pristine_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar_tree")
    return root, cifar_folder(root)


@pytest.fixture
def tree(pristine_tree, tmp_path):
    """A private copy of the PNG tree (tests modify it) and the pixels written per file."""
    root, written = pristine_tree
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    return copy, {split: {p.replace(str(root), str(copy)): v for p, v in w.items()}
                  for split, w in zip(("train", "test"), written)}


def _expected(written, split_dir):
    paths = sorted(p for p in written if p.startswith(str(split_dir)))
    labels = [CIFAR_CLASSES.index(os.path.basename(os.path.dirname(p))) for p in paths]
    return np.stack([written[p] for p in paths]), np.array(labels)


# ---------------------------------------------------------------- layouts
def test_pickle_layout_images_labels_classes(tmp_path):
    expected = cifar_pickles(tmp_path)
    for split in ("train", "test"):
        images, labels, classes = load_cifar100_arrays(str(tmp_path), split)
        assert images.dtype == np.uint8 and images.shape == (len(expected[split][1]), 32, 32, 3)
        np.testing.assert_array_equal(images, expected[split][0])  # R, G, B planes -> HWC
        np.testing.assert_array_equal(labels, expected[split][1])
        assert labels.dtype == np.int64 and classes == CIFAR_CLASSES


def test_folder_layout_images_labels_classes(tree):
    root, written = tree
    for split in ("train", "test"):
        images, labels, classes = load_cifar100_arrays(str(root), split)
        exp_images, exp_labels = _expected(written[split], root / split)
        np.testing.assert_array_equal(images, exp_images)
        np.testing.assert_array_equal(labels, exp_labels)
        assert classes == CIFAR_CLASSES  # sorted folder names = label order


def test_folder_layout_one_level_down_and_grayscale(tree, tmp_path):
    root, _ = tree
    nested = tmp_path / "outer"
    shutil.move(str(root), str(nested / "cifar100"))
    gray = write_image(nested / "cifar100" / "train" / "class000" / "img000.png", seed=9, mode="L")
    images, labels, _ = load_cifar100_arrays(str(nested), "train")
    np.testing.assert_array_equal(images[0], gray)  # converted to 3 equal channels
    assert (images[0][..., 0] == images[0][..., 2]).all()


def test_pickles_are_preferred_over_a_folder_tree(tree):
    root, _ = tree
    expected = cifar_pickles(root)
    np.testing.assert_array_equal(load_cifar100_arrays(str(root), "test").images, expected["test"][0])


def test_unsafe_pickles_are_refused(tmp_path):
    cifar_pickles(tmp_path)
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump({"data": os.system}, f)  # would import os.system when unpickled freely
    with pytest.raises(DataError, match=r"cifar-100-python/test is not a valid CIFAR-100 pickle "
                                        r"\(UnpicklingError: \w+\.system is not allowed"):
        load_cifar100_arrays(str(tmp_path), "test")


def test_truncated_and_missing_pickles(tmp_path):
    cifar_pickles(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train is not a valid CIFAR-100 pickle.*DATASET.DOWNLOAD True"):
        load_cifar100_arrays(str(tmp_path), "train")
    os.remove(tmp_path / "cifar-100-python" / "meta")
    with pytest.raises(DataError, match=r"pickle .*/meta is missing"):
        load_cifar100_arrays(str(tmp_path), "test")


def test_pickle_with_wrong_class_count(tmp_path):
    cifar_pickles(tmp_path)
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({"fine_label_names": CIFAR_CLASSES[:10]}, f)
    with pytest.raises(DataError, match=r"meta lists 10 fine labels, expected 100"):
        load_cifar100_arrays(str(tmp_path), "train")


# ---------------------------------------------------------------- cache
def _cache_file(root, split):
    return cache_path(str(root), "", f"cifar100-{split}")


def _forbid_decoding(monkeypatch):
    def refuse(paths):
        raise AssertionError("decoded again although the cache is valid")
    monkeypatch.setattr(cifar100, "_decode", refuse)


def test_cache_is_written_then_reused(tree, monkeypatch):
    root, _ = tree
    first = load_cifar100_arrays(str(root), "train")
    assert os.path.isfile(_cache_file(root, "train"))
    _forbid_decoding(monkeypatch)
    second = load_cifar100_arrays(str(root), "train")
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.classes == second.classes


def test_cache_in_cache_dir(tree, tmp_path, monkeypatch):
    root, _ = tree
    cache_dir = tmp_path / "cache"
    load_cifar100_arrays(str(root), "test", cache_dir=str(cache_dir))
    assert [f.startswith("cifar100-test-") for f in os.listdir(cache_dir)] == [True]
    assert not os.path.exists(_cache_file(root, "test"))
    _forbid_decoding(monkeypatch)
    load_cifar100_arrays(str(root), "test", cache_dir=str(cache_dir))


def test_changed_folder_rebuilds_the_cache(tree):
    root, _ = tree
    before = load_cifar100_arrays(str(root), "train")
    new = write_image(root / "train" / "class050" / "img999.png", seed=77)
    after = load_cifar100_arrays(str(root), "train")
    assert len(after.labels) == len(before.labels) + 1
    position = list(after.labels).index(50) + 2  # after class050's img000, img001
    np.testing.assert_array_equal(after.images[position], new)
    # replacing a file's content (new size/mtime) also invalidates it
    changed = write_image(root / "train" / "class000" / "img000.png", seed=78)
    np.testing.assert_array_equal(load_cifar100_arrays(str(root), "train").images[0], changed)


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage"])
def test_corrupt_cache_is_rebuilt_not_trusted(tree, caplog, damage):
    root, _ = tree
    good = load_cifar100_arrays(str(root), "train")
    path = _cache_file(root, "train")
    data = bytearray(open(path, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_bytes":
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # inside the image array
    else:
        data = b"not a cache"
    open(path, "wb").write(bytes(data))
    with caplog.at_level(logging.WARNING, logger="mdistiller.data.cache"):
        again = load_cifar100_arrays(str(root), "train")
    np.testing.assert_array_equal(again.images, good.images)
    assert any("is corrupt or unreadable" in r.message and path in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        load_cifar100_arrays(str(root), "train")  # the rebuilt cache is valid again: no message
    assert not caplog.records


def test_unwritable_cache_dir_only_warns(tree, tmp_path, caplog):
    root, _ = tree
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        arrays = load_cifar100_arrays(str(root), "test", cache_dir=str(blocker / "sub"))
    assert len(arrays.labels) == 100
    assert any("cannot write image cache" in r.message and "DATASET.CACHE_DIR" in r.message for r in caplog.records)


# ---------------------------------------------------------------- errors
def test_missing_dataset_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar100_arrays(str(tmp_path / "nowhere"), "train")
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("CIFAR-100 not found under DATASET.ROOT=", "nowhere/cifar-100-python", "nowhere/{train,test}",
                 "nowhere/cifar100/{train,test}", "cifar-100-python/ pickles", "train/<class>/*.png",
                 "DATASET.DOWNLOAD True", "needs network access", "https://www.cs.toronto.edu/~kriz/cifar.html"):
        assert part in msg, part


def test_download_failure_names_network(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def offline(root, train, download):
        calls.append((root, train, download))
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataError, match=r"downloading CIFAR-100 into DATASET.ROOT=.* failed \(URLError: "
                                        r".*name resolution.*downloads need network access") as err:
        load_cifar100_arrays(str(tmp_path), "train", download=True)
    assert calls == [(str(tmp_path), True, True)] and "\n" not in str(err.value)


def test_download_is_used_when_allowed(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", lambda root, train, download: cifar_pickles(root))
    assert len(load_cifar100_arrays(str(tmp_path), "test", download=True).labels) == 100


def test_wrong_class_count(tree):
    root, _ = tree
    shutil.rmtree(root / "train" / "class007")
    with pytest.raises(DataError, match=r"dataset folder .*/train has 99 class folders, expected 100 \(CIFAR-100"):
        load_cifar100_arrays(str(root), "test")


def test_mismatched_train_test_classes(tree):
    root, _ = tree
    os.rename(root / "test" / "class042", root / "test" / "zebra")
    with pytest.raises(DataError, match=r"class folders of .*/train and .*/test differ "
                                        r"\(only in train: class042; only in test: zebra\)"):
        load_cifar100_arrays(str(root), "train")


def test_unreadable_image(tree):
    root, _ = tree
    bad = root / "train" / "class003" / "img001.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=rf"image {bad} cannot be read \(UnidentifiedImageError"):
        load_cifar100_arrays(str(root), "train")


def test_truncated_png(tree):
    root, _ = tree
    bad = root / "train" / "class004" / "img000.png"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"image {bad} cannot be read"):
        load_cifar100_arrays(str(root), "train")


def test_wrong_image_size(tree):
    root, _ = tree
    bad = root / "test" / "class005" / "img000.png"
    write_image(bad, size=(28, 30))
    with pytest.raises(DataError, match=rf"image {bad} is 28x30; CIFAR-100 images must be 32x32"):
        load_cifar100_arrays(str(root), "test")


def test_empty_class_folder(tree):
    root, _ = tree
    for f in os.listdir(root / "test" / "class009"):
        os.remove(root / "test" / "class009" / f)
    with pytest.raises(DataError, match=r"class folder .*/test/class009 holds no images"):
        load_cifar100_arrays(str(root), "test")


# ---------------------------------------------------------------- loaders over CIFAR
def test_test_loader_normalisation(tree):
    root, written = tree
    cfg = cfg_for(root, DATASET__TEST__BATCH_SIZE=1000)
    _, test_loader, num_data, num_classes = build_loaders(cfg, views=1)
    assert (num_data, num_classes) == (200, 100)
    images, targets = next(iter(test_loader))
    exp_images, exp_labels = _expected(written["test"], root / "test")
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(exp_images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.float32
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)
    assert torch.equal(targets, torch.from_numpy(exp_labels))


def test_subsets_through_the_config(tree):
    root, _ = tree
    cfg = cfg_for(root, DATASET__TRAIN_SUBSET=100, DATASET__TEST_SUBSET=50, SOLVER__BATCH_SIZE=100)
    train_loader, test_loader, num_data, _ = build_loaders(cfg, views=1)
    assert num_data == 100 and len(test_loader.dataset) == 50
    batch = next(iter(train_loader))
    assert sorted(batch["target"].tolist()) == list(range(100))  # one per class
    assert sorted(batch["index"].tolist()) == list(range(100))  # indices into the subset
    assert len(set(test_loader.dataset.source.labels.tolist())) == 50


# ---------------------------------------------------------------- stratified subsets
def test_stratified_subset_balanced_and_deterministic():
    labels = np.repeat(np.arange(10), 50)
    picked = stratified_subset(labels, 100, seed=3)
    assert len(picked) == 100 and len(set(picked)) == 100 and (np.diff(picked) > 0).all()
    assert np.bincount(labels[picked]).tolist() == [10] * 10
    np.testing.assert_array_equal(picked, stratified_subset(labels, 100, seed=3))
    assert not np.array_equal(picked, stratified_subset(labels, 100, seed=4))
    assert not np.array_equal(picked, stratified_subset(labels, 100, seed=3, salt=1))


def test_stratified_subset_proportional_with_remainders():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    for total, expected in [(10, [6, 3, 1]), (50, [30, 15, 5]), (3, None)]:
        counts = np.bincount(labels[stratified_subset(labels, total, seed=0)], minlength=3)
        assert counts.sum() == total
        if expected:
            assert counts.tolist() == expected
        else:  # shares 1.8, 0.9, 0.3: floors 1, 0, 0, then the largest remainders (0.9, 0.8)
            assert counts.tolist() == [2, 1, 0]


def test_stratified_subset_all_when_zero_or_too_many():
    labels = np.arange(7) % 3
    for total in (0, 7, 100):
        np.testing.assert_array_equal(stratified_subset(labels, total, seed=0), np.arange(7))
