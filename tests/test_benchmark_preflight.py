"""tools/benchmark.py fails before the first epoch, and every bad input ends in one line (issue 28).

- The baseline: Vanilla and NONE name the same row; a wrong one is refused before training.
- Everything a matrix needs (configs, data, teachers, output folders, baseline) is checked up
  front and every problem is one line, said once (a missing teacher of 4 runs: one line).
- --spec given a folder or a binary file, --out (and analyze's -o) given a file, read-only
  output folders: one line. Ctrl-C, in-process and with --jobs 2: one line saying how to resume.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers.bench_specs import save_random_teacher, write_run_config, write_spec
from helpers.mounts import tmpfs
from helpers.tiny import REPO, subprocess_env
from helpers.tools import load_tool

benchmark, analyze = load_tool("benchmark"), load_tool("analyze")


def errors(capsys):
    """The `error: ` lines of stderr; nothing else may be there (no traceback)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    return [line[len("error: "):] for line in lines]


def config_tree(tmp_path, data_root, teacher):
    """<tmp>/configs/tiny/kd/a_b.yaml: what --methods NONE KD --pairs a_b reads."""
    folder = tmp_path / "configs" / "tiny" / "kd"
    folder.mkdir(parents=True)
    write_run_config(folder / "a_b.yaml", data_root, tmp_path / "out", teacher)
    return ["--configs-dir", str(tmp_path / "configs"), "--dataset", "tiny", "--pairs", "a_b", "--project", "p"]


def test_baseline_vanilla_names_the_none_row_and_a_wrong_one_fails_before_training(tmp_path, folder_data, capsys):
    tree = config_tree(tmp_path, folder_data, save_random_teacher(tmp_path / "teacher.pth"))
    assert benchmark.main(["--methods", "NONE", "KD", *tree, "--paired", "--baseline", "MLKD", "--no-chart"]) == 2
    assert errors(capsys) == ["--baseline MLKD is not a method of this benchmark (NONE, KD); name one of them"]
    assert not (tmp_path / "out").exists()  # nothing trained

    assert benchmark.main(["--methods", "NONE", "KD", *tree, "--paired", "--baseline", "Vanilla", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "| Method − NONE |" in out and "| KD |" in out
    assert (tmp_path / "out" / "p" / "paired.md").is_file()


def test_a_missing_teacher_is_one_line_and_nothing_runs_or_is_written(tmp_path, folder_data, capsys):
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "out", tmp_path / "gone.pth")
    spec = write_spec(tmp_path, {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]},
                                 "KD": str(config), "DKD": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "DKD"]}},
                      seeds=(0, 1), paired=True)
    assert benchmark.main(["--spec", str(spec)]) == 2
    assert errors(capsys) == [f"config key DISTILLER.TEACHER_WEIGHTS is '{tmp_path}/gone.pth', which does not exist; "
                              "point it to a teacher checkpoint (e.g. a run's student_best)"]
    assert not (tmp_path / "out").exists()  # no run folder, no results.*, no paired.md


