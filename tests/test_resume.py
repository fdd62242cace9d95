"""Exact resume: a run killed with SIGKILL (mid-epoch, or in the middle of writing `latest`) and
resumed with --resume ends with bit-identical weights and optimizer state to an uninterrupted
run (CPU, one thread, deterministic).

The interrupted run is a child process (`python tests/test_resume.py ...`, see `child` below)
so that a real SIGKILL can hit it at a chosen point.
"""
import os
import signal
import subprocess
import sys
import tempfile

import torch

from mdistiller.config import load_cfg
from mdistiller.engine.build import train
from mdistiller.engine.checkpoint import load_checkpoint
from helpers.tiny import subprocess_env, tiny_cfg, tiny_trainer, write_colour_folder

EPOCHS = 3  # 4 iterations per epoch


def run_child(prefix, name, *flags):
    cmd = [sys.executable, os.path.abspath(__file__), str(prefix), name, *flags]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)


def assert_same_state(a, b):
    assert a["epoch"] == b["epoch"] == EPOCHS and a["best_acc"] == b["best_acc"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][index]["momentum_buffer"])


def finished(prefix, name):
    folder = os.path.join(prefix, "p", name)
    return load_checkpoint(os.path.join(folder, "latest")), open(os.path.join(folder, "worklog.txt")).read()


def test_killed_runs_resume_to_identical_weights(tmp_path):
    # The reference runs in this process: same code, one thread, same seeds as the children.
    tiny_trainer(tiny_cfg(tmp_path, "EXPERIMENT.NAME", "straight", "SOLVER.EPOCHS", EPOCHS)).fit()
    reference, reference_log = finished(tmp_path, "straight")

    # killed after 6 steps: epoch 1 is committed, epoch 2 is half done
    killed = run_child(tmp_path, "killed", "--kill-after-steps", "6")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(os.path.join(tmp_path, "p", "killed", "latest"))["epoch"] == 1
    # resumed, then killed while epoch 3's `latest` is half written: the old one (epoch 2) survives
    killed = run_child(tmp_path, "killed", "--resume", "--kill-in-save", "3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "resuming" in killed.stdout and "after epoch 1" in killed.stdout
    assert load_checkpoint(os.path.join(tmp_path, "p", "killed", "latest"))["epoch"] == 2
    resumed = run_child(tmp_path, "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    state, log = finished(tmp_path, "killed")
    assert_same_state(reference, state)
    assert log == reference_log  # epoch 3's block, logged before the kill, was not duplicated


def test_resume_is_exact_with_data_loader_workers(tmp_path):
    """The PIL path with 2 worker processes (augmenting in them): 1 epoch, then resumed to 3,
    equals 3 epochs straight."""
    write_colour_folder(tmp_path / "data", ("c0", "c1", "c2"), (("train", 12), ("test", 3)))

    def cfg(name, epochs):
        return load_cfg(opts=["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(tmp_path / "data"),
                              "DATASET.NUM_WORKERS", 2, "SOLVER.BATCH_SIZE", 8, "SOLVER.EPOCHS", epochs,
                              "LOG.PREFIX", str(tmp_path), "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", name,
                              "LOG.QUIET", True, "DISTILLER.STUDENT", "resnet8"])

    train(cfg("straight", 3))
    train(cfg("resumed", 1))
    train(cfg("resumed", 3), resume=True)
    a, b = (load_checkpoint(os.path.join(tmp_path, "p", name, "latest")) for name in ("straight", "resumed"))
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def child(argv):
    """Child process: train the tiny run `name` under `prefix`, optionally dying on purpose."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("prefix")
    parser.add_argument("name")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after-steps", type=int, default=0)
    parser.add_argument("--kill-in-save", type=int, default=0, help="die while writing this epoch's latest")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = tiny_cfg(args.prefix, "EXPERIMENT.NAME", args.name, "SOLVER.EPOCHS", EPOCHS)
    hooks, steps = [], []
    if args.kill_after_steps:
        def kill_after(epoch, iteration):
            steps.append(1)
            if len(steps) == args.kill_after_steps:
                os.kill(os.getpid(), signal.SIGKILL)
        hooks.append(kill_after)
    if args.kill_in_save:
        real_save, real_mkstemp, temp_paths = torch.save, tempfile.mkstemp, []

        def recording_mkstemp(*a, **kw):
            fd, path = real_mkstemp(*a, **kw)
            temp_paths.append(path)
            return fd, path

        def dying_save(obj, f, *a, **kw):
            is_latest = os.path.basename(temp_paths[-1]).startswith(".tmp_latest")
            if is_latest and obj.get("epoch") == args.kill_in_save:
                f.write(b"half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **kw)

        tempfile.mkstemp, torch.save = recording_mkstemp, dying_save
    tiny_trainer(cfg, hooks=hooks).fit(resume=args.resume)


if __name__ == "__main__":
    child(sys.argv[1:])
