"""Section 2: no path loses a finished result (run folders, run names, locks, resume, commits, SIGTERM)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # read checkpoints and worklogs with this checkout's readers


def _folder(ctx, name, project="rel"):
    return Path(ctx.output, project, name)


def _one_line_refusal(ctx, done, what, *needles):
    """rc 2, one `error:` line on stderr holding every needle."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ok = done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    ctx.expect(ok and all(n in lines[0] for n in needles),
               f"{what}: expected one error line with {needles}, got rc {done.returncode}: {done.stderr[-400:]}")


def _trained(ctx, name, *extra):
    done = ctx.run("train", *ctx.train_args(name, *extra))
    ctx.expect(done.returncode == 0, f"training {name} failed (rc {done.returncode}): {done.stderr[-300:]}")
    return _folder(ctx, name)


def _epochs_of(path):
    from mdistiller.engine.checkpoint import load_checkpoint

    return load_checkpoint(str(path))["epoch"]


def _worklog_epochs(folder):
    from mdistiller.engine.worklog import read_worklog

    return [int(e["epoch"]) for e in read_worklog(str(folder / "worklog.txt")).epochs]


def student_files_without_latest_are_results(ctx):
    folder = _trained(ctx, "students_only")
    for name in ("latest", "best"):
        (folder / name).unlink()
    token = ctx.keep_results(folder)
    done = ctx.run("train", *ctx.train_args("students_only"))
    _one_line_refusal(ctx, done, "a fresh run on student_best/student_latest/worklog", "--overwrite", "student_best")
    done = ctx.run("train", *ctx.train_args("students_only"), "--resume")
    _one_line_refusal(ctx, done, "--resume without latest", "--overwrite")
    ctx.check_results(token)
    done = ctx.run("train", *ctx.train_args("students_only"), "--overwrite")
    ctx.expect(done.returncode == 0 and "replaced" in done.stdout, f"--overwrite failed: {done.stderr[-300:]}")
    ctx.expect((folder / "replaced" / "1" / "student_best").is_file(), "student_best was not moved to replaced/1")
    ctx.check_results(token)


def a_checkpoint_of_any_name_is_a_result(ctx):
    source = _trained(ctx, "any_name_source")
    folder = _folder(ctx, "any_name")
    folder.mkdir(parents=True)
    shutil.copy(source / "student_best", folder / "my_weights.bin")
    token = ctx.keep_results(folder)
    done = ctx.run("train", *ctx.train_args("any_name"))
    _one_line_refusal(ctx, done, "a folder holding a renamed checkpoint", "my_weights.bin", "--overwrite")
    ctx.check_results(token)


def a_run_that_never_committed_starts_again(ctx):
    folder = _folder(ctx, "never_committed")
    (folder / "train.events").mkdir(parents=True)
    (folder / "config.yaml").write_text("SOLVER: {LR: 0.05}\n")
    (folder / ".staged_latest").write_bytes(b"half an epoch")  # killed while staging its first epoch
    for flags in ((), ("--overwrite",)):
        done = ctx.run("train", *ctx.train_args("never_committed"), *flags)
        ctx.expect(done.returncode == 0, f"a folder without results {flags} did not start: {done.stderr[-300:]}")
        ctx.expect("moved the old outputs" not in done.stdout, f"a run that never committed was 'moved' {flags}")
        ctx.expect(not (folder / "replaced").exists(), f"replaced/ made for a run that never committed {flags}")
        if not flags:
            shutil.rmtree(folder)  # the second round: an empty folder again, then --overwrite
            (folder / "train.events").mkdir(parents=True)


