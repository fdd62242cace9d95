"""The new methods in the real pipeline (image-folder data, zoo models, registered distillers):
DIST, LS (KD, SLD) and the rotate swap train paired equal to their solo runs, resume exactly,
and keep every step's values on the device (meta device: no host read)."""
import os

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.engine.build import train, train_paired
from mdistiller.engine.objective import total_loss
from mdistiller.models import create_model
from helpers.zoo_runs import assert_same_weights, cfg_for, latest

METHODS = (("dist", "DIST", []),
           ("kd_ls", "KD", ["EXPERIMENT.LOGIT_STAND", "True", "KD.TEMPERATURE", "2", "KD.LOSS.KD_WEIGHT", "9"]),
           ("sld_ls_rotate", "SLD", ["SOLVER.TRAINER", "ours", "EXPERIMENT.LOGIT_STAND", "True",
                                     "SLD.SWAP_MODE", "rotate", "SLD.GAMMA", "1"]))


@pytest.mark.parametrize("group", [METHODS[:2], METHODS[2:] + (("mlkd_ls", "MLKD", METHODS[1][2][:2]),)],
                         ids=["one-view", "two-view"])
def test_paired_students_equal_their_solo_runs(data_and_teacher, tmp_path, group):  # noqa: F811
    """Students of one view count see the same data stream paired as solo."""
    solo = [cfg_for(data_and_teacher, tmp_path / "solo", n, m, *x) for n, m, x in group]
    for cfg in solo:
        train(cfg)
    paired = [cfg_for(data_and_teacher, tmp_path / "paired", n, m, *x) for n, m, x in group]
    assert all(b is not None for b in train_paired(paired))
    for a, b in zip(solo, paired):
        assert_same_weights(latest(a), latest(b))


@pytest.mark.parametrize("name, method, extra", METHODS[::2])
def test_resume_equals_the_straight_run(data_and_teacher, tmp_path, name, method, extra):  # noqa: F811
    straight = cfg_for(data_and_teacher, tmp_path / "straight", name, method, *extra)
    train(straight)
    train(cfg_for(data_and_teacher, tmp_path / "resumed", name, method, *extra, "SOLVER.EPOCHS", "1"))
    resumed = cfg_for(data_and_teacher, tmp_path / "resumed", name, method, *extra)
    train(resumed, resume=True)
    assert latest(straight)["epoch"] == 2
    assert_same_weights(latest(straight), latest(resumed))


@pytest.mark.parametrize("opts", [["SLD.SWAP_MODE", "rotate", "EXPERIMENT.LOGIT_STAND", "True"],
                                  ["DISTILLER.TYPE", "MLKD_SWAP", "SLD.SWAP_MODE", "rotate",
                                   "EXPERIMENT.LOGIT_STAND", "True"],
                                  ["DISTILLER.STACK", "[DIST]", "EXPERIMENT.LOGIT_STAND", "True"]])
def test_steps_leave_values_on_the_device(opts):
    """As test_graph_step's check of the shipped configs, for the switches no shipped config sets."""
    cfg = load_cfg(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "cifar100", "sld",
                                "res32x4_res8x4.yaml"), opts)
    with torch.device("meta"):
        distiller = build_distiller(cfg, create_model("resnet8x4", 100, "cifar100"),
                                    create_model("resnet32x4", 100, "cifar100")).train()
    image = torch.empty(8, 3, 32, 32, device="meta")
    preds, losses = distiller(image_weak=image, image_strong=image, target=torch.empty(8, dtype=torch.long,
                                                                                          device="meta"), epoch=200)
    total_loss(losses).backward()
    assert preds.shape == (8, 100)
