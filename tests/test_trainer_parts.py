"""Unit tests of the trainer's parts: LR schedule, optimizers, metrics, evaluation, device,
seeding, worklog, run folder, views."""
import math
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mdistiller.distillers import distiller_dict
from mdistiller.distillers.base import Distiller
from mdistiller.engine import optim
from mdistiller.distillers.inputs import declared_views, input_views, needs_index
from mdistiller.engine.checkpoint import extract_student_state_dict, save_atomic
from mdistiller.engine.device import autocast, grad_scaler, resolve_device, to_device
from mdistiller.engine.dot import DistillationOrientedTrainer
from mdistiller.engine.evaluation import evaluate
from mdistiller.engine.metrics import RunningSums, correct_counts
from mdistiller.engine.run_folder import RunFiles, check_start, make_ready
from mdistiller.engine.seeding import capture_rng_state, restore_rng_state, seed_everything
from mdistiller.engine.worklog import append_best, append_epoch, format_epoch_block, trim_worklog
from mdistiller.errors import ConfigError
from helpers.tiny import TinyNet, tiny_cfg


# ---------------------------------------------------------------- LR schedule
def test_step_schedule_is_mdistillers(tmp_path):
    # SLD.md: LR for epoch e is LR * 0.1^(number of stages < e); stages 150/180/210.
    cfg = tiny_cfg(tmp_path, "SOLVER.LR", 0.025, "SOLVER.LR_DECAY_STAGES", "[150, 180, 210]", "SOLVER.EPOCHS", 240)
    expected = {1: 0.025, 150: 0.025, 151: 0.0025, 180: 0.0025, 181: 0.00025, 210: 0.00025, 211: 0.000025, 240: 0.000025}
    for epoch, lr in expected.items():
        assert optim.lr_at(cfg, epoch, 7, 10) == pytest.approx(lr, rel=1e-12)


def test_cosine_and_warmup(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.LR", 0.1, "SOLVER.LR_SCHEDULER", "cosine", "SOLVER.EPOCHS", 10)
    assert optim.lr_at(cfg, 1, 0, 4) == pytest.approx(0.1)
    assert optim.lr_at(cfg, 6, 0, 4) == pytest.approx(0.05)  # halfway: 5 of 10 epochs done
    assert optim.lr_at(cfg, 8, 2, 4) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7.5 / 10)))
    warm = tiny_cfg(tmp_path, "SOLVER.LR", 0.1, "SOLVER.WARMUP_EPOCHS", 2, "SOLVER.EPOCHS", 10)
    # 4 iterations per epoch -> 8 warm-up steps: step k (0-based) uses (k+1)/8 of the LR
    assert optim.lr_at(warm, 1, 0, 4) == pytest.approx(0.1 / 8)
    assert optim.lr_at(warm, 2, 1, 4) == pytest.approx(0.1 * 6 / 8)
    assert optim.lr_at(warm, 2, 3, 4) == pytest.approx(0.1)
    assert optim.lr_at(warm, 3, 0, 4) == pytest.approx(0.1)
    both = tiny_cfg(tmp_path, "SOLVER.LR", 0.1, "SOLVER.WARMUP_EPOCHS", 2, "SOLVER.EPOCHS", 10,
                    "SOLVER.LR_SCHEDULER", "cosine")
    assert optim.lr_at(both, 3, 0, 4) == pytest.approx(0.1)  # cosine starts after warm-up
    assert optim.lr_at(both, 7, 0, 4) == pytest.approx(0.05)  # (6 - 2) / (10 - 2) = halfway


# ---------------------------------------------------------------- optimizers
def test_optimizers_follow_the_config(tmp_path):
    params = list(TinyNet().parameters())
    sgd = optim.build_optimizer(tiny_cfg(tmp_path, "SOLVER.MOMENTUM", 0.8, "SOLVER.WEIGHT_DECAY", 5e-4,
                                         "SOLVER.NESTEROV", True), params)
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.05, 0.8, 5e-4, True)
    assert type(optim.build_optimizer(tiny_cfg(tmp_path, "SOLVER.TYPE", "Adam"), params)) is torch.optim.Adam
    assert type(optim.build_optimizer(tiny_cfg(tmp_path, "SOLVER.TYPE", "AdamW"), params)) is torch.optim.AdamW


