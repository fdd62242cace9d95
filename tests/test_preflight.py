"""engine/preflight.py: every input of a run (or of several) is checked before any model or
loader is built, and every problem is reported at once, each once, one `error:` line each."""
import os

import pytest
import torch

from helpers.data import cifar_folder
from helpers.tools import load_tool
from helpers.tiny import REPO
from mdistiller.config import load_cfg
from mdistiller.engine.preflight import InputProblems, check_inputs, input_problems
from mdistiller.errors import CheckpointError, DataError

train_tool = load_tool("train")
SLD_CFG = os.path.join(REPO, "configs", "cifar100", "sld", "res32x4_res8x4.yaml")


def error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), err
    return lines


def test_the_readmes_sld_config_reports_missing_data_and_teacher_in_one_try(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data/, no download_ckpts/
    assert train_tool.main(["--cfg", SLD_CFG, "--quiet"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: CIFAR-100 not found under DATASET.ROOT=data")
    assert lines[1].startswith("error: teacher checkpoint for resnet32x4 not found at "
                               f"{tmp_path}/download_ckpts/cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth")
    assert sorted(os.listdir(tmp_path)) == []  # nothing created: no output folder, no cache


def test_every_bad_input_is_one_line_each_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04 not a whole zip")
    (tmp_path / "out").write_text("a file where the output folder should go")
    argv = ["--quiet", "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet_nope",
            "DISTILLER.TEACHER_WEIGHTS", "truncated.pth", "DISTILLER.STUDENT_WEIGHTS", "missing.pth",
            "DATASET.ROOT", "nowhere", "LOG.PREFIX", "out", "KD.TEMPERATURE", "-1"]
    assert train_tool.main(argv) == 2
    lines = error_lines(capsys)
    expected = ["config key KD.TEMPERATURE is -1.0", "config key DISTILLER.STUDENT is 'resnet_nope'",
                "CIFAR-100 not found under DATASET.ROOT=nowhere", "checkpoint truncated.pth could not be read",
                "config key DISTILLER.STUDENT_WEIGHTS is 'missing.pth', which does not exist",
                f"cannot write out/distill/default: {tmp_path}/out is a file"]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected):
        assert line.startswith("error: " + start), (start, line)
    assert "point DISTILLER.TEACHER_WEIGHTS to an intact teacher checkpoint" in lines[3]


def test_one_problem_keeps_its_own_error_class_and_several_are_input_problems(tmp_path):
    missing = load_cfg(None, ["DATASET.ROOT", str(tmp_path / "none"), "LOG.PREFIX", str(tmp_path)])
    with pytest.raises(DataError, match="CIFAR-100 not found"):
        check_inputs([missing])
    both = load_cfg(None, ["DATASET.ROOT", str(tmp_path / "none"), "LOG.PREFIX", str(tmp_path),
                           "DISTILLER.STUDENT_WEIGHTS", str(tmp_path / "w.pth")])
    with pytest.raises(InputProblems) as err:
        check_inputs([both])
    assert len(err.value.problems) == 2 and str(err.value).count("\n") == 1


def test_a_matrix_reports_a_shared_missing_teacher_once(tmp_path):
    root = tmp_path / "cifar"
    cifar_folder(root, train_per_class=1, test_per_class=1)
    cfgs = [load_cfg(None, ["DISTILLER.TYPE", method, "DISTILLER.TEACHER", "resnet56", "DISTILLER.STUDENT", "resnet20",
                            "DATASET.ROOT", str(root), "LOG.PREFIX", str(tmp_path / "out"),
                            "EXPERIMENT.NAME", method]) for method in ("KD", "DKD", "SLD")]
    problems = input_problems(cfgs)
    assert len(problems) == 1 and isinstance(problems[0], CheckpointError)
    assert str(problems[0]).startswith("teacher checkpoint for resnet56 not found")


def test_good_inputs_pass_and_a_refused_run_folder_is_one_of_the_problems(data_and_teacher, tmp_path):
    root, teacher = data_and_teacher
    opts = ["DATASET.TYPE", "imagefolder", "DATASET.ROOT", root, "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet8",
            "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER_WEIGHTS", teacher, "LOG.PREFIX", str(tmp_path)]
    cfg = load_cfg(None, opts)
    assert input_problems([cfg]) == []
    folder = tmp_path / "distill" / "default"
    folder.mkdir(parents=True)
    torch.save({"epoch": 1}, folder / "latest")
    bad_root = load_cfg(None, opts + ["DATASET.ROOT", str(tmp_path / "none")])
    found = [str(p) for p in input_problems([bad_root])]
    assert len(found) == 2 and "already holds checkpoints" in found[0] and "not found under" in found[1]


def test_paired_training_checks_every_run_before_training(tmp_path):
    from mdistiller.engine.build import train_paired

    opts = ["DATASET.ROOT", str(tmp_path / "none"), "DISTILLER.TEACHER", "resnet56", "DISTILLER.STUDENT", "resnet8",
            "LOG.PREFIX", str(tmp_path / "out"), "DEVICE", "cpu"]
    cfgs = [load_cfg(None, opts + ["DISTILLER.TYPE", m, "EXPERIMENT.NAME", m]) for m in ("KD", "DKD")]
    with pytest.raises(InputProblems) as err:
        train_paired(cfgs)
    assert [p.split(" ")[0] for p in err.value.problems] == ["CIFAR-100", "teacher"]
    assert not (tmp_path / "out").exists()
