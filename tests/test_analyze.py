"""tools/analyze.py and its pieces: metrics on hand-built logits, every figure (opened and
measured), the run-folder defaults, the optional packages and the one-line errors."""
import importlib
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from mdistiller.analysis import comparison, plots
from mdistiller.config import dump_cfg, load_cfg
from mdistiller.engine.checkpoint import save_atomic
from mdistiller.engine.worklog import append_best, append_epoch
from mdistiller.models import create_model
from helpers.tiny import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import analyze as analyze_cli  # noqa: E402  (tools/analyze.py)

CLASSES = ["ant", "bee", "cat", "dog"]
ARCH = "resnet8"
FIGURES = ["correlation_gap", "per_class_accuracy", "reliability", "rescued_pairs", "tsne", "swap_rates"]


# ---------------------------------------------------------------- metrics on hand-built logits
T_LOGITS = np.array([[3.0, 0, 0], [0, 3, 0], [3, 0, 0], [0, 0, 3]])  # teacher: sample 2 wrong (says 0)
S_LOGITS = np.array([[0.0, 3, 0], [0, 3, 0], [0, 0, 3], [0, 0, 3]])  # student: sample 0 wrong, 2 fixed
TARGETS = np.array([0, 1, 2, 2])


def test_accuracies_per_class_and_disagreements():
    assert comparison.accuracy(T_LOGITS, TARGETS) == 75.0
    assert comparison.per_class_accuracy(S_LOGITS, TARGETS, 4).tolist()[:3] == [0.0, 100.0, 100.0]
    assert math.isnan(comparison.per_class_accuracy(S_LOGITS, TARGETS, 4)[3])  # class without samples
    assert comparison.disagreement_counts(T_LOGITS, S_LOGITS, TARGETS) == (1, 1)
    assert comparison.rescued_pairs(T_LOGITS, S_LOGITS, TARGETS) == [comparison.RescuedPair(2, 0, 1)]


def test_logit_correlation_gap_is_the_off_diagonal_class_mean_difference():
    means = comparison.class_mean_logits(T_LOGITS, TARGETS, 3)
    assert means.tolist() == [[3, 0, 0], [0, 3, 0], [1.5, 0, 1.5]]
    gap = comparison.logit_correlation_gap(T_LOGITS, S_LOGITS, TARGETS, 3)
    # class 0: |3-0| at (0,0) is the diagonal -> 0, |0-3| at (0,1) = 3; class 2: |1.5-0| at (2,0)
    assert gap.tolist() == [[0, 3, 0], [0, 0, 0], [1.5, 0, 0]]
    assert sorted(comparison.off_diagonal(gap).tolist()) == [0, 0, 0, 0, 1.5, 3]


def test_reliability_bins_and_ece_by_hand():
    # two classes; confidences 0.5 (bin of (0.4667, 0.5333]) and ~0.8808 (logit gap 2)
    logits = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    targets = np.array([0, 0, 1, 1])
    rel = comparison.reliability(logits, targets, bins=10)
    conf = 1 / (1 + math.exp(-2))
    assert rel.counts.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 3, 0]
    assert rel.accuracy[4] == 1.0 and rel.accuracy[8] == pytest.approx(2 / 3)
    assert rel.ece == pytest.approx(100 * (0.25 * 0.5 + 0.75 * abs(2 / 3 - conf)))
    edge = comparison.reliability(np.log(np.array([[0.2, 0.8]])), np.array([1]), bins=5)
    assert edge.counts.tolist() == [0, 0, 0, 1, 0]  # 0.8 belongs to (0.6, 0.8]: bins are right-closed


