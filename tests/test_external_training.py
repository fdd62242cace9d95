"""Tiny real trainings (one epoch, image folders of 32x32 images) with models from timm,
torchvision and the user's own code: logit methods with any pair, feature methods on hooks
chosen automatically, a stack, a 2-class DKD, paired mode, channels_last + bf16 autocast,
tools/eval.py and tools/feature_shapes.py on the results."""
import json
import os
import textwrap

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.engine.build import train, train_paired
from mdistiller.engine.checkpoint import extract_state_dict, load_checkpoint
from helpers.tiny import write_colour_folder
from helpers.tools import load_tool

timm = pytest.importorskip("timm")  # the `timm` extra: pip install -e ".[timm]"
CLASSES = ("ant", "bee", "cat")
RESNET, MOBILE, VIT = "timm:resnet10t", "timm:mobilenetv3_small_050", "timm:vit_tiny_patch16_224"
VIT_KWARGS = "{img_size: 32, patch_size: 4}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """3-class and 2-class image folders, random teachers saved as .safetensors (timm resnet10t)
    and .pth (torchvision resnet18), and the user's own model module `my_cnn.SmallCNN`."""
    from safetensors.torch import save_file
    import torchvision

    root = tmp_path_factory.mktemp("external")
    write_colour_folder(root / "three", CLASSES)
    write_colour_folder(root / "two", CLASSES[:2])
    torch.manual_seed(0)
    files = {}
    for n in (3, 2):
        files[f"resnet{n}"] = str(root / f"resnet10t_{n}.safetensors")
        save_file(timm.create_model("resnet10t", num_classes=n).state_dict(), files[f"resnet{n}"])
    files["tv"] = str(root / "resnet18.pth")
    torch.save({"model": torchvision.models.resnet18(num_classes=3).state_dict()}, files["tv"])
    (root / "my_cnn.py").write_text(textwrap.dedent('''
        from torch import nn

        def SmallCNN(num_classes):
            return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))
    '''))
    return root, files


@pytest.fixture
def on_path(setup, monkeypatch):
    monkeypatch.syspath_prepend(str(setup[0]))


def cfg_for(setup, out, name, method, teacher, student, *extra, data="three"):
    root, _ = setup
    return load_cfg(None, ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(root / data),
                           "DATASET.IMAGE_SIZE", "32", "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8",
                           "SOLVER.EPOCHS", "1", "LOG.PREFIX", str(out), "LOG.QUIET", "True",
                           "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", name, "DISTILLER.TYPE", method,
                           "DISTILLER.TEACHER", teacher, "DISTILLER.STUDENT", student, *extra])


def latest_weights(cfg):
    """The distiller's weights in a finished run's `latest` checkpoint."""
    return load_checkpoint(os.path.join(cfg.LOG.PREFIX, "p", cfg.EXPERIMENT.NAME, "latest"))["model"]


# Done-when: KD, DKD, SLD and one stack train with timm / torchvision / user models.
LOGIT_RUNS = {
    "kd_torchvision_teacher": ("KD", "torchvision:resnet18", "tv", RESNET, []),
    "dkd_timm_pair": ("DKD", RESNET, "resnet3", MOBILE, []),
    "sld_user_student": ("SLD", RESNET, "resnet3", "my_cnn:SmallCNN", ["SOLVER.TRAINER", "ours"]),
    "sld_stack_at": ("SLD", RESNET, "resnet3", RESNET, ["SOLVER.TRAINER", "ours", "DISTILLER.STACK", "[AT]"]),
    "kd_vit_student": ("KD", RESNET, "resnet3", VIT, ["DISTILLER.STUDENT_KWARGS", VIT_KWARGS]),
}


@pytest.mark.parametrize("run", list(LOGIT_RUNS))
def test_logit_methods_and_a_stack_train_with_any_classifier(setup, on_path, tmp_path, run):
    method, teacher, weights, student, extra = LOGIT_RUNS[run]
    cfg = cfg_for(setup, tmp_path, run, method, teacher, student, "DISTILLER.TEACHER_WEIGHTS", setup[1][weights],
                  *extra)
    best = train(cfg)
    assert 0.0 <= best <= 100.0
    model = latest_weights(cfg)
    # the frozen teacher is saved with the plain model's own keys, equal to the file's weights
    source = extract_state_dict(load_checkpoint(setup[1][weights]))
    assert all(torch.equal(model["teacher." + k], v) for k, v in source.items())


