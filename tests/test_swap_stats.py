"""Swap statistics: hand-built logits with known swap counts, the epoch sums, the distillers that
report them and the trainer's side channel (worklog, tensorboard, end-of-training summary)."""
import math
import os

import pytest
import torch

from mdistiller.engine.stat_sums import StatSums, collect_stats, scalar_stats, stat_sources, worst_entries_line
from mdistiller.distillers.swap_stats import (class_error_statistics, classes_above_target, swap_statistics,
                                            teacher_statistics)
from mdistiller.engine.events import read_scalars
from mdistiller.engine.worklog import read_worklog
from mdistiller.config import load_cfg
from mdistiller.distillers import distiller_dict
from mdistiller.distillers.stack import Stack
from helpers.tiny import TinyNet, tiny_cfg, tiny_trainer

# 4 samples, 4 classes, targets [0, 1, 2, 3].
TARGET = torch.tensor([0, 1, 2, 3])
WEAK = torch.tensor([
    [5.0, 1.0, 0.0, 0.0],  # right: target first
    [3.0, 2.0, 1.0, 0.0],  # swapped, target ranks 2
    [4.0, 3.0, 2.0, 1.0],  # swapped, target ranks 3
    [1.0, 1.0, 0.0, 1.0],  # tie at the maximum: the swap changes nothing -> not swapped
])
STRONG = torch.tensor([
    [0.0, 1.0, 2.0, 3.0],  # swapped, target ranks 4
    [0.0, 9.0, 0.0, 0.0],  # right
    [0.0, 0.0, 9.0, 0.0],  # right
    [0.0, 0.0, 0.0, 9.0],  # right
])


def ratio(pair):
    num, den = pair
    return (num / den).tolist()


def test_rows_above_target_counts_strictly_larger_logits():
    assert classes_above_target(WEAK, TARGET).tolist() == [0, 1, 2, 0]
    assert classes_above_target(STRONG, TARGET).tolist() == [3, 0, 0, 0]


def test_swap_statistics_per_view_on_hand_built_logits():
    stats = swap_statistics(torch.stack([WEAK, STRONG]), TARGET, "teacher")
    assert set(stats) == {"swap.teacher_weak", "swap.teacher_strong", "swap.rank_teacher_weak",
                          "swap.rank_teacher_strong"}
    assert [t.item() for t in stats["swap.teacher_weak"]] == [200.0, 4.0]  # 2 of 4 rows, in percent
    assert ratio(stats["swap.teacher_weak"]) == 50.0
    assert ratio(stats["swap.teacher_strong"]) == 25.0
    assert ratio(stats["swap.rank_teacher_weak"]) == 2.5  # ranks 2 and 3
    assert ratio(stats["swap.rank_teacher_strong"]) == 4.0


def test_swap_statistics_one_view_has_no_view_suffix_and_no_swap_gives_zero_rows():
    right = torch.eye(4) * 5
    stats = swap_statistics(right, TARGET, "student")
    assert set(stats) == {"swap.student", "swap.rank_student"}
    assert ratio(stats["swap.student"]) == 0.0
    assert stats["swap.rank_student"][1].item() == 0  # no swapped rows: the rank has no denominator


def test_swap_statistics_agree_with_the_swap_itself():
    from mdistiller.distillers.losses import swap_logits

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 64, 10, generator=g).round()  # rounding makes ties frequent
    target = torch.randint(0, 10, (64,), generator=g)
    changed = (swap_logits(logits, target) != logits).any(-1)  # rows whose values the swap moved
    stats = swap_statistics(logits, target, "teacher")
    assert stats["swap.teacher_weak"][0].item() == pytest.approx(100.0 * changed[0].sum().item())
    assert stats["swap.teacher_strong"][0].item() == pytest.approx(100.0 * changed[1].sum().item())


