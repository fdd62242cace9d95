"""Tiny benchmark specs for the tests of tools/benchmark.py's checks and tables: resnet8 on the
3-class colour image folder (write_colour_folder), one CPU epoch per run."""
import torch
import yaml

from helpers.tiny import COLOUR_CLASSES
from mdistiller.models import create_model


def write_run_config(path, data_root, prefix, teacher_weights=""):
    """A KD config (resnet8 -> resnet8) on the image folder; runs go under `prefix`."""
    cfg = {"DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(data_root), "NUM_WORKERS": 0},
           "DISTILLER": {"TYPE": "KD", "TEACHER": "resnet8", "STUDENT": "resnet8",
                         "TEACHER_WEIGHTS": str(teacher_weights)},
           "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 8, "LR": 0.05}, "LOG": {"PREFIX": str(prefix), "QUIET": True}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_spec(folder, methods, project="tt", seeds=(0,), **extra):
    """folder/spec.yaml with `methods` ({row: entry}) and any other top-level keys."""
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"project": project, "seeds": list(seeds), "methods": methods, **extra}))
    return spec


def teacher_and_kd(config, teacher_opts=()):
    """The methods of a spec whose teacher role trains the pair's teacher and a KD student distils from it."""
    return {"Teacher": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE", *teacher_opts], "role": "teacher"},
            "KD": str(config)}


def save_random_teacher(path, seed=0):
    """A random resnet8 for the colour classes, saved as a teacher checkpoint."""
    torch.manual_seed(seed)
    torch.save({"model": create_model("resnet8", len(COLOUR_CLASSES), "cifar100").state_dict()}, path)
    return path
