"""tools/train.py --logit-stand --base-temp T --kd-weight W on configs shaped like the LS
repository's (tests/fixtures/official_configs/ls_*.yaml): one tiny epoch trains with the LS
repository's mapping; misuse is one `error:` line and exit code 2."""
import os

import pytest
import torch
import yaml

from mdistiller.config import load_cfg
from mdistiller.distillers import check_distiller_cfg
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from helpers.tools import common, load_tool

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "official_configs")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ls_teacher") / "teacher.pth"
    torch.save({"model": create_model("resnet8", 3, "cifar100").state_dict()}, path)
    return str(path)


def run(folder_data, tmp_path, teacher_file, fixture, name, *flags):  # noqa: F811
    argv = ["--cfg", os.path.join(FIXTURES, fixture), *flags,
            *common(folder_data, tmp_path, name, "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS",
                    teacher_file)]
    code = load_tool("train").main(argv)
    with open(os.path.join(tmp_path, "cli", name, "config.yaml")) as f:
        return code, yaml.safe_load(f)


def test_ls_kd_config_trains_one_epoch_with_the_flags(folder_data, tmp_path, teacher_file):  # noqa: F811
    code, saved = run(folder_data, tmp_path, teacher_file, "ls_kd.yaml", "kd", "--logit-stand", "--base-temp", "2",
                      "--kd-weight", "9")
    assert code == 0
    assert saved["EXPERIMENT"]["LOGIT_STAND"] is True
    kd = saved["KD"]
    assert (kd["TEMPERATURE"], kd["LOSS"]["KD_WEIGHT"], kd["LOSS"]["CE_WEIGHT"]) == (2.0, 9.0, 0.1)
    assert os.path.exists(os.path.join(tmp_path, "cli", "kd", "student_best"))


def test_dkd_mapping_and_flags_after_the_overrides(folder_data, tmp_path, teacher_file):  # noqa: F811
    argv = ["--cfg", os.path.join(FIXTURES, "mdistiller_dkd.yaml"),
            *common(folder_data, tmp_path, "dkd", "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS",
                    teacher_file), "--logit-stand", "--kd-weight", "3"]
    args = load_tool("train").parse_args(argv)
    cfg = load_tool("train").load_train_cfg(args)
    base = load_cfg(os.path.join(FIXTURES, "mdistiller_dkd.yaml"))
    assert cfg.EXPERIMENT.LOGIT_STAND and cfg.is_frozen()
    assert (cfg.DKD.T, cfg.DKD.ALPHA, cfg.DKD.BETA) == (2.0, 3 * base.DKD.ALPHA, 3 * base.DKD.BETA)


@pytest.mark.parametrize("flags, message", [
    (["--base-temp", "2"], "error: --base-temp only applies with --logit-stand; add --logit-stand or drop it"),
    (["--logit-stand", "DISTILLER.TYPE", "SLD"], "error: --logit-stand sets the temperature and weight of DKD, "),
    (["--logit-stand", "--kd-weight", "-1"], "error: --kd-weight is -1.0; it must be a positive number"),
])
def test_misuse_is_one_line_and_exit_code_2(flags, message, capsys):
    assert load_tool("train").main(["--cfg", os.path.join(FIXTURES, "ls_kd.yaml"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_every_ls_shape_loads_unchanged():
    kd = load_cfg(os.path.join(FIXTURES, "ls_kd.yaml"))
    assert (kd.DISTILLER.TYPE, kd.EXPERIMENT.LOGIT_STAND, kd.KD.TEMPERATURE) == ("KD", False, 4.0)
    mlkd = load_cfg(os.path.join(FIXTURES, "ls_mlkd.yaml"))
    assert (mlkd.SOLVER.EPOCHS, mlkd.SOLVER.LR, mlkd.DATASET.VIEWS) == (960, 0.001, 2)  # SOLVER.TRAINER ours
    imagenet = load_cfg(os.path.join(FIXTURES, "ls_imagenet.yaml"))
    assert (imagenet.KD.TEMPERATURE, imagenet.KD.LOSS.CE_WEIGHT) == (1.0, 0.5)
    aug = load_cfg(os.path.join(FIXTURES, "ls_dkd_aug.yaml"))
    assert aug.DATASET.VIEWS == 2  # "aug" is the two-view trainer's other name
    with pytest.raises(ConfigError, match=r"^config key DISTILLER.TYPE is 'DKD_aug'; registered distillers: "):
        check_distiller_cfg(aug)
