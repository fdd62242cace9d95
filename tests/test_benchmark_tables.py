"""A benchmark table never shows a cell that is not what it says (issue 26, section 3).

- A run records the sha256 of the teacher weights it learned from (teacher.json); after the
  teacher is retrained (same path, other weights) its students are stale: never skipped as
  complete, never resumed, flagged in the report, redone by --overwrite (old run moved aside).
- A run trained with other settings than the benchmark asks is a problem line, not a result.
- --report-only without the training's overrides refuses with one line naming them, and no
  report replaces a results file whose cells would lose their numbers.
- results.png: bars from 0, the legend over no bar.
"""
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

from pathlib import Path

import pytest
import torch

from helpers.bench_specs import save_random_teacher, teacher_and_kd, write_run_config, write_spec
from helpers.tiny import REPO, subprocess_env
from helpers.tools import load_tool
from mdistiller.benchmark.collect import RunResult, read_run
from mdistiller.benchmark.paired_runs import write_paired_report
from mdistiller.benchmark.report import write_report
from mdistiller.benchmark.runner import decide
from mdistiller.benchmark.spec import load_matrix, plan_runs
from mdistiller.benchmark.summary import summarize
from mdistiller.config import dump_cfg, load_cfg
from mdistiller.engine.teacher_identity import record_teacher
from mdistiller.engine.worklog import append_best, append_epoch
from mdistiller.errors import CheckpointError, OutputError

benchmark, train_tool = load_tool("benchmark"), load_tool("train")
PAIR = "resnet8 -> resnet8"


def run_tool(tool, *args):
    """tools/<tool>.py in a child process (the package of this checkout)."""
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{tool}.py"), *map(str, args)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def rows(path):
    return {r["method"]: r for r in csv.DictReader(open(path))}


def table(md_path):
    """The accuracy table's rows of a results.md: {method: cell text}."""
    lines = open(md_path).read().split("\n\n")[1].splitlines()[2:]
    return {line.split(" | ")[0].strip("| *"): line.split(" | ")[1].strip(" |") for line in lines}


# ---------------------------------------------------------------- a retrained teacher
@pytest.mark.slow
def test_a_retrained_teacher_makes_its_student_stale_and_overwrite_redoes_it(tmp_path, folder_data):
    """The issue's case with the real programs: a teacher role and a KD student, the teacher
    retrained with tools/train.py --overwrite, the benchmark run again."""
    config = write_run_config(tmp_path / "run.yaml", folder_data, tmp_path / "out")
    spec = write_spec(tmp_path, teacher_and_kd(config))
    assert run_tool("benchmark", "--spec", spec, "--no-chart").returncode == 0
    project = tmp_path / "out" / "tt"
    teacher, kd = project / "Teacher,resnet8-resnet8,seed0", project / "KD,resnet8-resnet8,seed0"
    weights = teacher / "student_best"
    assert json.load(open(kd / "teacher.json")) == {"weights": str(weights), "sha256": sha256(weights)}
    old_student = (kd / "student_best").read_bytes()

    retrained = run_tool("train", "--cfg", teacher / "config.yaml", "--overwrite", "--quiet", "SOLVER.LR", "0.1")
    assert retrained.returncode == 0, retrained.stderr
    assert sha256(weights) != json.load(open(kd / "teacher.json"))["sha256"]

    # the same benchmark: the student is neither skipped as complete nor resumed, and one line says why
    again = run_tool("benchmark", "--spec", spec, "--no-chart", "--out", tmp_path / "report")
    assert again.returncode == 1 and "Traceback" not in again.stderr + again.stdout
    said = [line for line in again.stdout.splitlines() if line.startswith("[2/2] KD")]
    assert len(said) == 1 and f"refused: {kd} is stale: its teacher {weights} now holds other weights" in said[0]
    assert f"pass --overwrite to move its outputs into {kd}/replaced/ and redo it" in said[0]
    assert (kd / "student_best").read_bytes() == old_student
    assert table(tmp_path / "report" / "results.md")["KD"] == "—†"  # flagged, no number
    assert rows(tmp_path / "report" / "results.csv")["KD"]["status"] == "stale"
    assert "stale: its teacher" in (tmp_path / "report" / "results.md").read_text()

    # the spec now asks for the retrained teacher's recipe; --overwrite redoes the stale student
    spec = write_spec(tmp_path, teacher_and_kd(config, ["SOLVER.LR", 0.1]))
    redo = run_tool("benchmark", "--spec", spec, "--no-chart", "--overwrite")
    assert redo.returncode == 0, redo.stdout + redo.stderr
    assert "ran 1, skipped 1 complete, 0 failed" in redo.stdout
    assert (kd / "replaced" / "1" / "student_best").read_bytes() == old_student
    assert json.load(open(kd / "teacher.json"))["sha256"] == sha256(weights)
    assert {m: r["status"] for m, r in rows(project / "results.csv").items()} == {"Teacher": "complete",
                                                                                "KD": "complete"}
    assert "ran 0, skipped 2 complete" in run_tool("benchmark", "--spec", spec, "--no-chart").stdout


