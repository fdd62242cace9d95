"""Divergence inside an epoch (issue 26, section 4) and the misleading or silent outcomes of
bad numbers and weights (issue 28): each ends in one true line, before training where it can.

KDSVD's cause is shown on small tensors: over mdistiller's width axis the SVD's backward
divides by differences of squared singular values, so a student map of rank < K + 3 gives a
finite loss and non-finite gradients (mdistiller's port does the same: its forward zeroes
non-finite values, its backward is torch's); the next step's SVD then sees NaN features.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers.tiny import REPO, TinyKD, subprocess_env, tiny_cfg, tiny_trainer
from helpers.tools import common, load_tool
from mdistiller.config import load_cfg
from mdistiller.distillers.feature_losses import kdsvd_loss
from mdistiller.distillers.kdsvd import KDSVD
from mdistiller.errors import NonFiniteLossError
from mdistiller.models import create_model


def one_error_line(err, *parts):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


def run_tool(name, argv, capsys):
    code = load_tool(name).main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ KDSVD: the cause, small tensors
def _width_rank_deficient(stages=2, zero_columns=6):
    """Student maps (2, 4, 6, 8) whose (C*H) x W matrices have only 8 - zero_columns non-zero
    columns, i.e. rank 2 < K + 3 = 4 on the width axis (full rank on the channel axis)."""
    torch.manual_seed(0)
    leaves = [torch.randn(2, 4, 6, 8, requires_grad=True) for _ in range(stages)]
    mask = torch.ones(8)
    mask[:zero_columns] = 0
    teacher = [torch.randn(2, 4, 6, 8) for _ in range(stages)]
    return leaves, [leaf.relu() * mask for leaf in leaves], teacher


def test_width_axis_svd_of_a_rank_deficient_map_gives_finite_loss_and_nan_gradient():
    leaves, student, teacher = _width_rank_deficient()
    loss = kdsvd_loss(student, teacher, 1, "width")  # mdistiller's axis (KDSVD.FAITHFUL True)
    loss.backward()
    assert torch.isfinite(loss)
    assert not all(torch.isfinite(leaf.grad).all() for leaf in leaves)
    leaves, student, teacher = _width_rank_deficient()
    kdsvd_loss(student, teacher, 1, "channels").backward()  # the paper's axis: full rank, finite
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)


@pytest.mark.parametrize("axis", ["width", "channels"])
def test_non_finite_feature_makes_the_term_nan_instead_of_an_svd_error(axis):
    feats = [torch.randn(2, 4, 6, 8) for _ in range(2)]
    broken = [feats[0], feats[1].clone()]
    broken[1][1, 0, 0, 0] = float("nan")
    assert torch.isnan(kdsvd_loss(broken, feats, 1, axis))  # student side
    assert torch.isnan(kdsvd_loss(feats, broken, 1, axis))  # teacher side
    assert torch.isfinite(kdsvd_loss(feats, feats, 1, axis))


# ------------------------------------------------------------------ the trainer's one line
def test_nan_features_inside_epoch_2_name_the_term_iteration_and_committed_epoch(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3)

    def break_student(epoch, iteration):
        if epoch == 2 and iteration == 1:
            with torch.no_grad():
                trainer.runs[0].distiller.student.conv1.weight.fill_(float("nan"))

    trainer = tiny_trainer(cfg, distiller_cls=KDSVD, hooks=[break_student])
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "\n" not in msg
    assert "non-finite loss at epoch 2, iteration 3/4: loss_ce, loss_kd (" in msg, msg
    assert "the last committed epoch 1" in msg and "every term is non-finite, so an earlier update" in msg


class RaisingLinalg(TinyKD):
    """A plug-in style term whose linear algebra sees NaN at epoch 1, iteration 2."""
    calls = 0

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits, losses = super().distill(student_outs, teacher_outs, target, epoch)
        RaisingLinalg.calls += 1
        if RaisingLinalg.calls == 2:
            torch.linalg.svd(torch.full((3, 3), float("nan")))
        return logits, losses


def test_a_linalg_error_on_non_finite_input_is_one_line(tmp_path):
    RaisingLinalg.calls = 0
    with pytest.raises(NonFiniteLossError, match=r"^non-finite values at epoch 1, iteration 2/4: a loss term of "
                                                 r"KD failed \(.*non-finite.*\); training stopped; no epoch had "
                                                 r"been committed"):
        tiny_trainer(tiny_cfg(tmp_path), distiller_cls=RaisingLinalg).fit()


def test_broken_teacher_is_blamed_not_the_learning_rate(tmp_path):
    def break_teacher(epoch, iteration):
        if epoch == 2 and iteration == 0:
            with torch.no_grad():
                trainer.runs[0].distiller.teacher.fc.weight.fill_(float("nan"))

    trainer = tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3), hooks=[break_teacher])
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert "the teacher's weights hold NaN/inf" in str(err.value) and "SOLVER.LR" not in str(err.value)


def test_non_finite_at_the_very_first_step_does_not_advise_a_lower_lr(tmp_path):
    class NaNFirst(TinyKD):
        def distill(self, *args, **kwargs):
            logits, losses = super().distill(*args, **kwargs)
            return logits, dict(losses, loss_kd=losses["loss_kd"] * float("nan"))

    with pytest.raises(NonFiniteLossError) as err:
        tiny_trainer(tiny_cfg(tmp_path), distiller_cls=NaNFirst).fit()
    msg = str(err.value)
    assert "iteration 1/4: loss_kd" in msg and "first step, before any update" in msg and "SOLVER.LR" not in msg


# ------------------------------------------------------------------ real processes, real files
def _overflowing_resnet8(path, classes=3):
    """Finite weights whose activations overflow to inf/NaN (a NaN file is refused at load)."""
    torch.manual_seed(1)
    model = create_model("resnet8", classes, "cifar100")
    state = model.state_dict()
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight"):
        state[key] = state[key] * 1e30
    torch.save({"model": state}, path)
    return str(path)


def test_kdsvd_run_whose_teacher_overflows_stops_in_one_line(folder_data, tmp_path, capsys):
    teacher = _overflowing_resnet8(tmp_path / "teacher.pth")
    code, _, err = run_tool("train", common(folder_data, tmp_path / "out", "kdsvd", "DISTILLER.TYPE", "KDSVD",
                                            "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS", teacher),
                            capsys)
    assert code == 2
    one_error_line(err, "non-finite loss at epoch 1, iteration 1/3: ", "loss_kd", "no epoch had been committed",
                   "first step, before any update")


def test_train_subset_of_one_is_refused_before_training(folder_data, tmp_path, capsys):
    code, _, err = run_tool("train", common(folder_data, tmp_path, "one", "DATASET.TRAIN_SUBSET", "1"), capsys)
    assert code == 2
    one_error_line(err, "the training set has 1 sample(s) (DATASET.TRAIN_SUBSET 1), too few for one batch",
                   "use at least 2 training samples")
    assert not os.path.exists(tmp_path / "cli" / "one" / "worklog.txt")


def test_teacher_weights_folder_names_the_file_inside(folder_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": create_model("resnet8", 3, "cifar100").state_dict()}, run / "student_best")
    code, _, err = run_tool("train", common(folder_data, tmp_path / "out", "t", "DISTILLER.TYPE", "KD",
                                            "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS", str(run)),
                            capsys)
    assert code == 2
    one_error_line(err, f"is a folder; name the checkpoint file inside it, e.g. {run / 'student_best'}")


def _state_with(key, value):
    state = create_model("resnet8", 3, "cifar100").state_dict()
    state[key] = value(state[key])
    return {"model": state}


BAD_WEIGHTS = {
    "nan": (lambda t: t.clone().fill_(float("nan")), "NaN/inf values in conv1.weight"),
    "int32": (lambda t: t.to(torch.int32), "conv1.weight as int32, not floating point"),
    "bool": (lambda t: t > 0, "conv1.weight as bool, not floating point"),
    "complex": (lambda t: t.to(torch.complex64), "conv1.weight as complex64, not floating point"),
    "float": (lambda t: 0.5, "holds a float at conv1.weight, not a tensor"),
}


@pytest.mark.parametrize("kind", sorted(BAD_WEIGHTS))
def test_eval_refuses_weights_that_are_not_finite_floats(folder_data, tmp_path, capsys, kind):
    make, words = BAD_WEIGHTS[kind]
    path = tmp_path / f"{kind}.pth"
    torch.save(_state_with("conv1.weight", make), path)
    code, out, err = run_tool("eval", ["-m", "resnet8", "-c", str(path), "-d", "imagefolder", "--root", folder_data,
                                       "DATASET.NUM_WORKERS", "0", "DEVICE", "cpu", "LOG.QUIET", "True"], capsys)
    assert code == 2 and not out
    one_error_line(err, f"checkpoint {path}", words)


def test_student_init_and_teacher_weights_are_checked_too(folder_data, tmp_path, capsys):
    path = tmp_path / "int.pth"
    torch.save(_state_with("fc.weight", lambda t: t.to(torch.int32)), path)
    for key, extra in (("DISTILLER.STUDENT_WEIGHTS", []), ("DISTILLER.TEACHER_WEIGHTS", ["DISTILLER.TYPE", "KD",
                                                                                          "DISTILLER.TEACHER",
                                                                                          "resnet8"])):
        code, _, err = run_tool("train", common(folder_data, tmp_path / key, "w", key, str(path), *extra), capsys)
        assert code == 2
        one_error_line(err, "fc.weight as int32, not floating point")


def test_eval_json_is_valid_json_when_the_loss_is_nan(folder_data, tmp_path, capsys):
    path = _overflowing_resnet8(tmp_path / "big.pth")
    code, out, _ = run_tool("eval", ["-m", "resnet8", "-c", path, "-d", "imagefolder", "--root", folder_data,
                                     "--json", "DATASET.NUM_WORKERS", "0", "DEVICE", "cpu", "LOG.QUIET", "True"],
                            capsys)
    assert code == 0
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert result["loss"] is None and "not finite" in result["null_reason"]


# ------------------------------------------------------------------ numbers as Python writes them
def test_float_list_keys_take_numbers_written_as_python_writes_them(tmp_path):
    cfg = load_cfg("configs/cifar100/sld/res32x4_res8x4.yaml", ["SLD.TEMPERATURES", "[1e30, 2.0, 1e-3]"])
    assert list(cfg.SLD.TEMPERATURES) == [1e30, 2.0, 1e-3]
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text("DISTILLER:\n  TYPE: SLD\nSLD:\n  TEMPERATURES: [1e30, 4]\nSOLVER:\n  LR: 5e-2\n")
    cfg = load_cfg(str(yaml_file))
    assert cfg.SLD.TEMPERATURES[0] == 1e30 and cfg.SOLVER.LR == 0.05


# ------------------------------------------------------------------ the command, replayed
@pytest.mark.slow
def test_the_s4_replay_on_real_cifar_counts_zero(cifar_root):
    done = subprocess.run([sys.executable, "tools/reliability.py", "--only", "s4", "--cifar", str(cifar_root)],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "code executed 0, files outside run folders touched 0, results lost 0, tracebacks 0" in done.stdout