def test_class_error_statistics_pools_views_per_target_class():
    (errors, rows), = class_error_statistics(torch.stack([WEAK, STRONG]), TARGET, "teacher").values()
    assert rows.tolist() == [2.0, 2.0, 2.0, 2.0]
    assert errors.tolist() == [100.0, 100.0, 100.0, 0.0]  # class 0 wrong once (strong), 1 and 2 once (weak)
    (errors, rows), = class_error_statistics(WEAK, torch.tensor([1, 1, 2, 3]), "teacher", 5).values()
    assert rows.tolist() == [0.0, 2.0, 1.0, 1.0, 0.0] and errors.tolist() == [0.0, 200.0, 100.0, 0.0, 0.0]


def test_teacher_statistics_accept_a_list_of_views():
    stats = teacher_statistics([WEAK, STRONG], TARGET)
    assert "teacher.class_error" in stats and ratio(stats["swap.teacher_weak"]) == 50.0


def test_stat_sums_divide_summed_numerators_by_summed_denominators():
    sums = StatSums()
    sums.add({"a": (torch.tensor(100.0), torch.tensor(4.0)), "v": (torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))})
    sums.add({"a": (torch.tensor(0.0), torch.tensor(1.0)), "v": (torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))})
    values = sums.read()
    assert values["a"] == 20.0  # (100 + 0) / (4 + 1), not the mean of 25 and 0
    assert values["v"][0] == 0.5 and math.isnan(values["v"][1])
    assert scalar_stats({"b": 1.0, "a": float("nan"), "v": [1.0]}) == {"b": 1.0}
    assert StatSums().read() == {}


def test_collect_stats_takes_clears_and_pools():
    class Source:
        last_stats = None

    a, b = Source(), Source()
    a.last_stats = {"x": (torch.tensor(1.0), torch.tensor(2.0))}
    b.last_stats = {"x": (torch.tensor(3.0), torch.tensor(2.0)), "y": (torch.tensor(1.0), torch.tensor(1.0))}
    stats = collect_stats([a, b])
    assert ratio(stats["x"]) == 1.0 and set(stats) == {"x", "y"}
    assert a.last_stats is None and b.last_stats is None and collect_stats([a, b]) == {}


def test_worst_entries_line_names_the_highest_classes():
    line = worst_entries_line("teacher.class_error", [10.0, float("nan"), 50.0, 50.0, 0.0], top=3)
    assert line.endswith("highest: class 2 50.0, class 3 50.0, class 0 10.0")
    assert worst_entries_line("x", [1.0], labels=["cat"]).endswith("highest: cat 1.0")


def test_per_step_path_never_reads_values_on_the_host():
    """Meta tensors have shapes but no data: any .item()/.tolist()/bincount (a device sync on a GPU)
    in the SLD step's statistics or their accumulation would raise here."""
    sld = distiller_dict["SLD"](torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), sld_cfg())

    def logits():
        return torch.randn(8, 5, device="meta"), {}

    target = torch.zeros(8, dtype=torch.long, device="meta")
    sld.distill([logits(), logits()], [logits(), logits()], target, epoch=3)
    sums = StatSums()
    sums.add(collect_stats(stat_sources(sld)))
    sums.add(collect_stats(stat_sources(sld)))  # nothing new reported: adds nothing
    assert sums.sums["teacher.class_error"][0].shape == (5,) and len(sums.sums) == 9
    assert all(t.device.type == "meta" for pair in sums.sums.values() for t in pair)


def sld_cfg(*opts):
    return load_cfg(None, ["DISTILLER.TYPE", "SLD", "SLD.GAMMA", "1", *opts])


def test_sld_reports_statistics_beside_not_inside_its_losses():
    torch.manual_seed(0)
    sld = distiller_dict["SLD"](TinyNet(), TinyNet(), sld_cfg()).train()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    _, losses = sld.forward_train(image_weak=x, image_strong=x.flip(-1), target=y, epoch=1)
    assert set(losses) == {"loss_ce", "loss_ts", "loss_ss"}
    stats = sld.last_stats
    assert {"swap.teacher_weak", "swap.teacher_strong", "swap.student_weak", "swap.student_strong",
            "teacher.class_error"} <= set(stats)
    with torch.no_grad():
        teacher_weak = sld.teacher(x)[0]
    expected = 100.0 * (classes_above_target(teacher_weak, y) > 0).sum().item()
    assert stats["swap.teacher_weak"][0].item() == pytest.approx(expected)
    off = distiller_dict["SLD"](TinyNet(), TinyNet(), sld_cfg("SLD.STUDENT_SWAP", "False")).train()
    off.forward_train(image=x, target=y, epoch=1)
    assert set(off.last_stats) == {"swap.teacher", "swap.rank_teacher", "teacher.class_error"}


