"""ImageNet, Tiny-ImageNet and generic image folders, on tiny trees written on the fly."""
import os
import shutil

import numpy as np
import pytest
import torch

from mdistiller.data import build_loaders, build_sources
from mdistiller.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TINY_IMAGENET_MEAN, TINY_IMAGENET_STD
from mdistiller.errors import DataError
from helpers.data import cfg_for, class_tree, write_image

WNIDS = [f"n{c:08d}" for c in range(200)]


def _normalised(pixels, mean, std):
    x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


# ---------------------------------------------------------------- ImageNet
@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """1000 classes, one 40x30 JPEG each in train/ and val/, nested in imagenet/."""
    root = tmp_path_factory.mktemp("in")
    names = [f"n{c:08d}" for c in range(1000)]
    class_tree(root / "imagenet" / "train", names, 1, size=(40, 30), ext=".JPEG")
    class_tree(root / "imagenet" / "val", names, 1, size=(40, 30), ext=".JPEG", seed=7)
    return root


def test_imagenet_loaders(imagenet_root):
    cfg = cfg_for(imagenet_root, DATASET__TYPE="imagenet", SOLVER__BATCH_SIZE=4, DATASET__TEST__BATCH_SIZE=3)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views=2)
    assert (num_data, num_classes) == (1000, 1000)
    batch = next(iter(train_loader))
    assert batch["image_weak"].shape == batch["image_strong"].shape == (4, 3, 224, 224)
    images, targets = next(iter(test_loader))
    assert images.shape == (3, 3, 224, 224) and targets.tolist() == [0, 1, 2]
    # the val transform (resize 256 + centre crop 224) of a flat image keeps its colour
    flat = np.full((30, 40, 3), (10, 200, 90), dtype=np.uint8)
    from PIL import Image
    Image.fromarray(flat).save(test_loader.dataset.source.paths[0], quality=100)
    image, _ = test_loader.dataset[0]
    expected = _normalised(np.full((1, 1, 3), (10, 200, 90), dtype=np.uint8), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(image.mean((1, 2)), expected.view(3), atol=0.03, rtol=0)


def test_imagenet_wrong_class_count_and_missing(tmp_path):
    class_tree(tmp_path / "train", ["a", "b"], 1, ext=".jpg")
    class_tree(tmp_path / "val", ["a", "b"], 1, ext=".jpg")
    with pytest.raises(DataError, match=r"dataset folder .*/train has 2 class folders, expected 1000 \(ImageNet"):
        build_sources(cfg_for(tmp_path, DATASET__TYPE="imagenet"))
    with pytest.raises(DataError, match=r"ImageNet not found under DATASET.ROOT=.*/none \(searched .*none/\{train,val\}, "
                                        r".*none/imagenet/\{train,val\}\); accepted layouts: .*network access"):
        build_sources(cfg_for(tmp_path / "none", DATASET__TYPE="imagenet"))


def test_unreadable_image_in_a_lazy_dataset_names_the_file(imagenet_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(imagenet_root, root)
    cfg = cfg_for(root, DATASET__TYPE="imagenet")
    train, _, _, _ = build_sources(cfg)
    bad = train.paths[5]
    open(bad, "wb").write(b"\xff\xd8 truncated jpeg")
    train_loader, _, _, _ = build_loaders(cfg, views=1)
    with pytest.raises(DataError, match=rf"image {bad} cannot be read"):
        train_loader.dataset[5]


# ---------------------------------------------------------------- Tiny-ImageNet
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """The standard tiny-imagenet-200 layout with 200 classes, 1 train and 1 val image each."""
    root = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200"
    val_lines = []
    for c, wnid in enumerate(WNIDS):
        write_image(root / "train" / wnid / "images" / f"{wnid}_0.JPEG", seed=c, size=(64, 64))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
        val_lines.append(f"val_{c}.JPEG\t{WNIDS[(c * 7) % 200]}\t0\t0\t10\t10\n")
        write_image(root / "val" / "images" / f"val_{c}.JPEG", seed=1000 + c, size=(64, 64))
    (root / "val" / "val_annotations.txt").write_text("".join(val_lines))
    (root / "wnids.txt").write_text("\n".join(WNIDS))
    return root


def test_tiny_imagenet_standard_layout(tiny_root):
    cfg = cfg_for(tiny_root.parent, DATASET__TYPE="tiny_imagenet", SOLVER__BATCH_SIZE=8)
    train, test, classes, _ = build_sources(cfg)
    assert classes == WNIDS and len(train) == 200 and len(test) == 200
    assert train.labels.tolist() == list(range(200))
    # val labels come from val_annotations.txt, not from the file order
    assert test.labels[3] == 21 and test.paths[3].endswith("val/images/val_3.JPEG")
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views=2)
    assert (num_data, num_classes) == (200, 200)
    batch = next(iter(train_loader))
    assert batch["image_weak"].shape == (8, 3, 64, 64) and batch["image_strong"].shape == (8, 3, 64, 64)
    image, target = test_loader.dataset[0]
    from PIL import Image
    pixels = np.asarray(Image.open(test.paths[0]).convert("RGB"))
    torch.testing.assert_close(image, _normalised(pixels, TINY_IMAGENET_MEAN, TINY_IMAGENET_STD), rtol=0, atol=1e-6)


def test_tiny_imagenet_sorted_val_folders(tiny_root, tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    shutil.copytree(tiny_root / "train", root / "train")
    class_tree(root / "val", WNIDS, 1, size=(64, 64), ext=".JPEG")
    _, test, classes, _ = build_sources(cfg_for(root, DATASET__TYPE="tiny_imagenet"))
    assert classes == WNIDS and test.labels.tolist() == list(range(200))


def test_tiny_imagenet_bad_annotations(tiny_root, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tiny_root, root)
    ann = root / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines(keepends=True)
    ann.write_text("".join(lines[:4] + ["val_4.JPEG\tn99999999\t0\t0\t1\t1\n"] + lines[5:]))
    cfg = cfg_for(root, DATASET__TYPE="tiny_imagenet")
    with pytest.raises(DataError, match=r"val_annotations.txt line 5 does not name an image and a class of train/"):
        build_sources(cfg)
    ann.write_text("".join(lines))
    os.remove(root / "val" / "images" / "val_9.JPEG")
    with pytest.raises(DataError, match=r"image .*val/images/val_9.JPEG listed in .*val_annotations.txt is missing"):
        build_sources(cfg)


def test_tiny_imagenet_wrong_class_count(tiny_root, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tiny_root, root)
    shutil.rmtree(root / "train" / WNIDS[0])
    with pytest.raises(DataError, match=r"/train has 199 class folders, expected 200 \(Tiny-ImageNet has 200"):
        build_sources(cfg_for(root, DATASET__TYPE="tiny_imagenet"))


# ---------------------------------------------------------------- any image folder
@pytest.fixture
def folder_root(tmp_path):
    """3 classes; mixed PNG/JPEG, one grayscale, sizes around 20 px; val/ as the test split."""
    class_tree(tmp_path / "train", ["cat", "dog", "eel"], 3, size=(20, 20), ext=".png")
    write_image(tmp_path / "train" / "dog" / "gray.jpg", seed=5, size=(24, 20), mode="L")
    class_tree(tmp_path / "val", ["cat", "dog", "eel"], 2, size=(20, 20), ext=".jpg")
    return tmp_path


def test_imagefolder_counts_classes_and_infers_size(folder_root):
    cfg = cfg_for(folder_root, DATASET__TYPE="imagefolder", SOLVER__BATCH_SIZE=10)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views=2, with_index=True)
    assert (num_data, num_classes) == (10, 3)
    batch = next(iter(train_loader))
    assert batch["image_weak"].shape == batch["image_strong"].shape == (10, 3, 20, 20)
    assert sorted(batch["target"].tolist()) == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert batch["contrastive_index"].shape == (10, cfg.CRD.NCE.K + 1)
    images, targets = next(iter(test_loader))
    assert images.shape == (6, 3, 20, 20) and targets.tolist() == [0, 0, 1, 1, 2, 2]
    # grayscale became RGB with equal channels (before normalisation)
    train = train_loader.dataset.source
    gray = np.asarray(train.image(train.paths.index(str(folder_root / "train" / "dog" / "gray.jpg"))))
    assert gray.shape == (20, 24, 3) and (gray[..., 0] == gray[..., 1]).all()


def test_imagefolder_image_size_from_config_and_large_images(tmp_path):
    class_tree(tmp_path / "train", ["a", "b"], 2, size=(100, 80), ext=".jpg")
    class_tree(tmp_path / "test", ["a", "b"], 1, size=(100, 80), ext=".jpg")
    cfg = cfg_for(tmp_path, DATASET__TYPE="imagefolder", SOLVER__BATCH_SIZE=4)
    train_loader, test_loader, _, _ = build_loaders(cfg, views=1)
    assert next(iter(train_loader))["image"].shape == (4, 3, 80, 80)  # median shorter side
    assert next(iter(test_loader))[0].shape == (2, 3, 80, 80)
    cfg = cfg_for(tmp_path, DATASET__TYPE="imagefolder", DATASET__IMAGE_SIZE=48, SOLVER__BATCH_SIZE=4)
    train_loader, test_loader, _, _ = build_loaders(cfg, views=1)
    assert next(iter(train_loader))["image"].shape == (4, 3, 48, 48)
    assert next(iter(test_loader))[0].shape == (2, 3, 48, 48)


def test_imagefolder_errors(folder_root):
    cfg = cfg_for(folder_root, DATASET__TYPE="imagefolder", DATASET__NUM_CLASSES=5)
    with pytest.raises(DataError, match=r"/train has 3 class folders, expected 5 \(DATASET.NUM_CLASSES\)"):
        build_sources(cfg)
    cfg = cfg_for(folder_root, DATASET__TYPE="imagefolder")
    bad = folder_root / "val" / "eel" / "img001.jpg"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=rf"image {bad} cannot be read \(UnidentifiedImageError"):
        build_sources(cfg)
    os.remove(bad)
    os.rename(folder_root / "val" / "eel", folder_root / "val" / "emu")
    with pytest.raises(DataError, match=r"class folders of .*/train and .*/val differ \(only in train: eel; only in test: emu\)"):
        build_sources(cfg)
    with pytest.raises(DataError, match=r"image-folder dataset not found under DATASET.ROOT=.*/x \(searched "
                                        r".*x/\{train,test\}, .*x/\{train,val\}\); accepted layouts: train/<class>"):
        build_sources(cfg_for(folder_root / "x", DATASET__TYPE="imagefolder"))


def test_imagefolder_hidden_entries_and_other_files_are_ignored(folder_root):
    (folder_root / "train" / ".cache").mkdir()
    (folder_root / "val" / ".cache").mkdir()
    (folder_root / "train" / "cat" / "notes.txt").write_text("not an image")
    train, _, classes, _ = build_sources(cfg_for(folder_root, DATASET__TYPE="imagefolder"))
    assert classes == ["cat", "dog", "eel"] and len(train) == 10
