"""Paired training (engine/paired.py) on tiny models and data: one teacher pass per batch, and
every student ends bit-identical to the solo run that sees the same data stream; divergence
stops one student only; resume restores every student."""
import os

import pytest
import torch
import torch.nn.functional as F

from mdistiller.distillers.base import Distiller
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.paired import SharedTeacherStep, check_group, shares_teacher
from mdistiller.engine.trainer import NonFiniteLossError, StudentRun, Trainer
from mdistiller.errors import ConfigError
from helpers.tiny import TinyKD, TinyNet, folder, paired_trainer, tiny_cfg, tiny_trainer


class TinyCE(TinyKD):
    """A second method: cross-entropy on the first view plus a KL at T=4 on every view."""

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        kd = sum(F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
                 for (s, _), (t, _) in zip(student_outs, teacher_outs))
        return student_outs[0][0], {"loss_ce": F.cross_entropy(student_outs[0][0], target), "loss_kd": kd}


class WeakTeacherOnly(TinyKD):
    """Like KD/DKD: the teacher (and student) see the weak view only, whatever the batch carries."""

    shapes = []

    def teacher_views(self, n):
        return (0,)

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        WeakTeacherOnly.shapes.append((len(student_outs), len(teacher_outs), teacher_outs[0][0].shape[0]))
        return super().distill(student_outs, teacher_outs, target, epoch)


class PlugIn(Distiller):
    """An mdistiller-style plug-in: overrides forward_train and runs its teacher itself."""

    def __init__(self, student, teacher, cfg=None):
        super().__init__(student, teacher)

    def forward_train(self, image=None, target=None, epoch=1, **kwargs):
        logits, _ = self.student(image)
        with torch.no_grad():
            teacher_logits, _ = self.teacher(image)
        return logits, {"loss_ce": F.cross_entropy(logits, target), "loss_kd": F.mse_loss(logits, teacher_logits)}


class NaNAtEpoch2(TinyKD):
    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits, losses = super().distill(student_outs, teacher_outs, target, epoch)
        if epoch == 2:
            losses["loss_kd"] = losses["loss_kd"] * float("nan")
        return logits, losses


def count_teacher_calls(trainer):
    calls = []
    teacher = trainer.runs[0].distiller.teacher
    teacher.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def assert_same_run(a, b):
    """Two run folders hold bit-identical final weights, optimizer state and logs."""
    sa, sb = (load_checkpoint(os.path.join(f, "latest")) for f in (a, b))
    assert sa["epoch"] == sb["epoch"] and sa["best_acc"] == sb["best_acc"]
    assert sa["model"].keys() == sb["model"].keys()
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for index, state in sa["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], sb["optimizer"]["state"][index]["momentum_buffer"])
    assert open(os.path.join(a, "worklog.txt")).read() == open(os.path.join(b, "worklog.txt")).read()


@pytest.mark.parametrize("views", [1, 2])
def test_one_paired_run_equals_the_solo_run(tmp_path, views):
    opts = ["SOLVER.TRAINER", "ours"] if views == 2 else []
    solo = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "solo", *opts)
    tiny_trainer(solo, views=views).fit()
    paired = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "paired", *opts)
    trainer = paired_trainer([paired], [TinyKD], [views])
    calls = count_teacher_calls(trainer)
    assert trainer.fit()[0] >= 0
    assert_same_run(folder(solo), folder(paired))
    assert calls == [16] * views * 8  # one teacher pass per step, a forward per view (CPU: TEACHER_CHUNK 64)


def test_two_students_equal_their_solo_runs_with_one_teacher_pass(tmp_path):
    # different methods and per-run LR schedules; one-view batches
    a_opts = ["EXPERIMENT.NAME", "a"]
    b_opts = ["EXPERIMENT.NAME", "b", "SOLVER.LR", 0.2, "SOLVER.LR_DECAY_STAGES", "[1]", "SOLVER.LR_DECAY_RATE", 0.5]
    for opts, cls in ((a_opts, TinyKD), (b_opts, TinyCE)):
        cfg = tiny_cfg(tmp_path / "solo", *opts)
        tiny_trainer(cfg, distiller_cls=cls).fit()
    cfgs = [tiny_cfg(tmp_path / "paired", *opts) for opts in (a_opts, b_opts)]
    trainer = paired_trainer(cfgs, [TinyKD, TinyCE])
    calls = count_teacher_calls(trainer)
    trainer.fit()
    for name in ("a", "b"):
        assert_same_run(os.path.join(tmp_path, "solo", "p", name), os.path.join(tmp_path, "paired", "p", name))
    assert calls == [16] * 8  # one teacher pass per step for both students
    assert [run.optimizer.param_groups[0]["lr"] for run in trainer.runs] == [0.05, 0.1]  # b's own decay


