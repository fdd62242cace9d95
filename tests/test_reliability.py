"""Regression tests of the reliability report (one section per numbered finding): no diverged
checkpoint kept as good, no deleted results, no duplicate worklog blocks, no folder the CLI
cannot leave, one-line errors instead of tracebacks, warnings for legitimate but odd input,
messages that point only at what a user has, and one-line errors for broken files.
The kill/resume harness is tests/test_kill_resume.py (slow)."""
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from mdistiller.config import dump_cfg, load_cfg
from mdistiller.data import load_cifar100_arrays
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.run_folder import config_changes
from mdistiller.engine.trainer import NonFiniteLossError
from mdistiller.errors import CheckpointError, DataError
from mdistiller.engine.worklog import append_epoch
from helpers.mounts import tmpfs
from helpers.tiny import tiny_cfg, tiny_trainer, write_colour_folder
from helpers.tools import load_tool

train_tool, benchmark_tool = load_tool("train"), load_tool("benchmark")
RUN_FILES = ("best", "latest", "student_best", "student_latest", "worklog.txt")


def run_cli(tool, argv, capsys):
    """(exit code, stdout, stderr) of a CLI's main() in this process."""
    code = tool.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err, *parts):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def demo_argv(prefix, name, *extra):
    return ["--quiet", "DEVICE", "cpu", "DATASET.TYPE", "demo", "DATASET.NUM_WORKERS", "0", "DATASET.TRAIN_SUBSET",
            "64", "DATASET.TEST_SUBSET", "40", "SOLVER.BATCH_SIZE", "16", "SOLVER.EPOCHS", "1",
            "DISTILLER.STUDENT", "demo_cnn_tiny", "LOG.PREFIX", str(prefix), "EXPERIMENT.PROJECT", "p",
            "EXPERIMENT.NAME", name, *extra]


def file_bytes(folder, names=RUN_FILES):
    return {n: open(os.path.join(folder, n), "rb").read() for n in names}


# ------------------------------------------------------------------ 1. NaN guard
def test_diverged_first_epoch_writes_nothing(cifar_root, tmp_path, capsys):  # noqa: F811
    """The issue's command: one step per epoch at LR 1e30; epoch 1's evaluation is NaN."""
    code, _, err = run_cli(train_tool, [
        "--quiet", "DEVICE", "cpu", "DATASET.ROOT", str(cifar_root), "DATASET.NUM_WORKERS", "0",
        "DATASET.TRAIN_SUBSET", "16", "DATASET.TEST_SUBSET", "100", "SOLVER.BATCH_SIZE", "16", "SOLVER.LR", "1e30",
        "SOLVER.EPOCHS", "2", "DISTILLER.STUDENT", "resnet8", "LOG.PREFIX", str(tmp_path)], capsys)
    assert code == 2
    one_error_line(err, "non-finite values after epoch 1 (test loss nan", "nothing of epoch 1 was written",
                   "no epoch had been committed")
    folder = tmp_path / "distill" / "default"
    assert not [n for n in os.listdir(folder) if "best" in n or "latest" in n or n.startswith("epoch_")]
    assert not (folder / "worklog.txt").exists() or "epoch:" not in (folder / "worklog.txt").read_text()


def test_weights_that_blow_up_are_never_committed(tmp_path):
    """Epoch 2's last update leaves non-finite weights (its loss, taken before the update, is
    finite): epoch 2 is not written, and the message names the last committed epoch 1."""
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 3)

    def blow_up(epoch, iteration):
        if epoch == 2 and iteration == 3:
            with torch.no_grad():
                trainer.runs[0].distiller.student.fc.bias.fill_(float("inf"))

    trainer = tiny_trainer(cfg, hooks=[blow_up])
    with pytest.raises(NonFiniteLossError, match=r"non-finite values after epoch 2 \(test loss nan.*1 weight "
                                                 r"tensor\(s\) such as student.fc.bias\); nothing of epoch 2 was "
                                                 r"written and training stopped; the last committed epoch 1 "):
        trainer.fit()
    folder = tmp_path / "p" / "run"
    for name in ("latest", "best", "student_latest", "student_best"):
        ckpt = load_checkpoint(folder / name)
        assert ckpt.get("epoch", 1) == 1
        assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point()), name
    assert not (folder / "epoch_2").exists()
    assert (folder / "worklog.txt").read_text().count("epoch: ") == 1


