"""tools/train.py and tools/eval.py on a tiny image-folder dataset (real models, data pipeline
and distillers): a vanilla run trains a teacher that a distillation run then loads; eval reads
every kind of checkpoint; bad input gives one `error:` line and exit code 2."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mdistiller.engine.checkpoint import load_checkpoint
from helpers.tiny import REPO, subprocess_env
from helpers.tools import common, load_tool

def test_flags_may_follow_the_overrides():
    args = load_tool("train").parse_args(["--cfg", "a.yaml", "SOLVER.EPOCHS", "3", "--resume", "--quiet"])
    assert (args.cfg, args.resume, args.quiet, args.overwrite, args.opts) == ("a.yaml", True, True, False,
                                                                              ["SOLVER.EPOCHS", "3"])


@pytest.mark.parametrize("argv, message", [
    (["tools/train.py", "--cfg", "missing.yaml"], "error: config file missing.yaml does not exist; pass an existing YAML with --cfg"),
    (["tools/train.py", "SOLVER.EPOCHZ", "3"], "error: unknown config key SOLVER.EPOCHZ; keys allowed here: "),
    (["tools/eval.py", "-m", "resnet8", "-c", "missing.pth"], "error: checkpoint missing.pth (-c/--ckpt) does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message):
    done = subprocess.run([sys.executable] + argv, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_vanilla_teacher_feeds_distillation_and_eval(folder_data, tmp_path, capsys):
    train, evaluate = load_tool("train"), load_tool("eval")
    # 1. a vanilla run trains a teacher
    assert train.main(common(folder_data, tmp_path, "teacher", "DISTILLER.TYPE", "NONE")) == 0
    teacher_dir = os.path.join(tmp_path, "cli", "teacher")
    teacher_file = os.path.join(teacher_dir, "student_best")
    assert {"latest", "best", "student_latest", "student_best", "worklog.txt", "train.events",
            "config.yaml"} <= set(os.listdir(teacher_dir))

    # 2. distillation configs load it (one view: KD; two views: SLD with the "ours" trainer)
    for name, extra in (("kd", ["DISTILLER.TYPE", "KD"]), ("sld", ["DISTILLER.TYPE", "SLD", "SOLVER.TRAINER", "ours"])):
        argv = common(folder_data, tmp_path, name, *extra, "DISTILLER.TEACHER", "resnet8",
                      "DISTILLER.TEACHER_WEIGHTS", teacher_file)
        assert train.main(argv) == 0, name
    sld = load_checkpoint(os.path.join(tmp_path, "cli", "sld", "latest"))
    teacher = load_checkpoint(teacher_file)["model"]
    assert all(np.array_equal(sld["model"]["teacher." + k], v) for k, v in teacher.items())  # frozen teacher

    # 3. no silent overwrite; resume continues the run
    capsys.readouterr()
    kd = common(folder_data, tmp_path, "kd", "DISTILLER.TYPE", "KD", "DISTILLER.TEACHER", "resnet8",
                "DISTILLER.TEACHER_WEIGHTS", teacher_file)
    assert train.main(kd) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert train.main(kd[:kd.index("SOLVER.EPOCHS")] + ["SOLVER.EPOCHS", "2"] + kd[kd.index("SOLVER.EPOCHS") + 2:]
                      + ["--resume"]) == 0
    worklog = open(os.path.join(tmp_path, "cli", "kd", "worklog.txt")).read()
    assert re.findall(r"epoch: (\d+)", worklog) == ["1", "2"] and worklog.count("best_acc") == 1

    # 4. eval reads student files, full checkpoints and teacher files alike
    capsys.readouterr()
    results = {}
    for kind in ("student_latest", "latest"):
        ckpt = os.path.join(tmp_path, "cli", "kd", kind)
        argv = ["-m", "resnet8", "-c", ckpt, "-d", "imagefolder", "--root", folder_data, "--json", "DEVICE", "cpu",
                "DATASET.NUM_WORKERS", "0", "LOG.QUIET", "True"]
        assert evaluate.main(argv) == 0
        results[kind] = json.loads(capsys.readouterr().out)
    assert results["latest"]["top1"] == results["student_latest"]["top1"]
    assert results["latest"]["count"] == 12 and set(results["latest"]) >= {"top1", "top5", "loss"}
    last_test_acc = float(re.findall(r"test_acc: (\S+)", worklog)[-1])
    assert results["latest"]["top1"] == pytest.approx(last_test_acc, abs=0.005)
    assert evaluate.main(["-m", "resnet8", "-c", teacher_file, "-d", "imagefolder", "--root", folder_data,
                          "DEVICE", "cpu", "DATASET.NUM_WORKERS", "0", "LOG.QUIET", "True"]) == 0
    assert re.match(r"resnet8 .*student_best on imagefolder test \(12 images\): top-1 \d+\.\d\d \| top-5 ",
                    capsys.readouterr().out)


@pytest.mark.slow
def test_torchrun_two_processes_through_the_cli(folder_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(REPO, "tools", "train.py")] + common(folder_data, tmp_path, "ddp", "DISTILLER.TYPE", "NONE")
    done = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 1/1 |") == 1 and "device cpu x2" in done.stdout
    assert load_checkpoint(os.path.join(tmp_path, "cli", "ddp", "latest"))["world_size"] == 2


@pytest.mark.slow
def test_acceptance_command_on_real_cifar100(tmp_path):
    """The issue's end-to-end command (SLD res32x4 -> res8x4, 1 epoch on 500 images) with a
    randomly initialised teacher; the test split is subsampled to keep the test short."""
    import torch

    from mdistiller.models import create_model

    shared = os.environ.get("MDISTILLER_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
    parts = sorted(p for p in os.listdir(os.path.join(shared, "data", "cifar100")) if ".part" in p)
    data = tmp_path / "data"
    data.mkdir()
    cat = subprocess.Popen(["cat"] + [os.path.join(shared, "data", "cifar100", p) for p in parts], stdout=subprocess.PIPE)
    subprocess.run(["tar", "xz", "-C", str(data)], stdin=cat.stdout, check=True)
    teacher = str(tmp_path / "teacher.pth")
    torch.save({"model": create_model("resnet32x4", 100).state_dict()}, teacher)
    cmd = [sys.executable, "tools/train.py", "--cfg", "configs/cifar100/sld/res32x4_res8x4.yaml",
           "DATASET.ROOT", str(data / "cifar100"), "DISTILLER.TEACHER_WEIGHTS", teacher, "SOLVER.EPOCHS", "1",
           "DATASET.TRAIN_SUBSET", "500", "DATASET.TEST_SUBSET", "1000", "LOG.PREFIX", str(tmp_path / "out"), "--quiet"]
    done = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "out" / "cifar100_baselines" / "sld,res32x4,res8x4"
    assert {"latest", "best", "student_latest", "student_best", "worklog.txt", "train.events",
            "config.yaml"} <= set(os.listdir(folder))