def test_resume_refuses_a_run_whose_teacher_changed(tmp_path, folder_data, capsys):
    teacher = save_random_teacher(tmp_path / "teacher.pth", seed=0)
    argv = ["--cfg", str(write_run_config(tmp_path / "kd.yaml", folder_data, tmp_path / "out", teacher)),
            "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", "kd"]
    assert train_tool.main(argv) == 0
    folder = tmp_path / "out" / "p" / "kd"
    assert json.load(open(folder / "teacher.json"))["sha256"] == sha256(teacher)
    latest = (folder / "latest").read_bytes()
    save_random_teacher(teacher, seed=1)  # other weights at the same path
    capsys.readouterr()
    assert train_tool.main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot resume {folder}: its teacher {teacher} now holds other weights than the "
                          "ones it learned from (sha256 ") and err.endswith("and start over")
    assert (folder / "latest").read_bytes() == latest


def test_a_stale_run_is_never_skipped_nor_resumed_and_its_cell_is_flagged(tmp_path):
    teacher = save_random_teacher(tmp_path / "teacher.pth", seed=0)
    spec = write_spec(tmp_path, {"KD": str(write_run_config(tmp_path / "kd.yaml", tmp_path, tmp_path, teacher))})
    run = plan_runs(load_matrix(str(spec)))[0]
    cfg = run.cfg()
    os.makedirs(run.folder)  # a complete run, as the trainer leaves it
    (Path(run.folder) / "config.yaml").write_text(dump_cfg(cfg))
    append_epoch(os.path.join(run.folder, "worklog.txt"), 1, 0.05, {"test_acc": 50.0, "test_acc_top5": 90.0})
    append_best(os.path.join(run.folder, "worklog.txt"), 50.0)
    for name in ("latest", "student_best"):
        torch.save({}, os.path.join(run.folder, name))
    record_teacher(run.folder, cfg)
    assert decide(run, cfg) == ("skip", "complete")
    assert read_run(run.folder, requested=cfg).status == "complete"
    # a longer schedule may resume it, but until then it is not the longer schedule's result
    longer = read_run(run.folder, requested=load_cfg(run.config, run.opts + ["SOLVER.EPOCHS", 2]))
    assert longer.status == "mismatch" and longer.differences == [["SOLVER.EPOCHS", 1, 2]]

    save_random_teacher(teacher, seed=1)
    refusal = (f"^{run.folder} is stale: its teacher {teacher} now holds other weights than the ones it learned "
               r"from \(sha256 [0-9a-f]{12} then, [0-9a-f]{12} now\); pass --overwrite to move its outputs into "
               r".*/replaced/ and redo it$")
    with pytest.raises(CheckpointError, match=refusal):
        decide(run, cfg)
    assert decide(run, cfg, overwrite=True)[1].endswith(" now): old outputs moved aside, starting over")
    result = read_run(run.folder, requested=cfg)
    assert result.status == "stale" and result.problems[0].startswith("stale: its teacher")
    assert summarize([result]).cell("KD", result.pair).top1 is None  # shown as no result