def test_paired_member_whose_weights_blow_up_is_stopped_and_the_other_goes_on(tmp_path):
    from helpers.tiny import TinyKD, paired_trainer

    cfgs = [tiny_cfg(tmp_path, "EXPERIMENT.NAME", name, "SOLVER.EPOCHS", 3) for name in ("bad", "good")]
    trainer = paired_trainer(cfgs, [TinyKD, TinyKD])

    def blow_up(epoch, iteration):
        if epoch == 2 and iteration == 3:
            with torch.no_grad():
                trainer.runs[0].distiller.student.conv1.weight.fill_(float("nan"))

    trainer.step_hooks.append(blow_up)
    best = trainer.fit()
    assert best[0] is None and best[1] >= 0
    bad, good = tmp_path / "p" / "bad", tmp_path / "p" / "good"
    assert (bad / "stopped.txt").read_text().startswith("non-finite values after epoch 2")
    assert load_checkpoint(bad / "latest")["epoch"] == 1 and load_checkpoint(good / "latest")["epoch"] == 3


# ------------------------------------------------------------------ 2. the benchmark deletes nothing
def test_benchmark_refuses_a_changed_config_and_overwrite_moves_it_aside(tmp_path, capsys):
    config = tmp_path / "v.yaml"
    config.write_text("DATASET:\n  TYPE: demo\n  NUM_WORKERS: 0\n  TRAIN_SUBSET: 64\n  TEST_SUBSET: 40\n"
                      "DISTILLER:\n  TYPE: NONE\n  TEACHER: demo_cnn_tiny\n  STUDENT: demo_cnn_tiny\n"
                      "SOLVER:\n  EPOCHS: 1\n  BATCH_SIZE: 16\n  LR: 0.01\n")
    base = ["--cfg", str(config), "--project", "b", "--no-chart", "LOG.PREFIX", str(tmp_path / "out"), "LOG.QUIET",
            "True"]
    assert benchmark_tool.main(base) == 0
    folder = tmp_path / "out" / "b" / "Vanilla,demo_cnn_tiny-demo_cnn_tiny,seed0"
    before = file_bytes(folder)
    capsys.readouterr()
    code, out, err = run_cli(benchmark_tool, base + ["SOLVER.LR", "0.02"], capsys)
    assert "ran 0, skipped 0 complete, 1 failed, 1 refused (config or teacher changed; see --overwrite)" in out
    assert f"refused: {folder} was trained with another config (SOLVER.LR 0.01 -> 0.02); pass --overwrite" in out
    assert code == 2 and "error: not replacing" in err  # the table that shows the run is kept too
    assert file_bytes(folder) == before  # nothing deleted or rewritten
    code, out, _ = run_cli(benchmark_tool, base + ["--overwrite", "SOLVER.LR", "0.02"], capsys)
    assert code == 0 and "old outputs moved aside" in out
    assert file_bytes(folder / "replaced" / "1") == before  # the old run, intact
    assert "LR: 0.02" in (folder / "config.yaml").read_text() and (folder / "latest").exists()


# ------------------------------------------------------------------ 3. one worklog per committed run
def test_fresh_start_after_a_kill_before_the_first_commit_has_a_clean_worklog(tmp_path):
    straight = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "straight", "SOLVER.EPOCHS", 1)
    tiny_trainer(straight).fit()
    reference = (tmp_path / "p" / "straight" / "worklog.txt").read_text()
    # what a run killed while staging its first epoch leaves (engine/run_folder.py `commit`)
    cfg = tiny_cfg(tmp_path, "EXPERIMENT.NAME", "killed", "SOLVER.EPOCHS", 1)
    folder = tmp_path / "p" / "killed"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(dump_cfg(cfg))
    (folder / ".staged_latest").write_bytes(b"epoch 1")
    append_epoch(str(folder / ".staged_worklog.txt"), 1, 0.05, {"train_acc": 1.0})
    tiny_trainer(cfg).fit()
    assert (folder / "worklog.txt").read_text() == reference  # one epoch-1 block, the new one