# ---------------------------------------------------------------- a tiny run folder
def write_image_folder(root, per_class=3):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, split, name))
            for i in range(per_class):
                pixels = np.clip(rng.normal(60 * c, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, split, name, f"{i}.png"))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished-looking SLD run on an image folder: config.yaml, student_best, latest (with the
    teacher), a worklog with swap statistics. Models are untrained; the analysis does not care."""
    base = tmp_path_factory.mktemp("analyze")
    data = str(base / "data")
    write_image_folder(data)
    folder = str(base / "run")
    os.makedirs(folder)
    cfg = load_cfg(None, ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", data, "DISTILLER.TYPE", "SLD",
                          "DISTILLER.STUDENT", ARCH, "DISTILLER.TEACHER", ARCH, "SLD.GAMMA", 1, "SOLVER.EPOCHS", 2,
                          "DATASET.TEST.BATCH_SIZE", 5])
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(dump_cfg(cfg))
    torch.manual_seed(0)
    student, teacher = create_model(ARCH, 4, "imagefolder"), create_model(ARCH, 4, "imagefolder")
    save_atomic({"model": student.state_dict()}, os.path.join(folder, "student_best"))
    full = {**{f"student.{k}": v for k, v in student.state_dict().items()},
            **{f"teacher.{k}": v for k, v in teacher.state_dict().items()}}
    save_atomic({"model": full, "epoch": 2}, os.path.join(folder, "latest"))
    for epoch, rate in ((1, 40.0), (2, 30.0)):
        extra = OrderedDict([("test_acc", 50.0), ("swap.rank_teacher_strong", 2.5), ("swap.rank_teacher_weak", 2.0),
                             ("swap.student_strong", rate + 20), ("swap.student_weak", rate + 10),
                             ("swap.teacher_strong", rate + 5), ("swap.teacher_weak", rate)])
        if epoch == 2:  # an epoch without swapped weak rows logs no rank for them
            del extra["swap.rank_teacher_weak"]
        append_epoch(os.path.join(folder, "worklog.txt"), epoch, 0.05, extra)
    append_best(os.path.join(folder, "worklog.txt"), 50.0)
    return {"folder": folder, "data": data, "student": student, "teacher": teacher}


def png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def test_cli_writes_every_png_and_the_summary(run_folder, capsys):
    ckpt = os.path.join(run_folder["folder"], "student_best")
    assert analyze_cli.main(["-c", ckpt, "--quiet", "--tsne-samples", "12"]) == 0
    out_dir = os.path.join(run_folder["folder"], "analysis")
    assert sorted(os.listdir(out_dir)) == sorted([f"{k}.png" for k in FIGURES] + ["analysis.md"])
    for kind in FIGURES:
        width, height = png_size(os.path.join(out_dir, f"{kind}.png"))
        assert width >= 400 and height >= 250, kind
    printed = capsys.readouterr().out
    assert f"{ARCH} vs teacher {ARCH} on imagefolder test (12 images)" in printed
    summary = open(os.path.join(out_dir, "analysis.md")).read()
    assert "the run's teacher" in summary and "| top-1 (%) |" in summary
    assert ("Rows swapped: student_strong 50.00%, student_weak 40.00%, teacher_strong 35.00%, "
            "teacher_weak 30.00%.") in summary
    assert "Mean rank of the target in swapped rows: teacher_strong 2.50.\n" in summary  # of the last epoch only
    assert "(correlation_gap.png)" in summary and "(tsne.png)" in summary


def test_analysis_uses_the_runs_teacher_and_matches_direct_predictions(run_folder, tmp_path):
    from mdistiller.analysis.analyze import analyze

    a = analyze(os.path.join(run_folder["folder"], "student_best"), out_dir=str(tmp_path), tsne_samples=0)
    assert "tsne" not in a.files and not a.notes
    images = [np.asarray(Image.open(os.path.join(run_folder["data"], "test", c, f"{i}.png")), dtype=np.float32)
              for c in CLASSES for i in range(3)]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # imagefolder: ImageNet stats
    x = torch.tensor(((np.stack(images) / 255 - mean) / std).transpose(0, 3, 1, 2), dtype=torch.float32)
    with torch.no_grad():
        teacher_logits = run_folder["teacher"].eval()(x)[0].numpy()
    assert np.allclose(a.logits["teacher"], teacher_logits, atol=1e-4)
    assert a.targets.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert a.top1["teacher"] == comparison.accuracy(teacher_logits, a.targets)


def test_figures_have_their_axes(run_folder):
    rel = comparison.reliability(T_LOGITS, TARGETS)
    gap = comparison.logit_correlation_gap(T_LOGITS, S_LOGITS, TARGETS, 3)
    names = CLASSES[:3]
    acc = comparison.per_class_accuracy(T_LOGITS, TARGETS, 3)
    cases = [
        (plots.correlation_gap_figure(gap, names), 2, "true class"),  # heat map + colour bar
        (plots.per_class_accuracy_figure(acc, acc, names), 1, "test top-1 (%)"),
        (plots.reliability_figure({"teacher": rel, "student": rel}), 2, "accuracy"),
        (plots.rescued_pairs_figure([], names), 1, "true class -> teacher's prediction"),
        (plots.tsne_figure({"teacher": np.zeros((4, 2)), "student": np.ones((4, 2))}, TARGETS, names), 2, ""),
        (plots.swap_rates_figure({"teacher": [(1, 3.0), (2, 2.0)]}, {"teacher": [(1, 2.0), (2, 2.5)]}, gamma=1), 2,
         "swap rate (% of training rows)"),
        (plots.swap_rates_figure({"teacher": [(1, 3.0)]}), 1, "swap rate (% of training rows)"),
    ]
    for fig, n_axes, ylabel in cases:
        assert len(fig.axes) == n_axes
        assert fig.axes[0].get_ylabel() == ylabel
    assert cases[2][0].axes[0].get_title() == f"teacher: ECE {rel.ece:.2f}%"
    assert len(cases[1][0].axes[0].patches) == 6  # 3 classes x (teacher, student) bars
    assert [t.get_text() for t in cases[1][0].axes[0].get_xticklabels()] == ["ant", "bee", "cat"]
    gamma_line = cases[5][0].axes[0].lines[-1]
    assert list(gamma_line.get_xdata()) == [1.5, 1.5]  # the student term starts after epoch GAMMA


def test_many_classes_use_lines_and_no_tick_names():
    rng = np.random.default_rng(0)
    acc = rng.uniform(0, 100, 100)
    fig = plots.per_class_accuracy_figure(acc, acc, [str(i) for i in range(100)])
    assert len(fig.axes[0].lines) == 2 and not fig.axes[0].patches


def test_tsne_without_scikit_learn_is_a_note_not_a_failure(run_folder, tmp_path, monkeypatch):
    from mdistiller.analysis.analyze import TSNE_MISSING, analyze

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    a = analyze(os.path.join(run_folder["folder"], "student_best"), out_dir=str(tmp_path), tsne_samples=10)
    assert a.notes == [TSNE_MISSING] and "tsne" not in a.files
    assert TSNE_MISSING in open(os.path.join(str(tmp_path), "analysis.md")).read()


def test_missing_matplotlib_is_one_clear_error(run_folder, monkeypatch, capsys):
    real_import = importlib.import_module

    def no_matplotlib(name, *args):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(plots.importlib, "import_module", no_matplotlib)
    assert analyze_cli.main(["-c", os.path.join(run_folder["folder"], "student_best"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: tools/analyze.py's figures need matplotlib, which is not installed; install it with: "
                   "pip install matplotlib (or pip install -e '.[plot]')")


def test_explicit_checkpoints_without_a_run_folder(run_folder, tmp_path):
    from mdistiller.analysis.analyze import analyze

    lone = str(tmp_path / "lone")
    os.makedirs(lone)
    student, teacher = os.path.join(lone, "student.pth"), os.path.join(lone, "teacher.pth")
    save_atomic({"model": run_folder["student"].state_dict()}, student)
    save_atomic({"model": run_folder["teacher"].state_dict()}, teacher)
    opts = ["DEVICE", "cpu"]
    a = analyze(student, "imagefolder", run_folder["data"], ARCH, teacher, ARCH, str(tmp_path / "out"), tsne_samples=0,
                opts=opts)
    assert a.teacher_source == teacher and "swap_rates" not in a.files
    # a run's `latest` given as -t: its teacher part is used
    b = analyze(student, "imagefolder", run_folder["data"], ARCH, os.path.join(run_folder["folder"], "latest"), ARCH,
                str(tmp_path / "out2"), tsne_samples=0, opts=opts)
    assert np.array_equal(a.logits["teacher"], b.logits["teacher"])


@pytest.mark.parametrize("argv, message", [
    (["-c", "nope/student_best"], "error: checkpoint nope/student_best (-c/--ckpt) does not exist; pass a run's "
                                  "student_best, student_latest or latest"),
    (["-c", "{lone}", "-d", "imagefolder"], "error: -m/--model is needed: the checkpoint's folder has no config.yaml "
                                            "naming its STUDENT"),
    (["-c", "{lone}"], "error: -d/--dataset is needed: {lone_dir} has no config.yaml saying which data the "
                       "checkpoint was trained on"),
    (["-c", "{run}/student_best", "-t", "missing.pth"], "error: teacher checkpoint missing.pth (-t/--teacher) does not "
                                                        "exist; pass a teacher file, a run's student_best or latest, "
                                                        "or 'pretrain' for the model zoo's"),
    (["-c", "{run}/student_best", "-t", "{run}/student_best", "--teacher-model", "resnet20"],
     "error: checkpoint {run}/student_best does not fit ResNet: missing"),
])
def test_bad_input_gives_one_line_errors(run_folder, tmp_path, capsys, argv, message):
    lone = tmp_path / "lone.pth"
    save_atomic({"model": run_folder["student"].state_dict()}, str(lone))
    fill = {"lone": str(lone), "lone_dir": str(tmp_path), "run": run_folder["folder"]}
    argv = [a.format(**fill) for a in argv] + ["--quiet", "--tsne-samples", "0"]
    assert analyze_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message.format(**fill))


def test_teacher_part_refuses_a_run_without_teacher(run_folder, tmp_path):
    from mdistiller.analysis.analyze import teacher_part
    from mdistiller.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"^x holds no teacher weights \(no 'teacher\.' keys\)"):
        teacher_part({"model": {"student.w": torch.zeros(1)}}, "x")