def test_frozen_parameters_are_left_out_and_trainer_optimizers_take_over(tmp_path, monkeypatch):
    net = TinyNet()
    net.fc.requires_grad_(False)
    opt = optim.build_optimizer(tiny_cfg(tmp_path), net.parameters())
    assert len(opt.param_groups[0]["params"]) == len(list(net.parameters())) - 2
    with pytest.raises(ConfigError, match="no learnable parameters"):
        optim.build_optimizer(tiny_cfg(tmp_path), [])
    for opts in (["SOLVER.TRAINER", "dot"], ["SOLVER.UPDATE", "dot"]):
        assert isinstance(optim.build_optimizer(tiny_cfg(tmp_path, *opts), net.parameters()), DistillationOrientedTrainer)
    made = []
    monkeypatch.setitem(optim.TRAINER_OPTIMIZERS, "sgd", lambda cfg, p: made.append(len(p)) or "own")
    assert optim.build_optimizer(tiny_cfg(tmp_path), net.parameters()) == "own"
    assert made == [len(list(net.parameters())) - 2]


# ---------------------------------------------------------------- metrics / evaluation
def test_correct_counts_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.5], [0.2, 0.3, 0.4]])
    target = torch.tensor([1, 2, 0])
    # sample 0: top-1 hit; sample 1: target 2 is 2nd; sample 2: target 0 is 3rd
    assert correct_counts(logits, target, topk=(1, 2, 5)).tolist() == [1, 2, 3]  # k clipped at 3 classes


def test_running_sums_weight_by_samples():
    sums = RunningSums(torch.device("cpu"))
    sums.add("loss", torch.tensor(2.0), 4)
    sums.add("loss", torch.tensor(5.0), 2)
    sums.add_sum("correct", torch.tensor(3))
    sums.add_samples(6)
    means, count = sums.read()
    assert count == 6
    assert means["loss"] == pytest.approx((2 * 4 + 5 * 2) / 6)
    assert means["correct"] == pytest.approx(0.5)


def test_evaluate_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -2.0, -3.0]] * 4)
    target = torch.tensor([0, 1, 5, 4])  # ranks 1, 2, 6, 5 -> top1 1/4, top5 3/4
    loader = DataLoader(TensorDataset(torch.arange(4), target), batch_size=3)
    out = evaluate(lambda idx: logits[idx], loader, torch.device("cpu"))
    ce = torch.nn.functional.cross_entropy(logits, target).item()
    assert (out["top1"], out["top5"], out["count"]) == (25.0, 75.0, 4)
    assert out["loss"] == pytest.approx(ce)


# ---------------------------------------------------------------- device
def test_device_choice_and_moves():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="DEVICE is 'cuda:1' but CUDA is not available"):
            resolve_device("cuda:1")
    batch = {"image": torch.randn(2, 3, 4, 4), "target": torch.tensor([1, 0]), "index": [0, 1]}
    moved = to_device(batch, torch.device("cpu"), channels_last=True)
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert moved["target"].is_contiguous() and moved["index"] == [0, 1]


def test_autocast_and_scaler_per_amp_mode():
    cpu = torch.device("cpu")
    with autocast(cpu, "bf16"):
        assert torch.mm(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "none"):
        assert torch.mm(torch.randn(2, 2), torch.randn(2, 2)).dtype == torch.float32
    assert grad_scaler(cpu, "fp16").is_enabled() and not grad_scaler(cpu, "bf16").is_enabled()


# ---------------------------------------------------------------- seeding
def test_rng_snapshot_restores_every_generator():
    seed_everything(3)
    loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=5, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
    state = capture_rng_state(loader)

    def draw():
        return (random.random(), float(np.random.rand()), torch.rand(()).item(),
                [b[0].tolist() for b in loader])

    first = draw()
    restore_rng_state(state, loader)
    assert draw() == first


# ---------------------------------------------------------------- worklog / run folder
def test_worklog_block_is_mdistillers_text(tmp_path):
    block = format_epoch_block(3, 0.025, {"train_acc": 11.534, "train_loss": 48.516, "test_acc": 18.29})
    assert block == ("-------------------------\nepoch: 3\nlr: 0.03\ntrain_acc: 11.53\ntrain_loss: 48.52\n"
                     "test_acc: 18.29\n-------------------------\n")
    path = str(tmp_path / "worklog.txt")
    for e in (1, 2, 3):
        append_epoch(path, e, 0.1, {"test_acc": e})
    append_best(path, 3)
    assert open(path).read().endswith("-------------------------\nbest_acc\t3.00")
    trim_worklog(path, 2)  # resume after epoch 2: epoch 3's block and the best line go
    text = open(path).read()
    assert text == format_epoch_block(1, 0.1, {"test_acc": 1}) + format_epoch_block(2, 0.1, {"test_acc": 2})