# ------------------------------------------------------------------ 4. every folder can be left
def test_first_epoch_leftovers_without_latest_restart_with_or_without_resume(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)
    tiny_trainer(cfg).fit()
    folder = tmp_path / "p" / "run"
    reference = file_bytes(folder, ("worklog.txt",))
    for flags in ({}, {"resume": True}):
        for name in ("latest", "best", "student_best", "student_latest", "epoch_1", "student_1", "worklog.txt"):
            os.rename(folder / name, folder / f".staged_{name}")  # a crash (or full disk) before epoch 1's commit
        tiny_trainer(cfg).fit(**flags)
        assert load_checkpoint(folder / "latest")["epoch"] == 1 and file_bytes(folder, ("worklog.txt",)) == reference


def test_later_checkpoints_without_latest_name_the_way_out_that_works(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 2)
    tiny_trainer(cfg).fit()
    folder = tmp_path / "p" / "run"
    os.remove(folder / "latest")
    for flags in ({}, {"resume": True}):
        with pytest.raises(CheckpointError, match=r"holds results \(best, epoch_1, epoch_2, student_1, ...\) but "
                                                  r"no `latest` to resume from; pass --overwrite to move them"):
            tiny_trainer(cfg).fit(**flags)
    tiny_trainer(cfg).fit(overwrite=True)  # the way out named
    assert load_checkpoint(folder / "latest")["epoch"] == 2
    assert sorted(os.listdir(folder / "replaced" / "1"))[:3] == ["best", "config.yaml", "epoch_1"]


def test_full_disk_is_one_line_and_leaves_no_temp_files(tmp_path, capsys):
    with tmpfs(tmp_path / "small", "size=64k") as small:
        code, _, err = run_cli(train_tool, demo_argv(small, "full", "DISTILLER.STUDENT", "resnet8"), capsys)
        assert code == 2
        one_error_line(err, f"cannot write {small}/p/full/", "the disk is full", "free space there or set LOG.PREFIX")
        leftovers = [n for n in os.listdir(small / "p" / "full") if n.startswith(".tmp")]
        assert not leftovers


# ------------------------------------------------------------------ 5. no tracebacks
@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, "is not UTF-8 text (a binary file?)"),
    (b"SOLVER:\n  LR: \xff\xfe\n", "is not UTF-8 text (a binary file?)"),
    (None, "is a folder; pass a YAML file in it with --cfg"),
])
def test_unreadable_cfg_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "cfg"
    path.mkdir() if content is None else path.write_bytes(content)
    code, _, err = run_cli(train_tool, ["--cfg", str(path)], capsys)
    assert code == 2
    one_error_line(err, f"config file {path} {message}")


def test_huge_seed_is_one_line(capsys):
    code, _, err = run_cli(train_tool, ["SEED", "1180591620717411303424"], capsys)
    assert code == 2
    one_error_line(err, "config key SEED is 1180591620717411303424; use a whole number from 0 to 2147483647")


