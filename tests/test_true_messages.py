"""Messages that must be true (issue 28, "Smaller untruths"): a CRD size error names the
configured value that is wrong, a stack's extra parameters are attributed to the method that
owns them, and the README's eval command works as written."""
import json
import os
import re

import pytest
import torch

from helpers.data import cifar_folder
from helpers.tiny import REPO
from helpers.tools import load_tool
from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.distillers.stack import extra_parameters_line
from mdistiller.errors import ConfigError
from mdistiller.models import create_model


def stacked(method, teacher, student, *opts):
    cfg = load_cfg(None, ["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", f"[{method}]", "DISTILLER.TEACHER", teacher,
                          "DISTILLER.STUDENT", student, *opts])
    return cfg, create_model(teacher, 100), create_model(student, 100)


def test_crd_says_which_configured_size_is_wrong():
    cfg, teacher, student = stacked("CRD", "resnet56", "resnet20")  # both pooled features have 64 values
    with pytest.raises(ConfigError) as err:
        build_distiller(cfg, student, teacher, num_data=100)
    assert str(err.value) == (
        "CRD: config key CRD.FEAT.TEACHER_DIM is 256, but the teacher resnet56's pooled feature has size 64 and "
        "config key CRD.FEAT.STUDENT_DIM is 256, but the student resnet20's pooled feature has size 64; "
        "set CRD.FEAT.TEACHER_DIM 64 and CRD.FEAT.STUDENT_DIM 64")
    cfg, teacher, student = stacked("CRD", "resnet56", "resnet20", "CRD.FEAT.TEACHER_DIM", "64",
                                    "CRD.FEAT.STUDENT_DIM", "64")
    build_distiller(cfg, student, teacher, num_data=100)  # the advice works


def test_a_stacks_extra_parameters_belong_to_the_stacked_method():
    cfg = load_cfg(os.path.join(REPO, "configs", "cifar100", "sld_stack", "sld_reviewkd.yaml"))
    distiller = build_distiller(cfg, create_model("resnet8x4", 100), create_model("resnet32x4", 100))
    total = distiller.get_extra_parameters()
    assert total > 0
    assert extra_parameters_line(cfg, distiller) == f"SLD: 0, REVIEWKD: {total} extra parameters"
    kd = load_cfg(None, ["DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet20", "DISTILLER.STUDENT", "resnet8"])
    plain = build_distiller(kd, create_model("resnet8", 100), create_model("resnet20", 100))
    assert extra_parameters_line(kd, plain) == "KD: 0 extra parameters"


def test_the_readmes_eval_command_works_as_written(tmp_path, monkeypatch, capsys):
    readme = open(os.path.join(REPO, "README.md")).read()
    data_line = re.search(r"^DATA=(\S+)", readme, re.M)
    command = re.search(r"^python tools/eval\.py (.*--root \$DATA.*)$", readme, re.M)
    assert data_line and command, "the README's Train block sets DATA and passes it to tools/eval.py --root"
    argv = command.group(1).replace("$DATA", str(tmp_path / "cifar")).split()
    cifar_folder(tmp_path / "cifar", train_per_class=1, test_per_class=1)
    ckpt = argv[argv.index("-c") + 1]
    monkeypatch.chdir(tmp_path)  # run where no data/ folder exists
    os.makedirs(os.path.dirname(ckpt))
    torch.save({"model": create_model("resnet8x4", 100).state_dict()}, ckpt)
    assert load_tool("eval").main(argv + ["DEVICE", "cpu", "DATASET.NUM_WORKERS", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 100
