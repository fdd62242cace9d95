"""Paired benchmarks (benchmark/paired_runs.py): the method-minus-baseline table (hand-computed),
group decisions, and a paired matrix end to end on a tiny image folder."""
import importlib.util
import json
import math
import os

import pytest
import torch
import yaml

from mdistiller.benchmark import RunResult, load_matrix, matrix_from_configs
from mdistiller.benchmark.collect import read_run_json
from mdistiller.benchmark.paired_runs import (TeacherClock, execute_group, group_action, paired_differences,
                                         paired_table, run_paired_matrix, teacher_only_ratio, write_paired_report)
from mdistiller.benchmark.runner import collect_matrix
from mdistiller.errors import ConfigError
from mdistiller.models import create_model
from helpers.tiny import REPO, write_colour_folder


def result(method, seed, top1, status="complete", pair="t -> s"):
    return RunResult(folder=f"{method}-{seed}", method=method, pair=pair, seed=seed, status=status, best_top1=top1)


def test_paired_differences_by_hand(tmp_path):
    results = [result("Vanilla", 0, 70.0), result("Vanilla", 1, 72.0), result("Vanilla", 2, 71.0),
               result("KD", 0, 72.0), result("KD", 1, 73.5), result("KD", 2, 72.5),
               result("KD", 3, 99.0),  # no baseline run on seed 3: not paired
               result("DKD", 0, 75.0), result("DKD", 1, 10.0, status="incomplete")]
    kd, dkd = paired_differences(results)
    assert (kd.method, kd.baseline, kd.seeds) == ("KD", "Vanilla", [0, 1, 2])
    assert kd.diffs == [2.0, 1.5, 1.5] and kd.mean == pytest.approx(5 / 3)
    assert kd.std == pytest.approx(math.sqrt(((1 / 3) ** 2 + 2 * (1 / 6) ** 2) / 2))  # 0.2887
    assert kd.unpaired_std == pytest.approx(math.hypot(math.sqrt(7 / 12), 1.0))  # KD's and Vanilla's stds
    assert (dkd.seeds, dkd.mean, dkd.std, dkd.unpaired_std) == ([0], 5.0, None, None)
    table = paired_table([kd, dkd])
    assert "| Method − Vanilla | t -> s |" in table
    assert "| KD | +1.67 ± 0.29 (n = 3; unpaired ± 1.26) |" in table and "| DKD | +5.00 (n = 1) |" in table

    # an explicit baseline, and the files
    diffs, paths = write_paired_report(results, str(tmp_path), baseline="KD")
    assert [(d.method, d.baseline, d.diffs) for d in diffs] == [("Vanilla", "KD", [-2.0, -1.5, -1.5]),
                                                                ("DKD", "KD", [3.0])]
    assert json.load(open(paths["json"]))["differences"][0]["diffs"] == [-2.0, -1.5, -1.5]
    assert open(paths["md"]).read().startswith("# Paired differences\n\n| Method − KD |")
    with pytest.raises(ConfigError, match="^--baseline MLKD is not a method of this benchmark"):
        paired_differences(results, baseline="MLKD")


@pytest.mark.parametrize("actions, expected", [
    (["skip", "skip"], "skip"), (["skip", "stopped"], "skip"), (["stopped", "stopped"], "skip"),
    (["resume", "skip", "stopped"], "resume"), (["resume", "start"], "start"), (["skip", "start"], "start"),
])
def test_group_action(actions, expected):
    assert group_action(actions) == expected


