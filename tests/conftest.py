"""Fixtures shared by the test modules (pytest finds them here; test modules never import them).

Plain helpers (tiny models, data writers, tool loaders) are in tests/helpers/ and are imported
by name; only fixtures live here. Every fixture below is available to every test module:
- `suite_threads`, `one_thread` (autouse): the whole suite runs torch with one intra-op thread;
- `user_cache_dir` (autouse): XDG_CACHE_HOME in a per-machine temp folder;
- data: `official`, `root`, `cifar_root`, `folder_data`, `data_and_teacher`.
"""
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.data import cifar_pickles, shared_dir, unpacked_archive
from helpers.tiny import COLOUR_CLASSES, write_colour_folder
from mdistiller.models import create_model

# One value for the whole suite, whichever modules run: the tests run tiny models on a busy
# shared CPU box, where OpenMP thread hand-offs cost far more than the work itself (measured on
# test_models.py's compat checks: 69 s with the default threads vs 15 s with one), and the exact
# resume and DDP tests compare in-process runs with child processes that run with one thread
# (OMP_NUM_THREADS=1, helpers.tiny.subprocess_env).
SUITE_THREADS = 1


@pytest.fixture(scope="session", autouse=True)
def suite_threads():
    """SUITE_THREADS for the whole session, so module- and session-scoped fixtures (which set up
    before any function-scoped fixture) train with it too; the caller's count is restored at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(SUITE_THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def user_cache_dir():
    """The suite's XDG_CACHE_HOME: decoded-image caches (default: the user's ~/.cache/mdistiller)
    go to one folder per machine under the temp dir, kept between sessions like the unpacked
    real CIFAR-100, never into the home of whoever runs the tests. Children inherit it."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), "mdistiller-test-cache")
    yield os.environ["XDG_CACHE_HOME"]
    if before is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(autouse=True)
def one_thread(suite_threads):
    """SUITE_THREADS again after each test, for the few tests that choose their own count."""
    torch.set_num_threads(SUITE_THREADS)
    yield
    torch.set_num_threads(SUITE_THREADS)


@pytest.fixture(scope="module")
def official():
    """The official op functions' outputs on real CIFAR-100 images ({name: array}); skips with
    the reason when the shared folder is absent."""
    npz = shared_dir() / "compat" / "official_augment_ops.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} not found: set MDISTILLER_SHARED to the shared folder to run the "
                    "official-op checks")
    with np.load(npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module", name="root")
def fake_cifar_root(tmp_path_factory):
    """Fixture `root`: fake CIFAR-100 pickles, 100 classes x 4 train, x 1 test."""
    root = tmp_path_factory.mktemp("cifar")
    cifar_pickles(root, train_per_class=4)
    return root


@pytest.fixture(scope="module")
def cifar_root():
    """The real CIFAR-100 image-folder tree (train/, test/): $MDISTILLER_CIFAR100, else the archive
    parts <shared>/data/cifar100/cifar100-png.tar.gz.part* unpacked once per machine; skips with
    the reason when neither is there (see tests/test_data_real_cifar.py)."""
    if os.environ.get("MDISTILLER_CIFAR100"):
        root = Path(os.environ["MDISTILLER_CIFAR100"])
        if not (root / "train").is_dir():
            pytest.fail(f"MDISTILLER_CIFAR100={root} has no train/ folder")
        return root
    parts = sorted((shared_dir() / "data" / "cifar100").glob("cifar100-png.tar.gz.part*"))
    if not parts:
        pytest.skip(f"real CIFAR-100 not found: set MDISTILLER_CIFAR100 to an unpacked train/test tree or "
                    f"MDISTILLER_SHARED to the shared folder (looked in {shared_dir()})")
    return unpacked_archive(parts)


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory):
    """train/<class>/*.png (8 per class) and test/<class>/*.png (4 per class), 16x16, learnable colours."""
    root = tmp_path_factory.mktemp("imagefolder")
    write_colour_folder(root, COLOUR_CLASSES)
    return str(root)


@pytest.fixture(scope="module")
def data_and_teacher(tmp_path_factory):
    """train/<class>/*.png (8 per class), test/<class>/*.png (4 per class), 16x16; and a random
    resnet8 saved as a teacher checkpoint."""
    root = tmp_path_factory.mktemp("paired_data")
    write_colour_folder(root, COLOUR_CLASSES)
    torch.manual_seed(5)
    teacher = root / "teacher.pth"
    torch.save({"model": create_model("resnet8", len(COLOUR_CLASSES), "cifar100").state_dict()}, teacher)
    return str(root), str(teacher)
