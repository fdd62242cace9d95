"""engine.build.train_paired with the real pipeline (image-folder data, zoo models, registered
distillers): students equal their solo `train` runs, and a mixed one/two-view group trains."""
import os

import pytest
import torch

from mdistiller.engine.build import train, train_paired
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from helpers.tiny import COLOUR_CLASSES
from helpers.zoo_runs import assert_same_weights, cfg_for, latest


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
    torch.save({"model": create_model("resnet8", len(COLOUR_CLASSES), "cifar100").state_dict()}, other)
    cfgs = [cfg_for(data_and_teacher, tmp_path, "a", "KD"),
            cfg_for(data_and_teacher, tmp_path, "b", "KD", "DISTILLER.TEACHER_WEIGHTS", other)]
    with pytest.raises(ConfigError, match=r"paired runs need one teacher, but .*b loads other weights than .*a;"):
        train_paired(cfgs)
