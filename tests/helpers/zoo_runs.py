"""Short real-pipeline runs (zoo models on conftest.py's `data_and_teacher` image folder and
teacher): their config, final checkpoint and a bit-identity check of two checkpoints."""
import os

import torch

from mdistiller.config import load_cfg
from mdistiller.engine.checkpoint import load_checkpoint


def cfg_for(data_and_teacher, prefix, name, method, *extra):
    root, teacher = data_and_teacher
    return load_cfg(None, ["DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", root,
                           "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8", "SOLVER.EPOCHS", "2",
                           "LOG.PREFIX", str(prefix), "LOG.QUIET", "True", "EXPERIMENT.PROJECT", "p",
                           "EXPERIMENT.NAME", name, "DISTILLER.TYPE", method, "DISTILLER.STUDENT", "resnet8",
                           "DISTILLER.TEACHER", "resnet8", "DISTILLER.TEACHER_WEIGHTS", teacher, *extra])


def latest(cfg):
    return load_checkpoint(os.path.join(cfg.LOG.PREFIX, "p", cfg.EXPERIMENT.NAME, "latest"))


def assert_same_weights(a, b):
    assert a["epoch"] == b["epoch"] and a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
