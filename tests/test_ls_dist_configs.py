"""Shipped configs of the LS paper's CIFAR-100 pairs (kd_ls, dkd_ls, mlkd_ls; sld_ls is ours)
and of the DIST paper's (dist): they load, name zoo models, and carry the per-pair base
temperature and weight that the LS README's log names encode."""
import pathlib

import pytest

from mdistiller.config import load_cfg
from mdistiller.distillers import check_distiller_cfg
from mdistiller.models import model_entry

CIFAR = pathlib.Path(__file__).resolve().parents[1] / "configs" / "cifar100"
FOLDERS = {"kd_ls": "KD", "dkd_ls": "DKD", "mlkd_ls": "MLKD", "sld_ls": "SLD", "dist": "DIST"}
# the LS README's log names "<method>,<teacher>,<student>,T,W[,DKD BETA]"
KD_LOGS = {"res32x4_res8x4": (2, 9), "vgg13_vgg8": (3, 9), "res110_res20": (4, 12), "res50_mv2": (3, 1),
           "res32x4_wrn_40_2": (3, 9), "wrn40_2_wrn_40_1": (2, 9)}
DKD_LOGS = {"res32x4_res8x4": (2, 9, 8.0), "wrn40_2_res8x4": (2, 18, 2.0), "vgg13_mv2": (3, 9, 2.0)}
MLKD_LOGS = {"res32x4_res8x4": (2, 9), "vgg13_vgg8": (2, 6), "res32x4_shuv2": (2, 6)}
LS_PAIRS = {"res32x4_res8x4", "vgg13_vgg8", "wrn40_2_wrn_40_1", "wrn40_2_wrn_16_2", "res56_res20", "res110_res32",
            "res110_res20", "res32x4_shuv2", "res32x4_wrn_16_2", "res32x4_wrn_40_2", "wrn40_2_res8x4",
            "wrn40_2_mv2", "vgg13_mv2", "res50_mv2"}
DIST_PAIRS = {"wrn40_2_wrn_40_1", "res56_res20", "res32x4_res8x4", "res50_mv2", "res32x4_shuv1", "res32x4_shuv2"}


def cfg(folder, pair):
    return load_cfg(str(CIFAR / folder / f"{pair}.yaml"))


@pytest.mark.parametrize("path", sorted(str(p.relative_to(CIFAR)) for f in FOLDERS for p in (CIFAR / f).glob("*.yaml")))
def test_config_loads_and_names_existing_models(path):
    folder = path.split("/")[0]
    c = load_cfg(str(CIFAR / path))
    assert c.DISTILLER.TYPE == FOLDERS[folder]
    assert c.EXPERIMENT.LOGIT_STAND is (folder != "dist")
    check_distiller_cfg(c)
    model_entry(c.DISTILLER.TEACHER, "cifar100", "DISTILLER.TEACHER")
    model_entry(c.DISTILLER.STUDENT, "cifar100")
    from mdistiller.distillers import input_views
    assert input_views(c) == (2 if c.DISTILLER.TYPE in ("SLD", "MLKD") else 1)  # SOLVER.TRAINER ours / base


def test_pairs_covered():
    def pairs(folder):
        return {p.stem for p in (CIFAR / folder).glob("*.yaml")}

    assert pairs("kd_ls") == pairs("mlkd_ls") == LS_PAIRS
    assert pairs("dkd_ls") == LS_PAIRS - {"res56_res20"}  # two logs (weights 12 and 18): none shipped
    assert pairs("sld_ls") == {p.stem for p in (CIFAR / "sld").glob("*.yaml")} - {
        "res32x4_res8x4_no_schedule", "res32x4_res8x4_ts_only"}
    assert pairs("dist") == DIST_PAIRS


def test_ls_temperatures_and_weights_follow_the_logs():
    for pair, (T, W) in KD_LOGS.items():
        c = cfg("kd_ls", pair)
        assert (c.KD.TEMPERATURE, c.KD.LOSS.KD_WEIGHT, c.KD.LOSS.CE_WEIGHT, c.SOLVER.EPOCHS) == (T, W, 0.1, 240)
    for pair, (T, W, beta) in DKD_LOGS.items():
        c = cfg("dkd_ls", pair)
        assert (c.DKD.T, c.DKD.ALPHA, c.DKD.BETA) == (T, W, beta * W)
    for pair, (T, W) in MLKD_LOGS.items():
        c = cfg("mlkd_ls", pair)
        assert (c.KD.TEMPERATURE, c.KD.LOSS.KD_WEIGHT) == (T, W)
    c = cfg("mlkd_ls", "res32x4_res8x4")
    assert (c.SOLVER.EPOCHS, c.SOLVER.LR) == (480, 0.025)  # the LS repository's MLKD configs


def test_sld_ls_is_sld_with_ls_and_weight_9():
    for path in (CIFAR / "sld_ls").glob("*.yaml"):
        ours, sld = load_cfg(str(path)), cfg("sld", path.stem)
        assert ours.KD.LOSS.KD_WEIGHT == 9.0 and ours.SLD == sld.SLD and ours.SOLVER == sld.SOLVER


def test_dist_recipe():
    for pair in DIST_PAIRS:
        c = cfg("dist", pair)
        assert (c.DIST.CE_WEIGHT, c.DIST.BETA, c.DIST.GAMMA, c.DIST.TAU, c.SOLVER.EPOCHS) == (1.0, 2.0, 2.0, 4.0, 240)
        small = c.DISTILLER.STUDENT in ("MobileNetV2", "ShuffleV1", "ShuffleV2")
        assert c.SOLVER.LR == (0.01 if small else 0.05)
