"""Where decoded CIFAR-100 arrays are cached by default (mdistiller/data/cache.py): the user's
cache folder, not the dataset folder, and the first decode says where."""
import os

from helpers.data import cifar_folder
from mdistiller.data import load_cifar100_arrays


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_the_default_cache_is_in_xdg_cache_home_and_the_first_decode_says_where(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    cifar_folder(data, train_per_class=1, test_per_class=1)
    before = files_under(data)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_cifar100_arrays(str(data), "test")
    (cached,) = os.listdir(tmp_path / "xdg" / "mdistiller")
    assert cached.startswith("cifar100-test-") and cached.endswith(".npz")
    assert files_under(data) == before  # nothing written into the dataset folder
    err = capsys.readouterr().err
    assert f"decoding 100 CIFAR-100 test images once; caching them at {tmp_path / 'xdg' / 'mdistiller' / cached}" in err
    load_cifar100_arrays(str(data), "test")
    assert "decoding" not in capsys.readouterr().err  # reused: silent


def test_without_xdg_cache_home_the_cache_is_in_dot_cache(tmp_path, monkeypatch):
    data = tmp_path / "data"
    cifar_folder(data, train_per_class=1, test_per_class=1)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_cifar100_arrays(str(data), "test")
    assert [f[:14] for f in os.listdir(tmp_path / "home" / ".cache" / "mdistiller")] == ["cifar100-test-"]