# ---------------------------------------------------------------- what the table shows
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Teacher role + KD, trained with a command-line override (SOLVER.LR 0.02)."""
    from helpers.tiny import COLOUR_CLASSES, write_colour_folder

    tmp = tmp_path_factory.mktemp("tables")
    write_colour_folder(tmp / "data", COLOUR_CLASSES)
    config = write_run_config(tmp / "run.yaml", tmp / "data", tmp / "out")
    spec = write_spec(tmp, teacher_and_kd(config))
    assert benchmark.main(["--spec", str(spec), "--no-chart", "SOLVER.LR", "0.02"]) == 0
    return {"tmp": tmp, "config": config, "spec": spec, "project": tmp / "out" / "tt"}


def test_report_only_without_the_trainings_overrides_refuses_and_keeps_the_table(trained, capsys):
    project = trained["project"]
    before = (project / "results.md").read_bytes()
    assert "—" not in table(project / "results.md").values()
    capsys.readouterr()
    assert benchmark.main(["--spec", str(trained["spec"]), "--report-only", "--no-chart"]) == 2
    out, err = capsys.readouterr()
    assert err == (f"error: the 2 run folder(s) with results under {project} were trained with SOLVER.LR 0.02, but "
                   "this command asks for SOLVER.LR 0.05; repeat the training's overrides (SOLVER.LR 0.02) to report "
                   f"them, or tabulate the folders as they are with --runs-dir {project}\n")
    assert (project / "results.md").read_bytes() == before
    # asking for another LR than the runs had is refused the same way: no LR 0.02 run is shown as LR 0.01's
    assert benchmark.main(["--spec", str(trained["spec"]), "--report-only", "--no-chart", "SOLVER.LR", "0.01"]) == 2
    assert "asks for SOLVER.LR 0.01" in capsys.readouterr().err
    # the way out named works: the same table
    assert benchmark.main(["--spec", str(trained["spec"]), "--report-only", "--no-chart", "SOLVER.LR", "0.02"]) == 0
    assert (project / "results.md").read_bytes() == before


def test_a_run_with_other_settings_is_a_problem_line_not_a_result(trained, capsys):
    """The spec now asks KD for LR 0.01 while its folder holds the LR 0.02 run: the teacher's
    cell is shown, KD's is flagged; written elsewhere, then (not) over the old table."""
    (trained["tmp"] / "edited").mkdir()
    spec = write_spec(trained["tmp"] / "edited", {**teacher_and_kd(trained["config"]),
                                       "KD": {"cfg": str(trained["config"]), "opts": ["SOLVER.LR", 0.01]}})
    out_dir = trained["tmp"] / "elsewhere"
    argv = ["--spec", str(spec), "--report-only", "--no-chart", "--out", str(out_dir), "SOLVER.LR", "0.02"]
    capsys.readouterr()
    assert benchmark.main(argv) == 0
    out = capsys.readouterr().out
    kd = trained["project"] / "KD,resnet8-resnet8,seed0"
    assert f"problem: {kd}: trained with other settings than asked: SOLVER.LR 0.02 (asked: 0.01); not shown " \
           "as the asked config's result" in out
    shown = table(out_dir / "results.md")
    assert shown["KD"] == "—†" and shown["Teacher"] != "—"
    assert rows(out_dir / "results.csv")["KD"]["status"] == "mismatch"
    assert json.load(open(out_dir / "results.json"))["runs"][1]["differences"] == [["SOLVER.LR", 0.02, 0.01]]

    # over the project's own table (which shows KD), it is refused; --overwrite moves the old one aside
    for name in ("results.md", "results.json", "results.csv"):
        shutil.copy(trained["project"] / name, out_dir / name)
    before = (out_dir / "results.md").read_bytes()
    assert benchmark.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: not replacing {out_dir}/results.md: 1 cell(s) showing a result there would show "
                          f"none in this report (KD | {PAIR}; see the problems above); pass --overwrite")
    assert (out_dir / "results.md").read_bytes() == before
    assert benchmark.main(argv + ["--overwrite"]) == 0
    assert f"moved the previous results.* to {out_dir}/replaced/1" in capsys.readouterr().out
    assert (out_dir / "replaced" / "1" / "results.md").read_bytes() == before
    assert table(out_dir / "results.md")["KD"] == "—†"