def test_views_union_gives_one_view_runs_the_weak_view(tmp_path):
    two = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "two", "SOLVER.TRAINER", "ours", "SOLVER.EPOCHS", 1)
    one = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "one", "SOLVER.EPOCHS", 1)
    weak = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "weak", "SOLVER.TRAINER", "ours", "SOLVER.EPOCHS", 1)
    WeakTeacherOnly.shapes = []
    trainer = paired_trainer([one, two, weak], [WeakTeacherOnly, TinyKD, WeakTeacherOnly], [1, 2, 2])
    calls = count_teacher_calls(trainer)
    trainer.fit()
    # the one-view run gets [weak]; the two-view run whose teacher needs the weak view only gets its
    # slice of the single teacher pass over both views
    assert set(WeakTeacherOnly.shapes) == {(1, 1, 16), (2, 1, 16)}
    assert calls == [16, 16] * 4  # CPU: a forward per view (TEACHER_CHUNK 64)


def test_plug_in_runs_its_own_forward_on_its_solo_batch(tmp_path):
    solo = tiny_cfg(tmp_path / "solo", "EXPERIMENT.NAME", "plugin")
    tiny_trainer(solo, distiller_cls=PlugIn).fit()
    cfgs = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", "plugin"),
            tiny_cfg(tmp_path, "EXPERIMENT.NAME", "two", "SOLVER.TRAINER", "ours")]
    paired_trainer(cfgs, [PlugIn, TinyKD], [1, 2]).fit()  # two-view batches; the plug-in gets `image`
    solo_state = load_checkpoint(os.path.join(folder(solo), "latest"))
    paired_state = load_checkpoint(os.path.join(folder(cfgs[0]), "latest"))
    assert solo_state["epoch"] == paired_state["epoch"] == 2  # trained; not the same stream (two-view loader)
    assert not torch.equal(solo_state["model"]["student.fc.weight"], paired_state["model"]["student.fc.weight"])
    paired_trainer([tiny_cfg(tmp_path / "one", "EXPERIMENT.NAME", "plugin")], [PlugIn]).fit()
    assert_same_run(folder(solo), os.path.join(tmp_path, "one", "p", "plugin"))


class OwnTeacherPass(TinyKD):
    """Overrides run_teacher without declaring teacher_views: the step cannot know what it feeds."""

    def run_teacher(self, views):
        return super().run_teacher(views)


def test_who_shares_the_teacher_pass():
    assert shares_teacher(TinyKD(TinyNet(), TinyNet())) and shares_teacher(WeakTeacherOnly(TinyNet(), TinyNet()))
    assert not shares_teacher(PlugIn(TinyNet(), TinyNet())) and not shares_teacher(OwnTeacherPass(TinyNet(), TinyNet()))


def test_a_distiller_with_its_own_teacher_pass_runs_it_in_a_group(tmp_path):
    solo = tiny_cfg(tmp_path / "solo", "EXPERIMENT.NAME", "own")
    tiny_trainer(solo, distiller_cls=OwnTeacherPass).fit()
    cfgs = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", name) for name in ("own", "kd")]
    trainer = paired_trainer(cfgs, [OwnTeacherPass, TinyKD])
    calls = count_teacher_calls(trainer)
    trainer.fit()
    assert calls == [16, 16] * 8  # the shared pass for TinyKD, then OwnTeacherPass's own
    assert_same_run(folder(solo), folder(cfgs[0]))


def test_forward_train_takes_the_teacher_outputs_of_its_declared_views():
    torch.manual_seed(0)
    distiller = WeakTeacherOnly(TinyNet(), TinyNet()).train()
    weak, strong, target = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.arange(4)
    own = distiller.forward_train(image_weak=weak, image_strong=strong, target=target)
    with torch.no_grad():
        served = [distiller.teacher(weak), None]  # no output for the view it does not declare
    given = distiller.forward_train(image_weak=weak, image_strong=strong, target=target, teacher_outs=served)
    assert torch.equal(own[0], given[0]) and all(torch.equal(own[1][k], given[1][k]) for k in own[1])


def test_diverged_student_stops_while_the_other_goes_on(tmp_path, capsys):
    solo = tiny_cfg(tmp_path / "solo", "EXPERIMENT.NAME", "good", "SOLVER.EPOCHS", 3)
    tiny_trainer(solo).fit()
    cfgs = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", name, "SOLVER.EPOCHS", 3) for name in ("bad", "good")]
    best = paired_trainer(cfgs, [NaNAtEpoch2, TinyKD]).fit()
    assert best[0] is None and best[1] >= 0
    bad = folder(cfgs[0])
    reason = open(os.path.join(bad, "stopped.txt")).read()
    assert reason.startswith("non-finite loss at epoch 2, iteration 1/4: loss_kd") and reason.count("\n") == 1
    assert load_checkpoint(os.path.join(bad, "latest"))["epoch"] == 1
    assert "best_acc" not in open(os.path.join(bad, "worklog.txt")).read()
    assert_same_run(folder(solo), folder(cfgs[1]))
    assert f"stopped {bad}: non-finite loss" in capsys.readouterr().out

    # resume skips the stopped run (no error about its old checkpoint) and extends the other
    more = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", name, "SOLVER.EPOCHS", 4) for name in ("bad", "good")]
    assert paired_trainer(more, [NaNAtEpoch2, TinyKD]).fit(resume=True)[0] is None
    assert load_checkpoint(os.path.join(folder(more[1]), "latest"))["epoch"] == 4
    # a fresh start forgets the divergence
    paired_trainer([tiny_cfg(tmp_path, "EXPERIMENT.NAME", "bad", "SOLVER.EPOCHS", 1)], [TinyKD]).fit(overwrite=True)
    assert not os.path.exists(os.path.join(bad, "stopped.txt"))