def overwrite_moves_nested_runs_along(ctx):
    outer = _trained(ctx, "outer")
    nested_prefix = outer / "train.events"
    done = ctx.run("train", *ctx.train_args("inner", "LOG.PREFIX", str(nested_prefix)))
    ctx.expect(done.returncode == 0, f"the nested run failed: {done.stderr[-300:]}")
    token = ctx.keep_results(outer)
    inner = nested_prefix / "rel" / "inner"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:  # the nested run, being trained by another process, is not pulled away from under it
        Path(str(inner) + ".lock").write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid,
                                                          "job_id": None, "since": "t"}))
        done = ctx.run("train", *ctx.train_args("outer"), "--overwrite")
        _one_line_refusal(ctx, done, "--overwrite of a folder with a live nested run", f"pid {sleeper.pid}")
    finally:
        sleeper.kill()
        sleeper.wait()
    done = ctx.run("train", *ctx.train_args("outer"), "--overwrite")
    ctx.expect(done.returncode == 0, f"--overwrite of a folder with a nested run failed: {done.stderr[-300:]}")
    ctx.expect((outer / "replaced" / "1" / "train.events" / "rel" / "inner" / "student_best").is_file(),
               "the nested run was not moved into replaced/1 with the rest")
    ctx.check_results(token)


def run_names_are_one_folder_each(ctx):
    victim = ctx.output / "victim"
    victim.mkdir()
    (victim / "config.yaml").write_text("keep: me\n")
    token = ctx.keep_results(victim)
    cases = {"NAME absolute": ("EXPERIMENT.NAME", str(ctx.ws / "elsewhere")),
             "PROJECT ..": ("EXPERIMENT.PROJECT", ".."),
             "NAME ../victim": ("EXPERIMENT.NAME", "../victim"),
             "NAME and TAG empty": ("EXPERIMENT.NAME", "", "EXPERIMENT.TAG", "")}
    for what, extra in cases.items():
        args = ctx.train_args("x") + list(extra)
        if what == "PROJECT ..":
            args += ["EXPERIMENT.NAME", "victim"]
        done = ctx.run("train", *args)
        _one_line_refusal(ctx, done, what, "EXPERIMENT.")
    ctx.check_results(token)
    ctx.expect(not (ctx.ws / "elsewhere").exists(), "NAME /abs/path wrote outside LOG.PREFIX")
    spec = ctx.output / "spec.yaml"
    spec.write_text(f"project: ../victim\nmethods:\n  V: {ctx.output / 'none.yaml'}\n")
    (ctx.output / "none.yaml").write_text("DISTILLER: {TYPE: NONE}\n")
    done = ctx.run("benchmark", "--spec", str(spec), "--dry-run")
    _one_line_refusal(ctx, done, "a spec's project: ../victim", "project")
    ctx.check_results(token)