def test_swapped_variants_and_stack_components_are_sources():
    kd_swap = distiller_dict["KD_SWAP"](TinyNet(), TinyNet(), load_cfg(None, ["DISTILLER.TYPE", "KD_SWAP"])).train()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    kd_swap.forward_train(image=x, target=y, epoch=1)
    assert set(kd_swap.last_stats) == {"swap.teacher", "swap.rank_teacher", "teacher.class_error"}
    student, teacher = TinyNet(), TinyNet()
    parts = [("KD", distiller_dict["KD"](student, teacher, load_cfg(None, ["DISTILLER.TYPE", "KD"]))),
             ("SLD", distiller_dict["SLD"](student, teacher, sld_cfg()))]
    stack = Stack(parts)
    assert stat_sources(stack) == [stack, stack.parts["KD"], stack.parts["SLD"]]
    stack.train().forward_train(image=x, target=y, epoch=1)
    assert "swap.teacher" in collect_stats(stat_sources(stack))


class TinySLD(distiller_dict["SLD"]):
    """SLD on the trainer tests' tiny networks (the test helpers build distillers as Cls(s, t, cfg))."""


def test_trainer_logs_statistics_per_epoch_and_prints_worst_classes(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "DISTILLER.TYPE", "SLD", "SOLVER.TRAINER", "ours", "SLD.GAMMA", 1)
    tiny_trainer(cfg, views=2, distiller_cls=TinySLD).fit()
    folder = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME)
    log = read_worklog(os.path.join(folder, "worklog.txt"))
    assert log.finished and not log.problems  # the extra keys keep the mdistiller format readable
    first = log.epochs[0]
    assert list(first)[:7] == ["epoch", "lr", "train_acc", "train_loss", "test_acc", "test_acc_top5", "test_loss"]
    for key in ("swap.teacher_weak", "swap.teacher_strong", "swap.student_weak", "swap.student_strong"):
        assert [e for e, _ in log.series(key)] == [1, 2] and all(0 <= v <= 100 for _, v in log.series(key))
    with open(os.path.join(folder, "worklog.txt")) as f:
        assert "teacher.class_error" not in f.read()  # per-class vectors stay out of the worklog
    scalars = read_scalars(os.path.join(folder, "train.events"))
    assert [s for s, _ in scalars["swap/teacher_weak"]] == [1, 2]
    assert scalars["swap/teacher_weak"][0][1] == pytest.approx(first["swap.teacher_weak"], abs=0.006)
    out = capsys.readouterr().out
    assert "teacher.class_error on the training views (%, last epoch), highest: class " in out


def test_teacher_swap_rate_is_the_teachers_training_error(tmp_path):
    """The logged rate equals an independent count over the same images (no augmentation, fixed teacher)."""
    from helpers.tiny import TinyData
    from torch.utils.data import DataLoader

    cfg = tiny_cfg(tmp_path, "DISTILLER.TYPE", "SLD", "SLD.STUDENT_SWAP", "False", "SOLVER.EPOCHS", 1)
    data = TinyData(48, 1, augment=False)
    test = torch.utils.data.TensorDataset(data.x, data.y)
    trainer = tiny_trainer(cfg, distiller_cls=TinySLD, loaders=(DataLoader(data, 16), DataLoader(test, 16)))
    teacher = trainer.runs[0].distiller.teacher.eval()  # as the distiller keeps it during training
    with torch.no_grad():
        wrong = (classes_above_target(teacher(data.x)[0], data.y) > 0).float().mean().item()
    trainer.fit()
    log = read_worklog(os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME, "worklog.txt"))
    assert log.epochs[0]["swap.teacher"] == pytest.approx(100 * wrong, abs=0.006)
