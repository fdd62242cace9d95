"""The feature-shape report: shapes of a (teacher, student) pair and each feature method's verdict."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from mdistiller.config import load_cfg
from mdistiller.distillers.shapes import describe_pair, feature_shapes, input_size_for, method_verdicts, probe_features
from mdistiller.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def test_feature_shapes_of_resnet8x4():
    shapes = feature_shapes(create_model("resnet8x4", 100), (32, 32))
    assert shapes["feats"] == [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert shapes["preact_feats"] == shapes["feats"]
    assert shapes["pooled_feat"] == (256,)


def test_probe_leaves_batchnorm_statistics_and_mode_alone():
    model = create_model("resnet8x4", 100).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe_features(model, (32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_input_size_follows_the_dataset():
    assert input_size_for(load_cfg(None)) == (32, 32)
    assert input_size_for(load_cfg(None, ["DATASET.TYPE", "imagenet"])) == (224, 224)
    assert input_size_for(load_cfg(None, ["DATASET.TYPE", "imagefolder"])) is None
    assert input_size_for(load_cfg(None, ["DATASET.TYPE", "imagefolder", "DATASET.IMAGE_SIZE", 96])) == (96, 96)


def test_report_explains_which_methods_fit():
    torch.manual_seed(0)
    cfg = load_cfg(None, ["DISTILLER.TEACHER", "resnet32x4", "DISTILLER.STUDENT", "resnet20"])
    report = describe_pair(create_model("resnet32x4", 100), create_model("resnet20", 100), cfg)
    lines = report.splitlines()
    assert "feats[3]          (256, 8, 8)             (64, 8, 8)" in lines
    verdicts = dict(line.split(None, 1) for line in lines[lines.index("feature distillers with default settings:") + 1:])
    assert set(verdicts) == {"FITNET", "AT", "NST", "PKT", "KDSVD", "OFD", "RKD", "VID", "SP", "CRD", "REVIEWKD"}
    assert verdicts["AT"] == verdicts["FITNET"] == "fits"
    assert lines[0] == "input 32x32; teacher resnet32x4, student resnet20"
    assert verdicts["KDSVD"] == "fits"  # mdistiller's KDSVD (default) pairs widths: equal here
    paper = load_cfg(None, ["DISTILLER.TEACHER", "resnet32x4", "DISTILLER.STUDENT", "resnet20", "KDSVD.FAITHFUL", "False"])
    kdsvd = method_verdicts(create_model("resnet32x4", 100), create_model("resnet20", 100), paper, ["KDSVD"])
    assert kdsvd["KDSVD"].startswith("KDSVD cannot pair teacher resnet32x4 stage channels [64, 128, 256] "
                                        "with student resnet20 stage channels [16, 32, 64]")
    assert "CRD.FEAT.STUDENT_DIM 64" in verdicts["CRD"]


def test_command_line_prints_the_report_and_one_line_errors():
    cmd = [sys.executable, str(ROOT / "tools" / "feature_shapes.py")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ok = subprocess.run(cmd + ["resnet32x4", "resnet8x4"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "REVIEWKD  fits" in ok.stdout
    bad = subprocess.run(cmd + ["resnet32x4", "nonet"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("error: ") and "nonet" in bad.stderr