@contextmanager
def _process(ctx, argv):
    proc = subprocess.Popen(argv, env=ctx.env(), cwd=str(ctx.ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not Path(path).exists():
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def _while_holding(ctx, argv, folder, what, attempts):
    """Runs `argv` (a trainer or launcher of `folder`); once it holds the run lock it is paused
    (alive, holding it) while `attempts(pid)` runs, then it goes on and must finish cleanly."""
    with _process(ctx, argv) as proc:
        ctx.expect(_wait_for(str(folder) + ".lock", proc), f"{what} never took the run lock")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            attempts(proc.pid)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
        ctx.expect(proc.returncode == 0, f"{what} failed: {out[-300:]} {err[-300:]}")
    ctx.expect(_worklog_epochs(folder) == [1, 2, 3], f"worklog epochs {_worklog_epochs(folder)}, expected 1 2 3")
    ctx.expect((folder / "worklog.txt").read_text().count("best_acc") == 1, "the worklog has two best_acc lines")
    ctx.expect(not Path(str(folder) + ".lock").exists(), "the run lock was left behind")


def two_trainers_on_one_folder(ctx):
    args = ctx.train_args("shared", "SOLVER.EPOCHS", "3")

    def second_trainer(pid):
        done = ctx.run("train", *args, "--overwrite")
        _one_line_refusal(ctx, done, "a second trainer on a live run", f"pid {pid}", ".lock")
        done = ctx.run("train", *args, "--resume")
        _one_line_refusal(ctx, done, "--resume of a live run", f"pid {pid}")

    argv = [sys.executable, str(REPO / "tools" / "train.py"), *args]
    _while_holding(ctx, argv, _folder(ctx, "shared"), "the first trainer", second_trainer)


def resume_under_a_live_benchmark_lock(ctx):
    config = ctx.output / "vanilla.yaml"
    config.write_text(f"DATASET: {{TYPE: imagefolder, ROOT: {ctx.image_folder()}}}\n"  # the matrix checks find data
                      "DISTILLER: {TYPE: NONE, STUDENT: resnet8}\n")
    spec = ctx.output / "bench.yaml"
    opts = ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", ctx.image_folder(),
            "DATASET.NUM_WORKERS", 0, "SOLVER.BATCH_SIZE", 8, "SOLVER.EPOCHS", 3, "LOG.QUIET", True,
            "LOG.PREFIX", ctx.output]
    spec.write_text(f"project: benchlock\nseeds: [0]\nopts: {json.dumps([str(o) for o in opts])}\n"
                    f"methods:\n  Vanilla: {config}\npairs:\n  p: []\n")

    def resumed_trainer(pid):
        args = ctx.train_args("Vanilla,p,seed0", project="benchlock") + ["SOLVER.EPOCHS", "3", "--resume"]
        done = ctx.run("train", "--cfg", str(config), *args)
        _one_line_refusal(ctx, done, "train.py --resume under a live benchmark lock", f"pid {pid}")

    argv = [sys.executable, str(REPO / "tools" / "benchmark.py"), "--spec", str(spec), "--no-chart"]
    _while_holding(ctx, argv, ctx.output / "benchlock" / "Vanilla,p,seed0", "the benchmark", resumed_trainer)


def unreadable_and_odd_locks(ctx):
    folder = _folder(ctx, "odd_lock")
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(folder) + ".lock")
    for content in ("", "{not json"):
        lock.write_text(content)
        done = ctx.run("train", *ctx.train_args("odd_lock"))
        _one_line_refusal(ctx, done, f"lock holding {content!r}", str(lock), "delete")
        ctx.expect(lock.read_text() == content, "an unreadable lock was replaced")
    for pid in (0, -1):
        lock.write_text(json.dumps({"host": os.uname().nodename, "pid": pid, "job_id": None, "since": "t"}))
        done = ctx.run("train", *ctx.train_args("odd_lock"), "--overwrite")
        ctx.expect(done.returncode == 0, f"a lock naming pid {pid} was taken for a live holder: {done.stderr[-300:]}")


def _full_tmpfs(ctx, name, size="4m"):
    """A tmpfs mounted under output/ (root only), or None."""
    mount = ctx.output / name
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        return None
    return mount


def _fill(mount, leave_bytes):
    free = shutil.disk_usage(mount).free - leave_bytes
    with open(mount / "filler", "wb") as f:
        f.write(b"\0" * max(free, 0))


def _unmount(mount):
    subprocess.run(["umount", str(mount)], capture_output=True)


