"""The training loop end to end on tiny models and data (CPU): outputs, formats, guard rails."""
import errno
import glob
import os
import re
import tempfile

import pytest
import torch
from torch.utils.data import DataLoader

from mdistiller.config import load_cfg
from mdistiller.engine import trainer as trainer_module
from mdistiller.engine.checkpoint import load_checkpoint, load_weights
from mdistiller.errors import CheckpointError, OutputError
from helpers.outputs import read_scalars, worklog_blocks
from helpers.tiny import TinyData, TinyKD, TinyNet, tiny_cfg, tiny_loaders, tiny_trainer

OUTPUTS = ["best", "config.yaml", "epoch_1", "epoch_2", "latest", "student_1", "student_2", "student_best",
           "student_latest", "train.events", "worklog.txt"]


def run_dir(cfg):
    return os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME)


def test_full_run_writes_every_output(tmp_path):
    cfg = tiny_cfg(tmp_path, "LOG.TENSORBOARD_FREQ", 2)
    best = tiny_trainer(cfg).fit()[0]
    folder = run_dir(cfg)
    assert sorted(os.listdir(folder)) == OUTPUTS

    blocks, text = worklog_blocks(os.path.join(folder, "worklog.txt"))
    assert [b[0] for b in blocks] == [1, 2] and text.endswith(f"best_acc\t{best:.2f}")
    assert list(blocks[0][2]) == ["train_acc", "train_loss", "test_acc", "test_acc_top5", "test_loss"]
    assert blocks[0][1] == 0.05 and all(re.fullmatch(r"-?\d+\.\d\d", v) for v in blocks[0][2].values())
    assert max(float(b[2]["test_acc"]) for b in blocks) == pytest.approx(best, abs=0.005)

    latest = load_checkpoint(os.path.join(folder, "latest"))  # the safe loader accepts our files
    assert {"epoch", "model", "optimizer", "best_acc", "scaler", "rng", "world_size"} <= set(latest)
    assert latest["epoch"] == 2 and latest["best_acc"] == best
    assert any(k.startswith("student.") for k in latest["model"]) and any(k.startswith("teacher.") for k in latest["model"])
    student = load_checkpoint(os.path.join(folder, "student_latest"))
    assert set(student) == {"model"} and not any(k.startswith("student.") for k in student["model"])
    assert load_checkpoint(os.path.join(folder, "epoch_1"))["epoch"] == 1
    # a student file loads strictly as a teacher / into a fresh network
    load_weights(TinyNet(), os.path.join(folder, "student_best"))

    saved = load_cfg(os.path.join(folder, "config.yaml"))
    assert saved == cfg

    scalars = read_scalars(os.path.join(folder, "train.events"))
    for tag in ("train_acc", "train_loss", "test_acc", "test_acc_top5", "test_loss", "lr", "throughput",
                "loss_terms/loss_ce", "loss_terms/loss_kd"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    assert [step for step, _ in scalars["iter/loss"]] == [2, 4, 6, 8]  # every 2 of 4 iterations per epoch
    assert {"iter/lr", "iter/throughput", "iter/loss_kd", "iter/train_acc"} <= set(scalars)


def test_best_follows_mdistiller_rule(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3, "LOG.SAVE_CHECKPOINT_FREQ", 2)
    tiny_trainer(cfg).fit()
    folder = run_dir(cfg)
    blocks, _ = worklog_blocks(os.path.join(folder, "worklog.txt"))
    accs = [float(b[2]["test_acc"]) for b in blocks]
    best_epoch = max(e for e, acc in zip((1, 2, 3), accs) if acc == max(accs))  # ties refresh `best`
    assert load_checkpoint(os.path.join(folder, "best"))["epoch"] == best_epoch
    assert sorted(n for n in os.listdir(folder) if n.startswith(("epoch_", "student_"))) == [
        "epoch_2", "student_2", "student_best", "student_latest"]


def test_two_views_tuple_batches_and_lr_per_epoch(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.TRAINER", "ours", "SOLVER.LR_DECAY_STAGES", "[1]", "SOLVER.LR_DECAY_RATE", 0.5)
    seen = []
    trainer = tiny_trainer(cfg, views=2, hooks=[lambda e, i: seen.append((e, trainer.runs[0].optimizer.param_groups[0]["lr"]))])
    trainer.fit()
    assert sorted(set(seen)) == [(1, 0.05), (2, 0.025)]

    class TupleData(TinyData):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return item["image"], item["target"], item["index"]

    cfg = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "tuples")
    _, test_loader = tiny_loaders(cfg)
    trainer = tiny_trainer(cfg, loaders=(DataLoader(TupleData(), 16, shuffle=True), test_loader))
    assert trainer.fit()[0] >= 0


def test_in_process_resume_is_exact(tmp_path):
    straight = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3, "EXPERIMENT.NAME", "straight")
    tiny_trainer(straight).fit()
    first = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1, "EXPERIMENT.NAME", "resumed")
    tiny_trainer(first).fit()
    torch.manual_seed(123)  # whatever happens in between must not matter
    rest = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3, "EXPERIMENT.NAME", "resumed")
    tiny_trainer(rest).fit(resume=True)
    a = load_checkpoint(os.path.join(run_dir(straight), "latest"))
    b = load_checkpoint(os.path.join(run_dir(rest), "latest"))
    assert a["epoch"] == b["epoch"] == 3 and a["best_acc"] == b["best_acc"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    worklog_a = open(os.path.join(run_dir(straight), "worklog.txt")).read()
    worklog_b = open(os.path.join(run_dir(rest), "worklog.txt")).read()
    assert re.sub(r"train_loss.*|test_loss.*", "", worklog_a) == re.sub(r"train_loss.*|test_loss.*", "", worklog_b)
    assert worklog_a == worklog_b


def test_refuses_to_overwrite_and_overwrites_on_request(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)
    tiny_trainer(cfg).fit()
    with pytest.raises(CheckpointError, match=r"already holds checkpoints .*--resume.*--overwrite"):
        tiny_trainer(cfg).fit()
    tiny_trainer(cfg).fit(overwrite=True)
    blocks, _ = worklog_blocks(os.path.join(run_dir(cfg), "worklog.txt"))
    assert [b[0] for b in blocks] == [1]  # the old log went with the old checkpoints
    other = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "never")
    with pytest.raises(CheckpointError, match="cannot resume: .*latest does not exist"):
        tiny_trainer(other).fit(resume=True)