def test_every_problem_of_a_matrix_is_reported_at_once_each_once(tmp_path, capsys, monkeypatch):
    """The config tree's own recipes, run from a folder without data or teacher checkpoints:
    the data and the zoo teacher are each one line, for every run; with --out a file, a third."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file")
    configs = os.path.join(REPO, "configs")
    assert benchmark.main(["--methods", "KD", "DKD", "--pairs", "res56_res20", "--seeds", "0", "1", "--configs-dir",
                           configs, "--out", "taken", "LOG.PREFIX", str(tmp_path / "out")]) == 2
    lines = errors(capsys)
    assert len(lines) == 3, lines
    assert lines[0].startswith("CIFAR-100 not found under DATASET.ROOT=data")
    assert lines[1].startswith(f"teacher checkpoint for resnet56 not found at {tmp_path}/download_ckpts/")
    assert lines[2] == f"cannot write the tables into taken: {tmp_path}/taken is a file, not a folder; pass --out a " \
                       "writable folder"
    assert not (tmp_path / "out").exists()


def test_configs_that_do_not_load_are_all_reported(tmp_path, folder_data, capsys):
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "out")
    spec = write_spec(tmp_path, {"A": {"cfg": str(config), "opts": ["SOLVER.LRR", 0.1]},
                                 "B": {"cfg": str(config), "opts": ["KD.TEMP", 4]}})
    assert benchmark.main(["--spec", str(spec)]) == 2
    lines = errors(capsys)
    assert len(lines) == 2 and "SOLVER.LRR" in lines[0] and "KD.TEMP" in lines[1]
    # configs that load but whose distiller settings no run could start with: each seed's run, one line
    spec = write_spec(tmp_path, {"KD": {"cfg": str(config), "opts": ["KD.TEMPERATURE", -1]},
                                 "Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]}}, seeds=(0, 1))
    assert benchmark.main(["--spec", str(spec)]) == 2
    lines = errors(capsys)  # and the KD runs' teacher (no TEACHER_WEIGHTS), once
    assert lines[0] == "config key KD.TEMPERATURE is -1.0; it must be a positive number, e.g. 4"
    assert len(lines) == 2 and lines[1].startswith("resnet8 has no default imagefolder teacher checkpoint")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (None, "is a folder; pass a YAML file with --spec"),
    (bytes(range(256)) * 8, "is not UTF-8 text (a binary file?); pass a YAML file with --spec"),
])
def test_a_spec_that_is_a_folder_or_binary_is_one_line(tmp_path, capsys, content, message):
    spec = tmp_path / "spec"
    spec.mkdir() if content is None else spec.write_bytes(content)
    assert benchmark.main(["--spec", str(spec)]) == 2
    assert errors(capsys) == [f"benchmark spec {spec} {message}"]


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()  # an mdistiller run folder: a worklog is enough for a table
    (tmp_path / "run" / "worklog.txt").write_text(f"{'-' * 25}\nepoch: 1\nlr: 0.05\ntest_acc: 71.25\n"
                                                  f"test_acc_top5: 90.00\n{'-' * 25}\nbest_acc\t71.25")
    (tmp_path / "taken").write_text("a file")
    assert benchmark.main(["--runs-dir", str(tmp_path / "run"), "--out", str(tmp_path / "taken")]) == 2
    assert errors(capsys) == [f"cannot write the tables into {tmp_path}/taken: {tmp_path}/taken is a file, not a "
                              "folder; pass --out a writable folder"]
    assert analyze.main(["-c", str(tmp_path / "run" / "student_best"), "-o", str(tmp_path / "taken")]) == 2
    assert errors(capsys) == [f"cannot write the analysis into {tmp_path}/taken: {tmp_path}/taken is a file, not a "
                              "folder; pass -o/--out a writable folder"]
    assert (tmp_path / "taken").read_text() == "a file"


def test_read_only_output_folders_are_one_line(tmp_path, folder_data, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "worklog.txt").write_text(f"{'-' * 25}\nepoch: 1\nlr: 0.05\ntest_acc: 71.25\n{'-' * 25}\n")
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "ro")
    spec = write_spec(tmp_path, {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]}})
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        assert benchmark.main(["--spec", str(spec)]) == 2
        assert errors(capsys) == [f"cannot write the runs into {ro}/tt: {ro} is on a read-only file system; set "
                                  "LOG.PREFIX to a writable folder",
                                  f"cannot write the tables into {ro}/tt: {ro} is on a read-only file system; pass "
                                  "--out a writable folder"]
        assert benchmark.main(["--spec", str(spec), "--report-only", "--out", str(ro)]) == 2
        assert errors(capsys) == [f"cannot write the tables into {ro}: {ro} is on a read-only file system; pass --out "
                                  "a writable folder"]
        assert benchmark.main(["--runs-dir", str(tmp_path / "run"), "--out", str(ro / "tables")]) == 2
        assert len(errors(capsys)) == 1
        assert analyze.main(["-c", str(tmp_path / "run" / "student_best"), "-o", str(ro / "analysis")]) == 2
        assert errors(capsys) == [f"cannot write the analysis into {ro}/analysis: {ro} is on a read-only file system; "
                                  "pass -o/--out a writable folder"]


def test_a_paired_group_that_never_committed_starts_again_with_nothing_moved(tmp_path, folder_data, capsys):
    teacher = tmp_path / "teacher.pth"
    teacher.write_bytes(b"damaged")  # there, so the checks pass; loading it fails the group
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "out", teacher)
    spec = write_spec(tmp_path, {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]},
                                 "KD": str(config)}, paired=True)
    assert benchmark.main(["--spec", str(spec), "--no-chart"]) == 1
    save_random_teacher(teacher)
    capsys.readouterr()
    assert benchmark.main(["--spec", str(spec), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "moved the old outputs" not in out
    assert not list((tmp_path / "out").glob("tt/*/replaced"))


# ---------------------------------------------------------------- Ctrl-C
def interrupt_when_training(argv, folder, timeout=600):
    """Start tools/benchmark.py, send SIGINT to its process group (as a terminal's Ctrl-C) once
    a worklog under `folder` holds an epoch; (exit code, stdout, stderr)."""
    child = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), *map(str, argv)],
                             env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.time() + timeout
    while not any("epoch: 1" in p.read_text() for p in folder.glob("*/worklog.txt")) and time.time() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=timeout)
    return child.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path, folder_data, jobs):
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "out")
    spec = write_spec(tmp_path, {m: {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE", "SOLVER.LR", lr]}
                                 for m, lr in (("A", 0.05), ("B", 0.1))}, seeds=(0, 1), opts=["SOLVER.EPOCHS", 4])
    code, out, err = interrupt_when_training(["--spec", spec, "--no-chart", *jobs], tmp_path / "out" / "tt")
    assert code == 130 and "Traceback" not in out + err, out + err
    assert err.strip() == ("interrupted; rerun the same command to continue: complete runs are skipped and an "
                           "interrupted run resumes after its last committed epoch")
    assert not list((tmp_path / "out" / "tt").glob("*.lock"))  # every claim was released
    again = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--spec", str(spec),
                            "--no-chart", *jobs], env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "0 failed" in again.stdout, again.stdout + again.stderr