def test_a_diverged_member_is_recorded_as_failed(tmp_path):
    class Run:
        def __init__(self, name):
            self.method, self.pair, self.seed, self.role = name, "t -> s", 0, "student"
            self.config, self.opts, self.folder = "x.yaml", [], str(tmp_path / name)

    members = [Run("a"), Run("b")]

    def fake_train_group(cfgs, resume, overwrite):
        os.makedirs(members[0].folder)
        with open(os.path.join(members[0].folder, "stopped.txt"), "w") as f:
            f.write("non-finite loss at epoch 3\n")
        return [None, 61.0]

    execute_group(members, [None, None], "start", fake_train_group)
    a, b = (read_run_json(m.folder) for m in members)
    assert (a["status"], a["error"]) == ("failed", "non-finite loss at epoch 3")
    assert b["status"] == "complete" and b["paired_with"] == [members[0].folder]
    assert a["wall_time_s"] == b["wall_time_s"] >= 0


def test_teacher_only_ratio_by_hand():
    # solo: 100 s of which 40 s teacher (four runs); paired: one teacher pass per batch, 15 s
    assert teacher_only_ratio(100.0, 40.0, 15.0) == pytest.approx(100 / 75)
    assert teacher_only_ratio(10.0, 0.0, 0.0) == 1.0


def test_teacher_clock_times_the_teachers_built_while_active(monkeypatch):
    import time

    from mdistiller.engine import build

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    made = []
    monkeypatch.setattr(build, "build_models", lambda cfg, n: made.append(Slow()) or (torch.nn.Identity(), made[-1]))
    clock = TeacherClock()
    with clock.active():
        student, teacher = build.build_models(None, 3)
    assert teacher is made[0]
    student(torch.ones(1))
    teacher(torch.ones(1))
    teacher(torch.ones(1))
    assert 0.1 <= clock.seconds() < 1.0
    # the patch is gone after the block: a teacher built later is not timed
    later = build.build_models(None, 3)[1]
    later(torch.ones(1))
    assert clock.seconds() < 1.0 and len(later._forward_hooks) == 0


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    """A tiny image folder, a random resnet8 teacher checkpoint and two configs (NONE, KD)."""
    root = tmp_path_factory.mktemp("paired_bench")
    write_colour_folder(root, ("c0", "c1", "c2"), (("train", 6), ("test", 3)))
    torch.manual_seed(3)
    torch.save({"model": create_model("resnet8", 3, "cifar100").state_dict()}, root / "teacher.pth")
    paths = []
    for method in ("NONE", "KD"):
        cfg = {"DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(root), "NUM_WORKERS": 0},
               "SOLVER": {"BATCH_SIZE": 6, "EPOCHS": 1}, "LOG": {"QUIET": True, "PREFIX": str(root / "out")},
               "DISTILLER": {"TYPE": method, "STUDENT": "resnet8", "TEACHER": "resnet8",
                             "TEACHER_WEIGHTS": str(root / "teacher.pth")}}
        paths.append(str(root / f"{method.lower()}.yaml"))
        with open(paths[-1], "w") as f:
            yaml.safe_dump(cfg, f)
    return paths, str(root / "out")


def test_paired_matrix_end_to_end(tiny_configs):
    paths, out = tiny_configs
    matrix = matrix_from_configs(paths, [0, 1], "pb")
    said = []
    runs, counts, failures = run_paired_matrix(matrix, say=said.append)
    assert (counts, failures) == ({"skip": 0, "resume": 0, "start": 4, "refused": 0}, [])
    assert [line.split(":")[0] for line in said] == ["[group 1/2] resnet8 -> resnet8 | seed 0",
                                                     "[group 2/2] resnet8 -> resnet8 | seed 1"]
    metas = [read_run_json(r.folder) for r in runs]
    assert all(m["status"] == "complete" for m in metas)
    assert metas[0]["paired_with"] == [runs[1].folder] and metas[0]["wall_time_s"] == metas[1]["wall_time_s"]
    diffs, paths_out = write_paired_report(collect_matrix(runs), out)
    assert [(d.method, d.baseline, d.seeds) for d in diffs] == [("KD", "Vanilla", [0, 1])]
    # nothing left to train the second time
    assert run_paired_matrix(matrix, say=said.append)[1] == {"skip": 4, "resume": 0, "start": 0, "refused": 0}