class NaNAtEpoch2(TinyKD):
    calls = 0

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits, losses = super().distill(student_outs, teacher_outs, target, epoch)
        NaNAtEpoch2.calls += 1
        if epoch == 2 and NaNAtEpoch2.calls >= 7:  # 4 iterations per epoch: epoch 2, iteration 3
            losses["loss_kd"] = losses["loss_kd"] * float("nan")
        return logits, losses


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3)
    NaNAtEpoch2.calls = 0
    with pytest.raises(trainer_module.NonFiniteLossError) as err:
        tiny_trainer(cfg, distiller_cls=NaNAtEpoch2).fit()
    msg = str(err.value)
    assert re.search(r"epoch 2, iteration 3/4: loss_kd \(loss_ce=\d\.\d+, loss_kd=nan\)", msg), msg
    assert "lower SOLVER.LR" in msg
    assert "\n" not in msg
    latest = load_checkpoint(os.path.join(run_dir(cfg), "latest"))
    assert latest["epoch"] == 1 and all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())
    assert not os.path.exists(os.path.join(run_dir(cfg), "epoch_2"))


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)
    tiny_trainer(cfg).fit()
    real_save, real_mkstemp, temp_paths = torch.save, tempfile.mkstemp, []

    def recording_mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        temp_paths.append(path)
        return fd, path

    def failing_save(obj, f, *args, **kwargs):
        if os.path.basename(temp_paths[-1]).startswith(".tmp_latest"):
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OutputError, match=r"cannot write .*latest: the disk is full"):
        tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 2)).fit(resume=True)
    monkeypatch.setattr(torch, "save", real_save)
    folder = run_dir(cfg)
    assert load_checkpoint(os.path.join(folder, "latest"))["epoch"] == 1
    assert not glob.glob(os.path.join(folder, ".tmp_*"))
    tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 2)).fit(resume=True)  # and the run goes on
    assert load_checkpoint(os.path.join(folder, "latest"))["epoch"] == 2
    blocks, _ = worklog_blocks(os.path.join(folder, "worklog.txt"))
    assert [b[0] for b in blocks] == [1, 2]  # epoch 2's block from the crashed attempt was trimmed


def test_out_of_memory_gives_a_hint(tmp_path):
    def oom(runs, batch, epoch, iteration):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer = tiny_trainer(tiny_cfg(tmp_path))
    trainer.step = oom
    with pytest.raises(trainer_module.OutOfMemory, match=r"epoch 1, iteration 1/4 \(SOLVER.BATCH_SIZE 16, "
                                                         r"SOLVER.AMP none\): lower SOLVER.BATCH_SIZE.*bf16"):
        trainer.fit()


@pytest.mark.parametrize("opts", [("SOLVER.AMP", "bf16"), ("SOLVER.AMP", "fp16"), ("SOLVER.CHANNELS_LAST", True)])
def test_amp_and_channels_last_run_on_cpu(tmp_path, opts):
    cfg = tiny_cfg(tmp_path, *opts)
    trainer = tiny_trainer(cfg)
    trainer.fit()
    run = trainer.runs[0]
    assert run.scaler.is_enabled() == (cfg.SOLVER.AMP == "fp16")
    latest = load_checkpoint(os.path.join(run_dir(cfg), "latest"))
    assert all(torch.isfinite(v).all() for v in latest["model"].values() if v.is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in latest["model"].values())  # weights stay fp32


def test_custom_update_for_an_update_rule(tmp_path, monkeypatch):
    calls = []

    def update(run, losses):
        calls.append(sorted(losses))
        return trainer_module.backward_step(run, losses)

    monkeypatch.setitem(trainer_module.TRAINER_UPDATES, "sgd", update)
    tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)).fit()
    assert calls == [["loss_ce", "loss_kd"]] * 4


def test_dot_trainer_uses_its_optimizer_and_two_pass_update(tmp_path):
    trainer = tiny_trainer(tiny_cfg(tmp_path, "SOLVER.TRAINER", "dot", "SOLVER.EPOCHS", 1))
    trainer.fit()
    run = trainer.runs[0]
    assert type(run.optimizer).__name__ == "DistillationOrientedTrainer"
    assert run.update is trainer_module.TRAINER_UPDATES["dot"]
    state = next(iter(run.optimizer.state.values()))
    assert {"momentum_buffer", "momentum_kd_buffer"} <= set(state)  # both losses reached the weights


def test_quiet_mode_prints_summaries_only(tmp_path, capsys):
    tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)).fit()
    out, err = capsys.readouterr()
    assert re.search(r"^epoch 1/1 \| lr 0.05 \| train loss \d+\.\d{4} acc \d+\.\d\d \| test loss .* img/s \| .*s$",
                     out, re.M)
    assert "best top-1" in out and "epoch 1/1" not in err
    tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1, "LOG.QUIET", False, "EXPERIMENT.NAME", "loud")).fit()
    _, err = capsys.readouterr()
    assert "epoch 1/1" in err and "eval" in err  # tqdm bars for training and evaluation
