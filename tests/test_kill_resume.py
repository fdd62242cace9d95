"""Kill/resume harness: real `tools/train.py` processes are SIGKILLed at random moments, during
epochs and while a checkpoint is being written, then continued with `--resume`; every trial
must end with the same final weights, optimizer state and `worklog.txt` (byte for byte) as
an uninterrupted run of the same config.

Data: a tiny real subset (4 CIFAR-100 classes, 12 train / 4 test images each, copied as an
image folder). Models: resnet8 student, a fixed random resnet8 teacher. Configs: Vanilla, KD
and SLD (two views, the student swap switching on mid-run), each with DATASET.NUM_WORKERS 0
and 2. Each config gets one uninterrupted reference run, then KILL_TRIALS trials, alternating
the two kill modes:
  epoch  kill at a random time while the run trains (after its start-up line);
  write  kill as soon as a checkpoint temp file (`.tmp_*`, see engine/checkpoint.py) has
         appeared in the run folder for the k-th time, k random: mid-write.
A trial kills up to KILLS_PER_TRIAL times (resuming in between) before the final resume.
Everything runs with one thread per process, so the runs are bit-for-bit deterministic.
`MDISTILLER_KILL_TRIALS` (default 2 per config) and `MDISTILLER_KILL_SEED` change the amount
and the random draws; the printed summary says N/N trials identical.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mdistiller.engine.checkpoint import load_checkpoint
from helpers.data import write_real_subset
from helpers.tiny import REPO, subprocess_env

pytestmark = pytest.mark.slow

KILL_TRIALS = int(os.environ.get("MDISTILLER_KILL_TRIALS", "2"))  # per config
KILL_SEED = int(os.environ.get("MDISTILLER_KILL_SEED", "0"))
KILLS_PER_TRIAL = 2
CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 12, 4
EPOCHS = 3
METHODS = {
    "Vanilla": ["DISTILLER.TYPE", "NONE"],
    "KD": ["DISTILLER.TYPE", "KD"],
    "SLD": ["DISTILLER.TYPE", "SLD", "SOLVER.TRAINER", "ours", "SLD.GAMMA", "1"],
}
CONFIGS = [(method, workers) for method in METHODS for workers in (0, 2)]


@pytest.fixture(scope="module")
def setup(cifar_root, tmp_path_factory):
    from mdistiller.models import create_model

    root = tmp_path_factory.mktemp("kill_resume")
    write_real_subset(str(cifar_root), str(root / "data"), CLASSES, (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)))
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", CLASSES, "imagefolder").state_dict()}, root / "teacher")
    return root


def argv(setup, method, workers, name, *flags):
    return [sys.executable, os.path.join(REPO, "tools", "train.py"), *flags, "--quiet",
            "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(setup / "data"),
            "DATASET.NUM_WORKERS", str(workers), "SOLVER.BATCH_SIZE", "16", "SOLVER.EPOCHS", str(EPOCHS),
            "DATASET.TEST.BATCH_SIZE", "16", "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
            "DISTILLER.TEACHER_WEIGHTS", str(setup / "teacher"), "LOG.SAVE_CHECKPOINT_FREQ", "1",
            "LOG.PREFIX", str(setup / "out"), "EXPERIMENT.PROJECT", "k", "EXPERIMENT.NAME", name, *METHODS[method]]


def start(cmd):
    return subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: the kill takes loader workers along


def wait_for_training(proc):
    """Read stdout up to the start-up line ('output: ...'): training begins right after it."""
    for line in proc.stdout:
        if line.startswith("output:"):
            return True
    return False


def kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def kill_during_epochs(proc, train_seconds, rng):
    """SIGKILL at a random moment of the training phase; False when the run finished first."""
    if not wait_for_training(proc):
        kill(proc)
        return False
    deadline = time.monotonic() + rng.uniform(0.0, 0.8 * train_seconds)  # the end is mostly clean-up
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            kill(proc)
            return False
        time.sleep(0.002)
    finished = proc.poll() is not None
    kill(proc)
    return not finished


def kill_during_write(proc, folder, rng):
    """SIGKILL as soon as a checkpoint temp file is seen for the k-th time (k random among the
    first half of the run's 6 writes per epoch: a short write can pass unseen); False when the
    run finished first."""
    target, seen, last = rng.randint(1, 3 * EPOCHS), 0, set()
    while proc.poll() is None:
        try:
            temps = {n for n in os.listdir(folder) if n.startswith(".tmp_")}
        except FileNotFoundError:
            temps = set()
        seen += len(temps - last)
        last = temps
        if seen >= target:
            kill(proc)
            return True
    kill(proc)
    return False


def finished_state(folder):
    ckpt = load_checkpoint(os.path.join(folder, "latest"))
    with open(os.path.join(folder, "worklog.txt"), "rb") as f:
        return ckpt, f.read()


def same_state(a, b):
    """'' when two final `latest` checkpoints agree in epoch, best_acc, every weight and every
    optimizer state tensor, else what differs."""
    if (a["epoch"], a["best_acc"]) != (b["epoch"], b["best_acc"]):
        return f"epoch/best_acc {a['epoch']}/{a['best_acc']} vs {b['epoch']}/{b['best_acc']}"
    for key in a["model"]:
        if not torch.equal(a["model"][key], b["model"][key]):
            return f"weight {key}"
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value) and not torch.equal(value, b["optimizer"]["state"][index][name]):
                return f"optimizer state {index}.{name}"
    return ""


def run_trial(setup, method, workers, trial, train_seconds, rng):
    """Kill a run up to KILLS_PER_TRIAL times, resume it to the end; returns (kills, folder)."""
    name = f"{method}-w{workers}-t{trial}"
    folder = os.path.join(setup, "out", "k", name)
    kills, flags = 0, []
    mode = ("epoch", "write")[trial % 2]
    for _ in range(KILLS_PER_TRIAL):
        proc = start(argv(setup, method, workers, name, *flags))
        killed = (kill_during_epochs(proc, train_seconds, rng) if mode == "epoch"
                  else kill_during_write(proc, folder, rng))
        if not killed:  # it finished first
            assert proc.returncode == 0, f"{name} failed on its own (exit code {proc.returncode})"
            return kills, folder, mode
        kills += 1
        # killed before the run folder was set up: nothing to resume (and --resume says so)
        flags = ["--resume"] if os.path.isfile(os.path.join(folder, "config.yaml")) else []
    done = subprocess.run(argv(setup, method, workers, name, *flags), env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{name}: {done.stderr.strip()[-500:]}"
    return kills, folder, mode


def test_sigkilled_runs_resume_to_identical_weights_and_worklog(setup):
    rng = random.Random(KILL_SEED)
    results = []
    for method, workers in CONFIGS:
        name = f"{method}-w{workers}-reference"
        proc = start(argv(setup, method, workers, name))
        assert wait_for_training(proc), proc.stderr.read()
        began = time.monotonic()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        train_seconds = time.monotonic() - began
        reference = finished_state(os.path.join(setup, "out", "k", name))
        for trial in range(KILL_TRIALS):
            kills, folder, mode = run_trial(setup, method, workers, trial, train_seconds, rng)
            state, log = finished_state(folder)
            diff = same_state(reference[0], state) or ("worklog.txt" if log != reference[1] else "")
            results.append((f"{method} NUM_WORKERS {workers} trial {trial} ({mode}, {kills} kill(s))", kills, diff))
    identical = sum(1 for _, _, diff in results if not diff)
    killed = sum(1 for _, kills, _ in results if kills)
    print(f"\nkill/resume: {identical}/{len(results)} trials identical to the uninterrupted run "
          f"({killed} trials killed at least once, {sum(k for _, k, _ in results)} SIGKILLs, seed {KILL_SEED})")
    for label, kills, diff in results:
        print(f"  {label}: {'identical' if not diff else 'DIFFERS: ' + diff}")
    assert identical == len(results), [r for r in results if r[2]]
    assert killed >= len(results) // 2, "too few trials were killed before finishing: the harness tests little"