def test_a_lone_diverged_run_raises_as_a_solo_run_does(tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 2"):
        paired_trainer([tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3)], [NaNAtEpoch2]).fit()


def test_resume_restores_every_student_even_one_ahead(tmp_path):
    names, classes = ("a", "b"), [TinyKD, TinyCE]
    straight = [tiny_cfg(tmp_path / "straight", "EXPERIMENT.NAME", n, "SOLVER.EPOCHS", 3) for n in names]
    paired_trainer(straight, classes).fit()
    two = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", n, "SOLVER.EPOCHS", 2) for n in names]
    paired_trainer(two, classes).fit()
    # as if killed between the two runs' commits of epoch 2: b is back at epoch 1
    b = folder(two[1])
    os.replace(os.path.join(b, "epoch_1"), os.path.join(b, "latest"))
    torch.manual_seed(123)  # whatever happens in between must not matter
    three = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", n, "SOLVER.EPOCHS", 3) for n in names]
    paired_trainer(three, classes).fit(resume=True)
    for cfg_a, cfg_b in zip(straight, three):
        assert_same_run(folder(cfg_a), folder(cfg_b))


def test_group_checks(tmp_path):
    a = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "a")
    with pytest.raises(ConfigError, match=r"^paired runs must agree on SOLVER.BATCH_SIZE: a has 16 but b has 32; "):
        check_group([a, tiny_cfg(tmp_path, "EXPERIMENT.NAME", "b", "SOLVER.BATCH_SIZE", 32)])
    with pytest.raises(ConfigError, match=r"agree on DATASET.TRAIN_SUBSET: a has 0 but b has 8;"):
        check_group([a, tiny_cfg(tmp_path, "EXPERIMENT.NAME", "b", "DATASET.TRAIN_SUBSET", 8)])
    with pytest.raises(ConfigError, match="two paired runs would write to the same folder"):
        check_group([a, a])
    check_group([a, tiny_cfg(tmp_path, "EXPERIMENT.NAME", "b", "SOLVER.LR", 0.1, "DISTILLER.TYPE", "DKD")])
    runs = [StudentRun(cfg, TinyKD(TinyNet(), TinyNet()), folder(cfg), torch.device("cpu"))
            for cfg in (a, tiny_cfg(tmp_path, "EXPERIMENT.NAME", "b"))]  # two different random teachers
    with pytest.raises(ValueError, match="paired runs need one teacher, but .*b holds a different one than .*a;"):
        SharedTeacherStep(runs, [1, 1])


# DISTILLER.TEACHER_CHUNK 12: each view of 16 rows in pieces of 12 (the CPU way); 0 (the GPU
# setting): both views concatenated, one teacher forward per step.
@pytest.mark.parametrize("chunk, forwards", [(12, [12, 4, 12, 4] * 8), (0, [32] * 8)])
def test_a_paired_run_equals_its_solo_run_with_and_without_teacher_micro_batches(tmp_path, chunk, forwards):
    opts = ["SOLVER.TRAINER", "ours", "DISTILLER.TEACHER_CHUNK", chunk]
    solo = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "solo", *opts)
    tiny_trainer(solo, views=2).fit()
    paired = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "paired", *opts)
    trainer = paired_trainer([paired], [TinyKD], [2])
    calls = count_teacher_calls(trainer)
    trainer.fit()
    assert_same_run(folder(solo), folder(paired))
    assert calls == forwards


def test_with_micro_batches_a_run_beside_a_larger_group_gets_its_solo_teacher_outputs(tmp_path):
    # a one-view run in a two-view group: its teacher sees its own view in its own forwards
    opts = ["DISTILLER.TEACHER_CHUNK", 12]
    solo = tiny_cfg(tmp_path / "solo", "EXPERIMENT.NAME", "weak", "SOLVER.TRAINER", "ours", *opts)
    tiny_trainer(solo, views=2, distiller_cls=WeakTeacherOnly).fit()
    cfgs = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", "weak", "SOLVER.TRAINER", "ours", *opts),
            tiny_cfg(tmp_path, "EXPERIMENT.NAME", "two", "SOLVER.TRAINER", "ours", *opts)]
    paired_trainer(cfgs, [WeakTeacherOnly, TinyKD], [2, 2]).fit()
    assert_same_run(folder(solo), folder(cfgs[0]))