def test_run_folder_start_rules(tmp_path):
    files = RunFiles(tmp_path / "run")
    assert check_start(files, resume=False, overwrite=False) is None
    assert "cannot resume" in check_start(files, resume=True, overwrite=False)
    make_ready(files, overwrite=False)
    for name in ("latest", "epoch_40", "student_best", "notes.txt", ".tmp_latestabc"):
        open(files.path(name), "w").close()
    assert files.checkpoints() == ["epoch_40", "latest", "student_best"]
    msg = check_start(files, resume=False, overwrite=False)
    assert "already holds checkpoints (epoch_40, latest, student_best)" in msg and "--overwrite" in msg
    assert check_start(files, resume=True, overwrite=False) is None
    assert "contradict" in check_start(files, resume=True, overwrite=True)
    assert make_ready(files, overwrite=True) == files.path(os.path.join("replaced", "1"))
    assert os.listdir(files.folder) == ["replaced"]  # everything moves (a killed write's temp file is dropped)
    assert sorted(os.listdir(files.path("replaced/1"))) == ["epoch_40", "latest", "notes.txt", "student_best"]


def test_atomic_save_gives_normal_file_permissions(tmp_path):
    save_atomic({"x": torch.ones(1)}, tmp_path / "latest")
    open(tmp_path / "plain", "w").close()
    mode = os.stat(tmp_path / "latest").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain").st_mode & 0o777 != 0o600  # what open() gives, not mkstemp's 0600
    os.remove(tmp_path / "plain")
    assert os.listdir(tmp_path) == ["latest"]


def test_student_weights_from_any_checkpoint_kind():
    sd = {"conv.weight": torch.ones(1)}
    assert extract_student_state_dict({"model": sd}) == sd  # student / teacher file
    full = {"model": {"student.conv.weight": torch.ones(1), "teacher.conv.weight": torch.zeros(1)}, "epoch": 3}
    assert list(extract_student_state_dict(full)) == ["conv.weight"]
    dp = {"model": {"module.student.conv.weight": torch.ones(1), "module.teacher.x": torch.zeros(1)}}
    assert list(extract_student_state_dict(dp)) == ["conv.weight"]  # mdistiller's DataParallel files


# ---------------------------------------------------------------- views and indices
class _TwoViewOnly(Distiller):
    views = (2,)


class _OneView(Distiller):
    pass


class _Plugin(Distiller):  # mdistiller style: overrides forward_train, declares nothing
    def forward_train(self, image_weak=None, image_strong=None, target=None, **kwargs):
        raise NotImplementedError


class _Indexed(Distiller):
    needs_index = True


@pytest.mark.parametrize("cls, opts, views", [
    (_TwoViewOnly, ["SOLVER.TRAINER", "base"], 2), (_TwoViewOnly, ["SOLVER.TRAINER", "ours"], 2),
    (_OneView, ["SOLVER.TRAINER", "base"], 1), (_Plugin, ["SOLVER.TRAINER", "ours"], 2),
    (_Plugin, ["SOLVER.TRAINER", "base"], 1), (_Plugin, ["SOLVER.TRAINER", "crd"], 1),
    (_TwoViewOnly, [], 2), (_OneView, [], 1), (_Plugin, [], 1), (_Plugin, ["DATASET.VIEWS", 2], 2),
    (_TwoViewOnly, ["DATASET.VIEWS", 2], 2), (_OneView, ["DATASET.VIEWS", 1], 1),
])
def test_views_from_config_and_distiller(tmp_path, monkeypatch, cls, opts, views):
    monkeypatch.setitem(distiller_dict, "TMP", cls)
    assert input_views(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP", *opts)) == views


def test_views_mismatch_and_indices(tmp_path, monkeypatch):
    assert declared_views(_Plugin) is None and declared_views(_OneView) == (1,)
    monkeypatch.setitem(distiller_dict, "TMP", _OneView)
    for opts in (["SOLVER.TRAINER", "ours"], ["DATASET.VIEWS", 2]):
        with pytest.raises(ConfigError, match=r"^config key DATASET.VIEWS is 2 \(SOLVER.TRAINER ours sets 2\) but "
                                              r"distiller TMP takes 1 view\(s\) only; set DATASET.VIEWS auto"):
            input_views(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP", *opts))
    assert not needs_index(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP"))
    assert needs_index(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP", "SOLVER.TRAINER", "crd"))
    assert needs_index(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP", "DATASET.INDICES", True))
    monkeypatch.setitem(distiller_dict, "TMP", _Indexed)
    assert needs_index(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP"))
    with pytest.raises(ConfigError, match="^config key DATASET.INDICES is False but distiller TMP needs sample "
                                          "indices; set DATASET.INDICES auto$"):
        needs_index(tiny_cfg(tmp_path, "DISTILLER.TYPE", "TMP", "DATASET.INDICES", False))