def test_bench_paired_cli(tiny_configs, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_paired_cli", os.path.join(REPO, "tools", "bench_paired.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = os.path.dirname(tiny_configs[1])
    argv = ["--root", root, "--methods", "NONE", "SLD", "--train-subset", "0", "--test-subset", "0",
            "--configs-dir", os.path.join(REPO, "configs"), "--out", str(tmp_path), "--threads", "1",
            "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "6",
            "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet8"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "solo / paired = " in out and "machine: " in out
    data = json.load(open(os.path.join(tmp_path, "bench_paired.json")))
    (run,) = data["repeats"]
    assert [r["method"] for r in run["runs"]] == ["Vanilla", "SLD"] and data["ratio_of_minima"] > 0
    # SLD's solo stream is the group's (two views), so its weights are bit-identical
    assert [r["same_weights"] for r in run["runs"]] == [False, True]
    # the vanilla student has no teacher; the group ran its teacher once per batch, as solo SLD did
    assert run["runs"][0]["solo_teacher_s"] == 0 and run["runs"][1]["solo_teacher_s"] > 0
    assert run["paired_teacher_s"] > 0 and run["teacher_only_ratio"] == pytest.approx(teacher_only_ratio(
        run["solo_total_s"], run["solo_teacher_s"], run["paired_teacher_s"]))
    assert "saving only the repeated teacher passes would give" in out
    assert os.path.isfile(os.path.join(tmp_path, "random_resnet8.pth"))
    assert tool.main(["--root", str(tmp_path / "nowhere"), "--methods", "KD", "--configs-dir",
                      os.path.join(REPO, "configs"), "--out", str(tmp_path), "DATASET.TYPE", "imagefolder"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_benchmark_cli_paired(tiny_configs, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(REPO, "tools", "benchmark.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    paths, _ = tiny_configs
    argv = ["--cfg", *paths, "--seeds", "0", "1", "--paired", "--project", "cli", "--out", str(tmp_path),
            "--no-chart"]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "[group 2/2]" in out and "| Method − Vanilla | resnet8 -> resnet8 |" in out
    assert os.path.isfile(os.path.join(tmp_path, "paired.md")) and os.path.isfile(os.path.join(tmp_path, "results.md"))
    runs_dir = os.path.join(tiny_configs[1], "cli")  # <LOG.PREFIX>/<project>
    assert tool.main(["--runs-dir", runs_dir, "--paired", "--baseline", "KD", "--out", str(tmp_path / "again"),
                      "--no-chart"]) == 0
    assert "| Method − KD |" in capsys.readouterr().out


def test_spec_can_ask_for_paired_mode_and_its_baseline(tiny_configs, tmp_path, capsys):
    """`paired: true` / `baseline:` in a spec YAML do what --paired / --baseline do."""
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(REPO, "tools", "benchmark.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    paths, _ = tiny_configs
    spec_file = tmp_path / "paired.yaml"
    spec_file.write_text(yaml.safe_dump({"project": "spec_paired", "seeds": [0], "paired": True, "baseline": "KD",
                                         "methods": {"Vanilla": paths[0], "KD": paths[1]}}))
    assert tool.main(["--spec", str(spec_file), "--out", str(tmp_path / "res"), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "[group 1/1]" in out and "| Method − KD |" in out
    assert (tmp_path / "res" / "paired.md").is_file()
    spec_file.write_text(yaml.safe_dump({"paired": "yes", "methods": {"KD": paths[1]}}))
    with pytest.raises(ConfigError, match="paired is 'yes'"):
        load_matrix(str(spec_file))
    spec_file.write_text(yaml.safe_dump({"baseline": "DKD", "methods": {"KD": paths[1]}}))
    with pytest.raises(ConfigError, match="baseline 'DKD' is not one of its methods"):
        load_matrix(str(spec_file))