def test_a_report_never_replaces_numbers_with_dashes(tmp_path):
    done = RunResult("a", "KD", "x -> y", 0, status="complete", best_top1=70.0, last_top1=70.0)
    write_report([done], str(tmp_path), chart=False)
    kept = (tmp_path / "results.md").read_bytes()
    missing = RunResult("a", "KD", "x -> y", 0, status="incomplete", problems=["no worklog.txt"])
    with pytest.raises(OutputError, match=r"not replacing .*results.md: 1 cell\(s\) showing a result there would "
                                          r"show none in this report \(KD \| x -> y; see the problems above\)"):
        write_report([missing], str(tmp_path), chart=False)
    assert (tmp_path / "results.md").read_bytes() == kept
    # a report showing at least as much replaces it without a word; more seeds, other numbers
    write_report([done, RunResult("b", "KD", "x -> y", 1, status="complete", best_top1=72.0, last_top1=72.0)],
                 str(tmp_path), chart=False)
    assert "71.00 ± 1.41" in (tmp_path / "results.md").read_text() and not (tmp_path / "replaced").exists()


def test_paired_differences_are_not_replaced_by_dashes_either(tmp_path):
    def run(method, top1):
        return RunResult(method, method, "x -> y", 0, status="complete" if top1 else "incomplete", best_top1=top1)

    write_paired_report([run("Vanilla", 60.0), run("KD", 62.0)], str(tmp_path))
    kept = (tmp_path / "paired.md").read_bytes()
    with pytest.raises(OutputError, match=r"not replacing .*paired.md: 1 cell\(s\) showing a result there"):
        write_paired_report([run("Vanilla", 60.0), run("KD", None)], str(tmp_path))
    assert (tmp_path / "paired.md").read_bytes() == kept
    _, paths = write_paired_report([run("Vanilla", 60.0), run("KD", None)], str(tmp_path), replace=True)
    assert (tmp_path / "replaced" / "1" / "paired.md").read_bytes() == kept and "replaced" in paths


# ---------------------------------------------------------------- results.png
def test_chart_bars_start_at_zero_and_the_legend_covers_no_bar():
    pytest.importorskip("matplotlib")
    from mdistiller.benchmark.chart import chart_figure

    results = []
    for method, role, accs in [("Teacher", "teacher", [95.1]), ("Vanilla", "student", [89.5, 90.1]),
                               ("KD", "student", [91.0, 91.4]), ("SLD", "student", [92.5, 92.9])]:
        for seed, acc in enumerate(accs):
            results.append(RunResult(f"{method}{seed}", method, "res56 -> res20", seed, role, "complete",
                                     best_top1=acc, last_top1=acc, curve=[(1, acc - 3), (2, acc)]))
    fig = chart_figure(summarize(results))
    bars = fig.axes[0]
    assert bars.get_ylim()[0] == 0.0 and bars.get_ylim()[1] >= 95.1  # every bar whole, the teacher's too
    renderer = fig.canvas.get_renderer()
    legend = bars.get_legend().get_window_extent(renderer)
    patches = [p.get_window_extent(renderer) for p in bars.patches]
    assert len(patches) == 4 and not any(legend.overlaps(p) for p in patches)
    assert legend.y1 <= bars.get_window_extent(renderer).y0  # below the bars' axes
