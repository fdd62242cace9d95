"""mdistiller users switch with zero edits: training and evaluation scripts written for mdistiller
and its forks (tests/fixtures/upstream_style/scripts: mdistiller's tools/train.py and eval.py, the
SLD authors' tools/train_ours.py, the logit-standardization repository's tools/train.py, each
with the original's imports, names and call sequence) import `mdistiller.dataset`,
`mdistiller.engine.utils` and `trainer_dict` and train one epoch each through our trainer, writing
mdistiller's output files into the folder upstream names. They call `.cuda()` and DataParallel:
in the child process `.cuda()` leaves tensors and modules where they are (run_scripts.py), a
stand-in for the GPU only; everything else is what a user runs. All scripts run in one child
process, one after another, on fake CIFAR-100 pickles (100 classes, one image each) and a
random resnet56 teacher at mdistiller's checkpoint path."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from helpers.data import cifar_pickles
from helpers.tiny import REPO, subprocess_env
from mdistiller.engine.run_lock import lock_path, me
from mdistiller.models import create_model

UPSTREAM_STYLE = os.path.join(REPO, "tests", "fixtures", "upstream_style")
SCRIPTS = os.path.join(UPSTREAM_STYLE, "scripts")
RUN_SCRIPTS = os.path.join(UPSTREAM_STYLE, "run_scripts.py")
TEACHER = os.path.join("download_ckpts", "cifar_teachers", "resnet56_vanilla", "ckpt_epoch_240.pth")
PROJECT = "cifar100_baselines"


def config(tag, distiller, trainer, epochs=1, **sections):
    """An upstream-style YAML: resnet56 -> resnet8, one or two epochs of 20 images (test: 20)."""
    cfg = {"EXPERIMENT": {"PROJECT": PROJECT, "TAG": tag},
           "DISTILLER": {"TYPE": distiller, "TEACHER": "resnet56", "STUDENT": "resnet8"},
           "SOLVER": {"BATCH_SIZE": 10, "EPOCHS": epochs, "TRAINER": trainer},
           "DATASET": {"NUM_WORKERS": 0, "TRAIN_SUBSET": 20, "TEST_SUBSET": 20, "TEST": {"BATCH_SIZE": 20}},
           "LOG": {"QUIET": True}}
    cfg.update(sections)
    return cfg


CONFIGS = {
    "kd.yaml": config("kd,res56,res8", "KD", "base"),
    "kd_longer.yaml": config("kd,res56,res8", "KD", "base", epochs=2),
    "kd_straight.yaml": config("kd_straight", "KD", "base", epochs=2),
    "crd.yaml": config("crd,res56,res8", "CRD", "crd",
                       CRD={"NCE": {"K": 16}, "FEAT": {"STUDENT_DIM": 64, "TEACHER_DIM": 64, "DIM": 16}}),
    "sld.yaml": config("sld,res56,res8", "SLD", "ours"),
    "ls_kd.yaml": config("kd_ls,res56,res8", "KD", "base"),
    "locked.yaml": config("locked,res56,res8", "KD", "base"),
    "no_teacher.yaml": config("no_teacher", "KD", "base", DISTILLER={"TYPE": "KD", "TEACHER": "resnet110",
                                                                     "STUDENT": "resnet8"}),
}
# (name, script, arguments): run in this order, in one process
RUNS = [
    ("kd", "mdistiller_train.py", ["--cfg", "kd.yaml"]),
    ("kd_again", "mdistiller_train.py", ["--cfg", "kd.yaml"]),
    ("kd_resume", "mdistiller_train.py", ["--cfg", "kd_longer.yaml", "--resume"]),
    ("kd_straight", "mdistiller_train.py", ["--cfg", "kd_straight.yaml"]),
    ("crd", "mdistiller_train.py", ["--cfg", "crd.yaml"]),
    ("sld", "sld_train_ours.py", ["--cfg", "sld.yaml"]),
    ("ls", "ls_train.py", ["--cfg", "ls_kd.yaml", "--logit-stand", "--base-temp", "2", "--kd-weight", "9"]),
    ("locked", "mdistiller_train.py", ["--cfg", "locked.yaml"]),
    ("no_teacher", "mdistiller_train.py", ["--cfg", "no_teacher.yaml"]),
    ("eval", "mdistiller_eval.py", ["-m", "resnet8", "-c", os.path.join("output", PROJECT, "kd,res56,res8", "student_best"),
                                    "-bs", "100"]),
    ("eval_teacher", "mdistiller_eval.py", ["-m", "resnet56", "-bs", "100"]),
]


def folder(root, tag):
    return root / "output" / PROJECT / tag


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """{run name: (exit code, stdout, stderr)} and the workspace the scripts ran in."""
    root = tmp_path_factory.mktemp("upstream_scripts")
    cifar_pickles(root / "data", train_per_class=1, test_per_class=1)
    os.makedirs(root / os.path.dirname(TEACHER))
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet56", 100).state_dict()}, root / TEACHER)
    for name, cfg in CONFIGS.items():
        (root / name).write_text(yaml.safe_dump(cfg))
    os.makedirs(folder(root, "locked,res56,res8").parent, exist_ok=True)
    with open(lock_path(folder(root, "locked,res56,res8")), "w") as f:
        json.dump(me(), f)  # held by this (live) test process
    runs = [[os.path.join(SCRIPTS, script)] + args for _, script, args in RUNS]
    done = subprocess.run([sys.executable, RUN_SCRIPTS, json.dumps(runs)], cwd=root, env=subprocess_env(),
                          capture_output=True, text=True, timeout=900)
    outs, errs = split_runs(done.stdout), split_runs(done.stderr)
    assert len(outs) == len(errs) == len(RUNS), done.stdout[-2000:] + done.stderr[-3000:]
    return root, {name: (code, out, err) for (name, _, _), (code, out), (_, err) in zip(RUNS, outs, errs)}


def split_runs(text):
    """[(exit code, output)] of each run, from output with a line `=== exit N` after each run."""
    parts = re.split(r"^=== exit (-?\d+)\n", text, flags=re.M)
    return [(int(code), chunk) for chunk, code in zip(parts[0::2], parts[1::2])]


def assert_mdistiller_outputs(run_folder, epochs=1):
    names = set(os.listdir(run_folder))
    assert {"latest", "best", "student_latest", "student_best", "worklog.txt", "train.events", "config.yaml"} <= names
    worklog = (run_folder / "worklog.txt").read_text()
    assert worklog.count("epoch: ") == epochs and "test_acc: " in worklog and "best_acc" in worklog
    student = torch.load(run_folder / "student_best", weights_only=True)["model"]
    assert set(student) == set(create_model("resnet8", 100).state_dict())  # loads into a bare student


@pytest.mark.parametrize("name, tag", [("kd", "kd,res56,res8"), ("crd", "crd,res56,res8"), ("sld", "sld,res56,res8"),
                                       ("ls", "kd_ls,res56,res8")])
def test_an_upstream_script_trains_an_epoch_through_our_trainer(ran, name, tag):
    root, results = ran
    code, out, err = results[name]
    assert code == 0, err[-3000:]
    run_folder = folder(root, tag)
    assert f"output: {os.path.join('.', 'output', PROJECT, tag)} | device " in out  # our trainer's start line
    assert_mdistiller_outputs(run_folder, epochs=2 if name == "kd" else 1)
    assert not os.path.exists(lock_path(run_folder))  # claimed while training, released after


def test_each_trainer_name_gets_the_batches_it_stands_for(ran):
    root, results = ran
    saved = {tag: yaml.safe_load((folder(root, tag) / "config.yaml").read_text())
             for tag in ("kd,res56,res8", "crd,res56,res8", "sld,res56,res8")}
    assert "views 1 | indices False" in results["kd"][1]
    assert "views 1 | indices True" in results["crd"][1]
    assert "views 2 | indices False" in results["sld"][1]  # train_ours.py: get_dataset_strong, trainer "ours"
    assert saved["sld,res56,res8"]["DATASET"]["VIEWS"] == 2 and saved["crd,res56,res8"]["DATASET"]["INDICES"] is True


def test_the_logit_standardization_flags_reach_the_distiller(ran):
    root, results = ran
    saved = yaml.safe_load((folder(root, "kd_ls,res56,res8") / "config.yaml").read_text())
    assert saved["EXPERIMENT"]["LOGIT_STAND"] is True
    assert (saved["KD"]["TEMPERATURE"], saved["KD"]["LOSS"]["KD_WEIGHT"]) == (2.0, 9.0)


def test_a_folder_upstream_would_reuse_is_refused_in_one_line_and_kept(ran):
    """Upstream trained over an existing run; ours refuses, says how to go on, and writes nothing
    (the resume that follows in the same process continues the untouched run)."""
    root, results = ran
    code, _, err = results["kd_again"]
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: output folder {os.path.join('.', 'output', PROJECT, 'kd,res56,res8')} already holds "
                     "checkpoints (best, latest, student_best, student_latest); pass --resume to continue that run, "
                     "move the folder away to start over, or choose another EXPERIMENT.NAME"]


def test_resume_continues_the_run_through_our_trainer(ran):
    root, results = ran
    code, out, err = results["kd_resume"]
    assert code == 0, err[-3000:]
    assert f"resuming {os.path.join('.', 'output', PROJECT, 'kd,res56,res8')} after epoch 1" in out
    assert "epoch 2/2" in out
    resumed = torch.load(folder(root, "kd,res56,res8") / "latest", weights_only=True)
    straight = torch.load(folder(root, "kd_straight") / "latest", weights_only=True)  # two epochs in one go
    assert resumed["epoch"] == straight["epoch"] == 2
    assert all(torch.equal(resumed["model"][k], straight["model"][k]) for k in straight["model"])  # exact resume


def test_a_folder_another_process_trains_is_refused(ran):
    root, results = ran
    code, _, err = results["locked"]
    assert code == 2 and "Traceback" not in err
    assert f"error: run folder {os.path.join('.', 'output', PROJECT, 'locked,res56,res8')} is being trained by host " \
           f"{me()['host']} pid {os.getpid()}" in err
    assert not os.path.exists(folder(root, "locked,res56,res8") / "latest")


@pytest.mark.parametrize("name", ["eval", "eval_teacher"])
def test_upstream_eval_script_prints_mdistillers_eval_line(ran, name):
    code, out, err = ran[1][name]
    assert code == 0, err[-3000:]
    assert "[EVAL] Top-1:" in out and "| Top-5:" in out


def test_bad_input_ends_an_upstream_script_with_one_line(ran):
    code, _, err = ran[1]["no_teacher"]  # no resnet110 teacher at mdistiller's checkpoint path
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [line for line in err.splitlines()
                                                                              if line.strip()]
    assert os.path.join("resnet110_vanilla", "ckpt_epoch_240.pth") in err and "mdistiller-fetch-teachers" in err


def test_engine_utils_loads_checkpoints_safely(tmp_path, capsys):
    from mdistiller.engine.utils import load_checkpoint

    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "ok.pth")
    assert torch.equal(load_checkpoint(str(tmp_path / "ok.pth"))["model"]["w"], torch.ones(2))
    torch.save({"model": os.getcwd}, tmp_path / "code.pth")  # unpickling it would import and call code
    with pytest.raises(SystemExit) as done:
        load_checkpoint(str(tmp_path / "code.pth"))
    assert done.value.code == 2 and capsys.readouterr().err.startswith(f"error: checkpoint {tmp_path / 'code.pth'}")


def test_there_is_a_trainer_for_every_trainer_name():
    from mdistiller.config import TRAINER_ALIASES
    from mdistiller.engine import trainer_dict

    assert set(trainer_dict) == set(TRAINER_ALIASES) == {"base", "crd", "dot", "crd_dot", "ours", "aug"}


def test_get_dataset_strong_refuses_a_config_that_trains_on_one_view(capsys):
    from mdistiller.dataset import get_dataset_strong
    from mdistiller.engine.cfg import CFG

    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = "KD"
    with pytest.raises(SystemExit) as done:
        get_dataset_strong(cfg)
    assert done.value.code == 2
    assert capsys.readouterr().err == ("error: get_dataset_strong gives weak + strong views, but DISTILLER.TYPE KD with "
                                       "SOLVER.TRAINER base trains on one view; set SOLVER.TRAINER ours (or call "
                                       "get_dataset)\n")