def full_disk_while_locking_and_saving(ctx):
    mount = _full_tmpfs(ctx, "small_disk")
    if mount is None:
        print(f"       {ctx.case}: skipped (mounting a small tmpfs needs root)")
        return
    try:
        _fill(mount, 0)
        done = ctx.run("train", *ctx.train_args("full", "LOG.PREFIX", str(mount)))
        _one_line_refusal(ctx, done, "a full disk while taking the run lock", ".lock", "disk is full")
        ctx.expect(not list(mount.glob("**/*.lock")), "a lock was left on the full disk")
        (mount / "filler").unlink()
        done = ctx.run("train", *ctx.train_args("full", "LOG.PREFIX", str(mount)))
        ctx.expect(done.returncode == 0, f"the run on the small disk failed: {done.stderr[-300:]}")
        folder = mount / "rel" / "full"
        _fill(mount, 64 << 10)
        done = ctx.run("train", *ctx.train_args("full", "LOG.PREFIX", str(mount), "SOLVER.EPOCHS", "2"), "--resume")
        _one_line_refusal(ctx, done, "a full disk while committing epoch 2", "disk is full", "epoch 2")
        ctx.expect(_epochs_of(folder / "latest") == _epochs_of(folder / "best") == 1, "latest/best left at epoch 2")
        ctx.expect(_worklog_epochs(folder) == [1], f"worklog epochs {_worklog_epochs(folder)} after a failed commit")
        ctx.expect(not [p for p in os.listdir(folder) if p.startswith((".tmp_", ".staged_"))], "staged files left")
    finally:
        _unmount(mount)
    config = ctx.output / "bench_none.yaml"
    config.write_text(f"DATASET: {{TYPE: imagefolder, ROOT: {ctx.image_folder()}}}\n"  # the matrix checks find data
                      "DISTILLER: {TYPE: NONE, STUDENT: resnet8}\n")
    mount = _full_tmpfs(ctx, "small_bench_disk", "64k")
    try:
        spec = ctx.output / "bench_full.yaml"
        spec.write_text(f"project: full\nopts: [LOG.PREFIX, {mount}]\nmethods:\n  V: {config}\npairs:\n  p: []\n")
        (mount / "full").mkdir()
        _fill(mount, 0)
        done = ctx.run("benchmark", "--spec", str(spec), "--no-chart")
        _one_line_refusal(ctx, done, "a full disk while a benchmark takes a run lock", ".lock", "disk is full")
    finally:
        _unmount(mount)


def corrupt_config_does_not_turn_the_resume_check_off(ctx):
    folder = _trained(ctx, "corrupt_config")
    (folder / "config.yaml").write_bytes(b"\x00\xff{{{ not yaml")
    token = ctx.keep_results(folder)
    done = ctx.run("train", *ctx.train_args("corrupt_config", "SOLVER.LR", "0.5"), "--resume")
    _one_line_refusal(ctx, done, "--resume SOLVER.LR 0.5 with a corrupt config.yaml", "SOLVER.LR")
    ctx.check_results(token)
    ctx.expect((folder / "config.yaml").read_bytes() == b"\x00\xff{{{ not yaml", "config.yaml was rewritten")


def sigterm_names_the_committed_epoch(ctx):
    folder = _folder(ctx, "sigterm")
    argv = [sys.executable, str(REPO / "tools" / "train.py"), *ctx.train_args("sigterm", "SOLVER.EPOCHS", "500")]
    with _process(ctx, argv) as proc:
        ctx.expect(_wait_for(folder / "latest", proc), "no epoch was committed before the SIGTERM")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    ctx.expect(proc.returncode == 143, f"SIGTERM exit code {proc.returncode}, expected 143")
    ctx.expect(len(lines) == 1 and "SIGTERM" in lines[0] and "is committed" in lines[0] and "--resume" in lines[0],
               f"SIGTERM message: {err[-400:]}")
    epoch = _epochs_of(folder / "latest")
    ctx.expect(f"epoch {epoch} is committed" in err, f"the message does not name epoch {epoch}: {err[-300:]}")
    ctx.expect(_worklog_epochs(folder)[-1:] == [epoch], "the worklog does not end at the committed epoch")


CASES = [
    ("student files and a worklog without latest are results", student_files_without_latest_are_results),
    ("a checkpoint of any name is a result", a_checkpoint_of_any_name_is_a_result),
    ("a run that never committed starts again, nothing 'moved'", a_run_that_never_committed_starts_again),
    ("--overwrite moves nested runs along (not a live one)", overwrite_moves_nested_runs_along),
    ("PROJECT/NAME/TAG and a spec's project are one folder each", run_names_are_one_folder_each),
    ("two tools/train.py on one folder: the second is refused", two_trainers_on_one_folder),
    ("train.py --resume under a live benchmark lock is refused", resume_under_a_live_benchmark_lock),
    ("empty, corrupt and pid 0/-1 locks", unreadable_and_odd_locks),
    ("full disk: lock creation, epoch commit, benchmark lock", full_disk_while_locking_and_saving),
    ("a corrupt config.yaml does not turn the resume check off", corrupt_config_does_not_turn_the_resume_check_off),
    ("SIGTERM names the committed epoch and the resume command", sigterm_names_the_committed_epoch),
]