# Done-when: FitNet, AT and ReviewKD run with automatically chosen hooks on a timm CNN.
FEATURE_RUNS = {
    "FITNET": ["FITNET.HINT_LAYER", "2"],
    "AT": [],
    # teacher resnet10t (pre-activation stages + pooled) vs student mobilenetv3 (stages + pooled)
    "REVIEWKD": ["REVIEWKD.IN_CHANNELS", "[8, 16, 24, 288, 1024]", "REVIEWKD.OUT_CHANNELS", "[64, 128, 256, 512, 512]",
                 "REVIEWKD.SHAPES", "[1, 1, 2, 4, 8]", "REVIEWKD.OUT_SHAPES", "[1, 1, 2, 4, 8]"],
}


CONNECTORS = {"FITNET": "conv_reg.", "AT": None, "REVIEWKD": "abfs."}


@pytest.mark.parametrize("method", list(FEATURE_RUNS))
def test_feature_methods_on_automatic_hooks_of_timm_cnns(setup, tmp_path, method):
    cfg = cfg_for(setup, tmp_path, method.lower(), method, RESNET, MOBILE,
                  "DISTILLER.TEACHER_WEIGHTS", setup[1]["resnet3"], *FEATURE_RUNS[method])
    assert 0.0 <= train(cfg) <= 100.0
    if CONNECTORS[method]:  # connectors sized from the hooked features were built and saved
        assert any(k.startswith(CONNECTORS[method]) for k in latest_weights(cfg))


def test_dkd_on_a_two_class_image_folder_stays_finite(setup, tmp_path):
    """mdistiller issue #60: DKD on binary tasks went to inf. A non-finite loss stops the run
    with NonFiniteLossError, so finishing the epoch is the check."""
    cfg = cfg_for(setup, tmp_path, "dkd2", "DKD", RESNET, RESNET, "DISTILLER.TEACHER_WEIGHTS", setup[1]["resnet2"],
                  "DKD.WARMUP", "1", data="two")
    assert 0.0 <= train(cfg) <= 100.0


def test_paired_group_channels_last_and_bf16_with_timm_models(setup, tmp_path):
    extra = ["DISTILLER.TEACHER_WEIGHTS", setup[1]["resnet3"], "SOLVER.CHANNELS_LAST", "True", "SOLVER.AMP", "bf16"]
    cfgs = [cfg_for(setup, tmp_path, name, method, RESNET, MOBILE, *extra) for name, method in (("kd", "KD"),
                                                                                                  ("dkd", "DKD"))]
    best = train_paired(cfgs)
    assert len(best) == 2 and all(b is not None for b in best)


def test_eval_and_feature_shapes_tools_take_external_models(setup, tmp_path, capsys):
    cfg = cfg_for(setup, tmp_path, "vanilla", "NONE", RESNET, MOBILE, "DISTILLER.STUDENT_KWARGS", "{drop_rate: 0.1}")
    train(cfg)
    student_best = os.path.join(tmp_path, "p", "vanilla", "student_best")
    # a trained timm student's file loads into the plain timm model
    plain = timm.create_model("mobilenetv3_small_050", num_classes=3)
    plain.load_state_dict(load_checkpoint(student_best)["model"])
    capsys.readouterr()
    argv = ["-m", MOBILE, "-c", student_best, "-d", "imagefolder", "--root", str(setup[0] / "three"), "--json",
            "DEVICE", "cpu", "DATASET.IMAGE_SIZE", "32", "DATASET.NUM_WORKERS", "0", "LOG.QUIET", "True",
            "DISTILLER.STUDENT_KWARGS", "{drop_rate: 0.1}"]
    assert load_tool("eval").main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == MOBILE and result["count"] == 12
    load_tool("feature_shapes").main([RESNET, VIT, "DISTILLER.STUDENT_KWARGS", VIT_KWARGS])
    printed = capsys.readouterr().out
    assert "feats[1]          (64, 8, 8)              (65, 192)" in printed
    assert "AT        AT needs 4-D stage features (feats) from the student timm:vit_tiny_patch16_224" in printed
