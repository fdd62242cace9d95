"""engine.build.train_paired with the real pipeline (image-folder data, zoo models, registered
distillers): students equal their solo `train` runs, and a mixed one/two-view group trains."""
import os

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.engine.build import train, train_paired
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from test_trainer_support import one_thread, write_colour_folder  # noqa: F401

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def data_and_teacher(tmp_path_factory):
    """train/<class>/*.png (8 per class), test/<class>/*.png (4 per class), 16x16; and a random
    resnet8 saved as a teacher checkpoint."""
    root = tmp_path_factory.mktemp("paired_data")
    write_colour_folder(root, CLASSES)
    torch.manual_seed(5)
    teacher = root / "teacher.pth"
    torch.save({"model": create_model("resnet8", len(CLASSES), "cifar100").state_dict()}, teacher)
    return str(root), str(teacher)


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


def test_paired_students_equal_their_solo_runs(data_and_teacher, tmp_path):
    methods = (("vanilla", "NONE", ["SOLVER.LR", "0.1"]), ("kd", "KD", []), ("dkd", "DKD", ["DKD.WARMUP", "1"]))
    solo = [cfg_for(data_and_teacher, tmp_path / "solo", n, m, *x) for n, m, x in methods]
    for cfg in solo:
        train(cfg)
    paired = [cfg_for(data_and_teacher, tmp_path / "paired", n, m, *x) for n, m, x in methods]
    best = train_paired(paired)
    assert len(best) == 3 and all(b is not None for b in best)
    for a, b in zip(solo, paired):
        assert_same_weights(latest(a), latest(b))
    folder = os.path.join(tmp_path, "paired", "p", "kd")
    assert {"latest", "best", "student_best", "student_latest", "worklog.txt", "train.events",
            "config.yaml"} <= set(os.listdir(folder))


def test_mixed_views_group_trains_and_resumes(data_and_teacher, tmp_path):
    def group(epochs):
        return [cfg_for(data_and_teacher, tmp_path, "kd", "KD", "SOLVER.EPOCHS", epochs),
                cfg_for(data_and_teacher, tmp_path, "sld", "SLD", "SOLVER.TRAINER", "ours", "SOLVER.EPOCHS", epochs)]

    train_paired(group(1))
    assert train_paired(group(2), resume=True)[1] is not None
    assert [latest(cfg)["epoch"] for cfg in group(2)] == [2, 2]


def test_group_with_other_teacher_weights_is_refused(data_and_teacher, tmp_path):
    other = os.path.join(tmp_path, "other.pth")
    torch.manual_seed(6)
    torch.save({"model": create_model("resnet8", len(CLASSES), "cifar100").state_dict()}, other)
    cfgs = [cfg_for(data_and_teacher, tmp_path, "a", "KD"),
            cfg_for(data_and_teacher, tmp_path, "b", "KD", "DISTILLER.TEACHER_WEIGHTS", other)]
    with pytest.raises(ConfigError, match=r"paired runs need one teacher, but .*b loads other weights than .*a;"):
        train_paired(cfgs)
