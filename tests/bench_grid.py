"""A small benchmark matrix that learns: Vanilla and KD students (demo_cnn_tiny) on 400 of the
embedded demo digits, for the launcher tests (test_launch_local.py, test_slurm_launcher.py)."""
import csv

import torch

from mdistiller.models import create_model


def write_spec(tmp_path, teacher, seeds=(0, 1), epochs=2, methods=("Vanilla", "KD"), train=400):
    """A matrix on `train` demo digits (400 test); `teacher` is the KD runs' TEACHER_WEIGHTS."""
    config = tmp_path / "run.yaml"
    config.write_text(
        f"DATASET:\n  TYPE: demo\n  NUM_WORKERS: 0\n  TRAIN_SUBSET: {train}\n  TEST_SUBSET: 400\n"
        f"DISTILLER:\n  TYPE: KD\n  TEACHER: demo_cnn_tiny\n  STUDENT: demo_cnn_tiny\n  TEACHER_WEIGHTS: {teacher}\n"
        f"SOLVER:\n  EPOCHS: {epochs}\n  BATCH_SIZE: 32\n  LR: 0.05\n")
    rows = {"Vanilla": f"{{cfg: {config}, opts: [DISTILLER.TYPE, NONE]}}", "KD": str(config)}
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"project: grid\nseeds: {list(seeds)}\nopts: [LOG.QUIET, true]\nmethods:\n"
                    + "".join(f"  {m}: {rows[m]}\n" for m in methods))
    return str(spec)


def save_teacher(path):
    torch.manual_seed(0)
    torch.save({"model": create_model("demo_cnn_tiny", 10, "demo").state_dict()}, path)


def accuracies(project):
    return {(r["method"], r["seed"]): r["best_top1"] for r in csv.DictReader(open(project / "results.csv"))}


def folder(project, method, seed):
    return project / f"{method},demo_cnn_tiny-demo_cnn_tiny,seed{seed}"