def test_read_only_log_prefix_is_one_line(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        code, _, err = run_cli(train_tool, demo_argv(ro, "r"), capsys)
    assert code == 2
    one_error_line(err, f"cannot write {ro}/p/r", "read-only", "set LOG.PREFIX to a writable folder")


# ------------------------------------------------------------------ 6. nothing silently accepted
def test_resume_with_a_changed_config_is_refused_and_config_yaml_keeps_the_truth(tmp_path, capsys):
    assert run_cli(train_tool, demo_argv(tmp_path, "r", "SOLVER.LR", "0.05"), capsys)[0] == 0
    saved = (tmp_path / "p" / "r" / "config.yaml").read_text()
    code, _, err = run_cli(train_tool, demo_argv(tmp_path, "r", "SOLVER.LR", "0.7", "SOLVER.EPOCHS", "2", "--resume"),
                           capsys)
    assert code == 2
    one_error_line(err, "with a changed config (SOLVER.LR 0.05 -> 0.7)", f"--cfg {tmp_path}/p/r/config.yaml --resume")
    assert (tmp_path / "p" / "r" / "config.yaml").read_text() == saved
    # keys that are safe to change go through: a longer run (step schedule), logging, loader workers
    code, out, _ = run_cli(train_tool, demo_argv(tmp_path, "r", "SOLVER.LR", "0.05", "SOLVER.EPOCHS", "2",
                                                 "LOG.TENSORBOARD_FREQ", "7", "--resume"), capsys)
    assert code == 0 and "resuming" in out and "EPOCHS: 2" in (tmp_path / "p" / "r" / "config.yaml").read_text()
    # the way out named in the refusal works
    code, _, _ = run_cli(train_tool, ["--cfg", str(tmp_path / "p" / "r" / "config.yaml"), "--resume", "--quiet"],
                         capsys)
    assert code == 0


def test_cosine_schedule_may_not_be_lengthened_on_resume(tmp_path, capsys):
    assert run_cli(train_tool, demo_argv(tmp_path, "c", "SOLVER.LR_SCHEDULER", "cosine"), capsys)[0] == 0
    code, _, err = run_cli(train_tool, demo_argv(tmp_path, "c", "SOLVER.LR_SCHEDULER", "cosine", "SOLVER.EPOCHS", "2",
                                                 "--resume"), capsys)
    assert code == 2
    one_error_line(err, "changed config (SOLVER.EPOCHS 1 -> 2)")


def test_fp16_on_cpu_and_oversized_subset_are_warned_about(tmp_path, capsys, caplog):
    code, out, _ = run_cli(train_tool, demo_argv(tmp_path, "w", "SOLVER.AMP", "fp16", "DATASET.TRAIN_SUBSET",
                                                   "100000", "SOLVER.EPOCHS", "1"), capsys)
    assert code == 0
    assert "warning: SOLVER.AMP fp16 on a CPU is very slow" in out
    assert "warning: DATASET.TRAIN_SUBSET 100000 is not smaller than the 1000 train images; using all of them" in \
        caplog.messages  # logged at WARNING: without other handlers, python prints it on stderr


def test_vanilla_run_without_a_teacher_is_not_labelled_with_the_default_teacher(tmp_path):
    from mdistiller.benchmark.collect import labels_from_config
    from mdistiller.benchmark.spec import cfg_labels
    from mdistiller.config import load_cfg

    cfg = load_cfg(opts=["DISTILLER.STUDENT", "resnet8"])
    assert cfg_labels(cfg) == ("Vanilla", "resnet8 (no teacher)")
    import yaml

    assert labels_from_config(yaml.safe_load(dump_cfg(cfg)))[1] == "resnet8 (no teacher)"
    named = load_cfg(opts=["DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet32x4"])
    assert cfg_labels(named)[1] == "resnet32x4 -> resnet8"  # a baseline meant for that column


# ------------------------------------------------------------------ 7. messages point at what users have
def test_cifar_not_found_points_to_the_official_page_and_the_users_own_path(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar100_arrays(str(tmp_path / "nowhere"), "train")
    msg = str(err.value)
    for part in ("https://www.cs.toronto.edu/~kriz/cifar.html", "DATASET.DOWNLOAD True", "DATASET.ROOT",
                 str(tmp_path / "nowhere")):
        assert part in msg
    assert "shared" not in msg and "\n" not in msg


# ------------------------------------------------------------------ 8. broken files
@pytest.fixture
def teacher_file(tmp_path):
    def make(kind):
        path = tmp_path / f"teacher_{kind}"
        if kind == "zero":
            path.write_bytes(b"")
        elif kind == "random":
            path.write_bytes(np.random.default_rng(0).bytes(5000))
        else:
            from mdistiller.models import create_model

            classes = 7 if kind == "7 classes" else 10
            torch.save({"model": create_model("demo_cnn_tiny", classes, "demo").state_dict()}, path)
            if kind == "truncated":
                path.write_bytes(path.read_bytes()[:2000])
        return path
    return make


@pytest.mark.parametrize("kind, message", [
    ("zero", "is empty (0 bytes"),
    ("random", "is not a PyTorch checkpoint"),
    ("truncated", "could not be read"),
])
def test_broken_teacher_file_is_one_line_with_a_way_out(tmp_path, capsys, teacher_file, kind, message):
    path = teacher_file(kind)
    code, _, err = run_cli(train_tool, demo_argv(tmp_path, kind, "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER",
                                                 "demo_cnn_tiny", "DISTILLER.TEACHER_WEIGHTS", str(path)), capsys)
    assert code == 2
    one_error_line(err, f"checkpoint {path} {message}", "point DISTILLER.TEACHER_WEIGHTS to an intact")


@pytest.mark.parametrize("kind, teacher, message", [
    ("good", "resnet8", "missing"),  # a demo_cnn_tiny file for another architecture
    ("7 classes", "demo_cnn_tiny", "shape mismatch at classifier.weight: file (7, 16) vs model (10, 16)"),
])
def test_teacher_of_another_architecture_or_class_count_is_one_line(tmp_path, capsys, teacher_file, kind, teacher,
                                                                     message):
    path = teacher_file(kind)
    code, _, err = run_cli(train_tool, demo_argv(tmp_path, "t", "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER",
                                                 teacher, "DISTILLER.TEACHER_WEIGHTS", str(path)), capsys)
    assert code == 2
    one_error_line(err, f"checkpoint {path} does not fit", message, "check the architecture name and number of classes")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-epoch demo run under <prefix>/p/r, trained once for the tests that damage it."""
    prefix = tmp_path_factory.mktemp("finished")
    assert train_tool.main(demo_argv(prefix, "r")) == 0
    return prefix


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.update(rng=[{"python": "junk"}]), "holds a malformed RNG state"),
    (lambda c: c.update(epoch="1"), "has no valid 'epoch' (found str '1')"),
    (lambda c: c.pop("best_acc"), "has no valid 'best_acc' (it is missing)"),
    (lambda c: c.pop("optimizer"), "does not fit this run (no 'optimizer' entry)"),
    ("zero", "is empty (0 bytes"),
    ("random", "is not a PyTorch checkpoint"),
    ("truncated", "could not be read"),
])
def test_broken_resume_file_is_one_line_with_a_way_out(finished_run, tmp_path, capsys, damage, message):
    shutil.copytree(finished_run / "p", tmp_path / "p")
    latest = tmp_path / "p" / "r" / "latest"
    if callable(damage):
        ckpt = load_checkpoint(latest)
        damage(ckpt)
        torch.save(ckpt, latest)
    elif damage == "zero":
        latest.write_bytes(b"")
    elif damage == "random":
        latest.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        latest.write_bytes(latest.read_bytes()[:3000])
    code, _, err = run_cli(train_tool, demo_argv(tmp_path, "r", "SOLVER.EPOCHS", "2", "--resume"), capsys)
    assert code == 2
    one_error_line(err, f"checkpoint {latest} {message}", "--overwrite")


def test_empty_class_folder_and_zero_byte_png_are_one_line(tmp_path, capsys):
    write_colour_folder(tmp_path / "empty", ("a", "b", "c"))
    shutil.rmtree(tmp_path / "empty" / "train" / "b")
    (tmp_path / "empty" / "train" / "b").mkdir()
    write_colour_folder(tmp_path / "zero", ("a", "b", "c"))
    (tmp_path / "zero" / "train" / "a" / "0.png").write_bytes(b"")
    for root, message in (("empty", f"class folder {tmp_path}/empty/train/b holds no images"),
                          ("zero", f"image {tmp_path}/zero/train/a/0.png is empty (0 bytes); replace or delete it")):
        code, _, err = run_cli(train_tool, demo_argv(tmp_path, root, "DATASET.TYPE", "imagefolder", "DATASET.ROOT",
                                                     str(tmp_path / root), "DISTILLER.STUDENT", "resnet8"), capsys)
        assert code == 2
        one_error_line(err, message)


def test_stale_decoded_cache_is_rebuilt_from_the_changed_data(cifar_root, tmp_path):  # noqa: F811
    from helpers.data import write_real_subset

    root = tmp_path / "cifar"
    write_real_subset(str(cifar_root), str(root), classes=100, counts=(("train", 1), ("test", 1)))
    first = load_cifar100_arrays(str(root), "test")  # decodes and caches
    image = sorted((root / "test").glob("*/*.png"))[0]
    shutil.copy(sorted((root / "test").glob("*/*.png"))[1], image)  # the data changes after caching
    again = load_cifar100_arrays(str(root), "test")
    assert not np.array_equal(first.images[0], again.images[0])
    assert np.array_equal(again.images[0], again.images[1])  # the new pixels, not the cached ones


def test_a_resume_may_change_speed_settings_and_names_but_not_logit_standardization():
    """LOGIT_STAND lives under EXPERIMENT (the LS repository's key) yet changes every logit loss,
    so it is not among the safe-on-resume keys; the exact speed settings and the names are."""
    saved = yaml.safe_load(dump_cfg(load_cfg(None, [])))
    cfg = load_cfg(None, ["EXPERIMENT.LOGIT_STAND", "True", "SOLVER.CHANNELS_LAST", "False",
                          "DISTILLER.TEACHER_CHUNK", "32", "EXPERIMENT.TAG", "renamed"])
    assert [key for key, _, _ in config_changes(saved, cfg)] == ["EXPERIMENT.LOGIT_STAND"]
