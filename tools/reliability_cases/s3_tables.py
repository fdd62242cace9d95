"""Section 3: a benchmark table never shows a cell that is not what it says.

The benchmark also fails before its first epoch, in one line per problem (Ctrl-C included).

Run as a program, this file is also the Ctrl-C driver of its cases:
    python s3_tables.py interrupt WATCHED_FOLDER BENCHMARK_ARGS...
starts tools/benchmark.py, sends SIGINT to its process group (as a terminal's Ctrl-C does) once a
worklog under WATCHED_FOLDER holds an epoch, relays its output and exits with its exit code.
"""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

TOOLS = Path(__file__).resolve().parent.parent
HINT = "interrupted; rerun the same command to continue"


# ---------------------------------------------------------------- files the cases write
def write_config(ctx, name, teacher_weights=""):
    """A KD config (resnet8 -> resnet8) on the context's tiny image folder, runs under output/."""
    path = ctx.ws / "specs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "DEVICE": "cpu", "DATASET": {"TYPE": "imagefolder", "ROOT": str(ctx.image_folder()), "NUM_WORKERS": 0},
        "DISTILLER": {"TYPE": "KD", "TEACHER": "resnet8", "STUDENT": "resnet8",
                      "TEACHER_WEIGHTS": str(teacher_weights)},
        "SOLVER": {"EPOCHS": 1, "BATCH_SIZE": 8, "LR": 0.05}, "LOG": {"PREFIX": str(ctx.output), "QUIET": True}}))
    return path


def write_spec(ctx, name, methods, project, **extra):
    path = ctx.ws / "specs" / name
    path.write_text(yaml.safe_dump({"project": project, "seeds": [0], "methods": methods, **extra}))
    return path


def teacher_and_kd(config, teacher_opts=()):
    return {"Teacher": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE", *teacher_opts], "role": "teacher"},
            "KD": str(config)}


def errors(done):
    return [line for line in done.stderr.splitlines() if line.strip()]


def one_error(ctx, done, what, *parts):
    lines = errors(done)
    ok = done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    ok = ok and all(part in lines[0] for part in parts)
    return ctx.expect(ok, f"{what}: expected one error line with {parts}, got rc {done.returncode}: {lines[:3]}")


def cell(md_path, method):
    """The text of `method`'s cell in a results.md accuracy table."""
    for line in Path(md_path).read_text().split("\n\n")[1].splitlines()[2:]:
        if line.split(" | ")[0].strip("| *") == method:
            return line.split(" | ")[1].strip(" |")
    return None


# ---------------------------------------------------------------- the cases
def retrained_teacher_makes_its_student_stale(ctx):
    config = write_config(ctx, "stale.yaml")
    spec = write_spec(ctx, "stale_spec.yaml", teacher_and_kd(config), "stale")
    done = ctx.run("benchmark", "--spec", spec, "--no-chart")
    ctx.expect(done.returncode == 0, f"the benchmark failed (rc {done.returncode}): {done.stderr[-300:]}")
    project = ctx.output / "stale"
    teacher, kd = project / "Teacher,resnet8-resnet8,seed0", project / "KD,resnet8-resnet8,seed0"
    token = ctx.keep_results(kd)
    retrained = ctx.run("train", "--cfg", teacher / "config.yaml", "--overwrite", "--quiet", "SOLVER.LR", "0.1")
    ctx.expect(retrained.returncode == 0, f"retraining the teacher failed: {retrained.stderr[-300:]}")

    again = ctx.run("benchmark", "--spec", spec, "--no-chart", "--out", project / "report")
    said = [line for line in again.stdout.splitlines() if line.startswith("[2/2] KD")]
    ctx.expect(again.returncode == 1 and len(said) == 1 and "is stale: its teacher" in said[0]
               and "pass --overwrite" in said[0], f"the stale student was not refused in one line: {said}")
    ctx.expect(cell(project / "report" / "results.md", "KD") == "—†", "the stale cell is shown as a result")
    resumed = ctx.run("train", "--cfg", kd / "config.yaml", "--resume", "--quiet")
    one_error(ctx, resumed, "--resume of the stale student", "cannot resume", "its teacher")

    spec = write_spec(ctx, "stale_spec.yaml", teacher_and_kd(config, ["SOLVER.LR", 0.1]), "stale")
    redo = ctx.run("benchmark", "--spec", spec, "--no-chart", "--overwrite")
    ctx.expect(redo.returncode == 0 and "ran 1, skipped 1 complete, 0 failed" in redo.stdout,
               f"--overwrite did not redo the stale student alone: {redo.stdout[-400:]}")
    ctx.expect((kd / "replaced" / "1" / "student_best").is_file(), "the stale run was not moved aside")
    ctx.check_results(token)


def report_only_never_tabulates_other_settings(ctx):
    config = write_config(ctx, "settings.yaml")
    spec = write_spec(ctx, "settings_spec.yaml", {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]}},
                      "settings")
    done = ctx.run("benchmark", "--spec", spec, "--no-chart", "SOLVER.LR", "0.02")
    ctx.expect(done.returncode == 0, f"the benchmark failed: {done.stderr[-300:]}")
    project = ctx.output / "settings"
    token = ctx.keep_results(project)
    before = (project / "results.md").read_bytes()
    for extra, asked in (((), "SOLVER.LR 0.05"), (("SOLVER.LR", "0.01"), "SOLVER.LR 0.01")):
        refused = ctx.run("benchmark", "--spec", spec, "--report-only", "--no-chart", *extra)
        one_error(ctx, refused, f"--report-only {' '.join(extra)}", "were trained with SOLVER.LR 0.02",
                  f"asks for {asked}", "repeat the training's overrides (SOLVER.LR 0.02)")
    ctx.expect((project / "results.md").read_bytes() == before, "results.md was rewritten")
    same = ctx.run("benchmark", "--spec", spec, "--report-only", "--no-chart", "SOLVER.LR", "0.02")
    ctx.expect(same.returncode == 0 and (project / "results.md").read_bytes() == before,
               "repeating the training's overrides does not give the same table")
    ctx.check_results(token)


def a_report_never_replaces_numbers_with_dashes(ctx):
    """The spec now asks the run for another LR: its cell is a problem line, and the table that
    showed it is kept unless --overwrite (which moves it aside)."""
    config = write_config(ctx, "settings.yaml")
    spec = write_spec(ctx, "edited_spec.yaml", {"Vanilla": {"cfg": str(config),
                                                            "opts": ["DISTILLER.TYPE", "NONE", "SOLVER.LR", 0.01]}},
                      "settings")
    project = ctx.output / "settings"
    token = ctx.keep_results(project)
    refused = ctx.run("benchmark", "--spec", spec, "--report-only", "--no-chart", "SOLVER.LR", "0.02")
    one_error(ctx, refused, "a report-only of other settings", "were trained with SOLVER.LR 0.02")
    kept = ctx.run("benchmark", "--spec", spec, "--no-chart", "SOLVER.LR", "0.02")
    ctx.expect(kept.returncode == 2 and "not replacing" in kept.stderr and "refused" in kept.stdout,
               f"a refused run's report replaced the table: {kept.stderr[-300:]}")
    rows = list(csv.DictReader(open(project / "results.csv")))
    ctx.expect([r["status"] for r in rows] == ["complete"], "results.csv lost its complete run")
    ctx.check_results(token)


def config_tree(ctx, teacher):
    folder = ctx.ws / "configs" / "tiny" / "kd"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a_b.yaml").write_text(write_config(ctx, "tree.yaml", teacher).read_text())
    return ["--configs-dir", str(ctx.ws / "configs"), "--dataset", "tiny", "--pairs", "a_b", "--project", "tree"]


def the_baseline_is_checked_before_training(ctx):
    teacher = ctx.ws / "specs" / "teacher.pth"
    teacher.write_bytes(b"only looked for: the dry run and the refused run load nothing")
    tree = config_tree(ctx, teacher)
    ok = ctx.run("benchmark", "--methods", "NONE", "KD", *tree, "--paired", "--baseline", "Vanilla", "--dry-run")
    ctx.expect(ok.returncode == 0 and "2 to start" in ok.stdout, f"--baseline Vanilla refused: {ok.stderr[-300:]}")
    wrong = ctx.run("benchmark", "--methods", "NONE", "KD", *tree, "--paired", "--baseline", "MLKD")
    one_error(ctx, wrong, "--baseline MLKD", "--baseline MLKD is not a method of this benchmark (NONE, KD)")
    ctx.expect(not (ctx.output / "tree").exists(), "runs trained before the baseline was checked")


def a_missing_teacher_is_one_line_before_anything(ctx):
    config = write_config(ctx, "missing.yaml", ctx.ws / "gone.pth")
    spec = write_spec(ctx, "missing_spec.yaml", {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]},
                                                 "KD": str(config)}, "missing", seeds=[0, 1], paired=True)
    done = ctx.run("benchmark", "--spec", spec)
    one_error(ctx, done, "a missing teacher", "DISTILLER.TEACHER_WEIGHTS", "gone.pth", "does not exist")
    ctx.expect(not (ctx.output / "missing").exists(), "a benchmark with a missing teacher wrote folders or tables")


def every_problem_at_once(ctx):
    taken = ctx.ws / "specs" / "taken"
    taken.write_text("a file")
    done = ctx.run("benchmark", "--methods", "KD", "DKD", "--pairs", "res56_res20", "--seeds", "0", "1",
                   "--configs-dir", TOOLS.parent / "configs", "--out", taken, "LOG.PREFIX", ctx.output / "all")
    lines = errors(done)
    ctx.expect(done.returncode == 2 and len(lines) == 3 and "CIFAR-100 not found" in lines[0]
               and "teacher checkpoint for resnet56 not found" in lines[1] and "is a file, not a folder" in lines[2],
               f"expected the data, the teacher and --out, each once: {lines}")


def bad_paths_are_one_line(ctx):
    folder, binary, taken = ctx.ws / "specs" / "a_folder", ctx.ws / "specs" / "binary.yaml", ctx.ws / "specs" / "taken"
    folder.mkdir(exist_ok=True)
    binary.write_bytes(bytes(range(256)) * 8)
    taken.write_text("a file")
    one_error(ctx, ctx.run("benchmark", "--spec", folder), "--spec a folder", "is a folder")
    one_error(ctx, ctx.run("benchmark", "--spec", binary), "--spec a binary file", "is not UTF-8 text")
    stale = ctx.output / "stale"
    if stale.is_dir():
        one_error(ctx, ctx.run("benchmark", "--runs-dir", stale, "--out", taken), "--out a file", "is a file")
    one_error(ctx, ctx.run("analyze", "-c", ctx.ws / "none", "-o", taken), "analyze -o a file", "is a file")


def read_only_outputs_are_one_line(ctx):
    ro = ctx.ws / "read_only"
    ro.mkdir(exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        ro.chmod(0o555)
    try:
        config = write_config(ctx, "ro.yaml")
        spec = write_spec(ctx, "ro_spec.yaml", {"Vanilla": {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE"]}},
                          "ro")
        trained = ctx.run("benchmark", "--spec", spec, "LOG.PREFIX", ro)
        lines = errors(trained)
        ctx.expect(trained.returncode == 2 and lines and all(line.startswith("error: cannot write") for line in lines),
                   f"a read-only LOG.PREFIX: {lines}")
        one_error(ctx, ctx.run("benchmark", "--spec", spec, "--report-only", "--out", ro), "--report-only --out ro",
                  "cannot write the tables")
        one_error(ctx, ctx.run("analyze", "-c", ctx.ws / "none", "-o", ro / "a"), "analyze -o ro", "cannot write")
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
        ro.chmod(0o755)


def ctrl_c(ctx, jobs):
    config = write_config(ctx, "sigint.yaml")
    methods = {m: {"cfg": str(config), "opts": ["DISTILLER.TYPE", "NONE", "SOLVER.LR", lr]}
               for m, lr in (("A", 0.05), ("B", 0.1))}
    project = f"sigint{len(jobs)}"
    spec = write_spec(ctx, f"{project}.yaml", methods, project, seeds=[0, 1], opts=["SOLVER.EPOCHS", 4])
    args = ["--spec", str(spec), "--no-chart", *jobs]
    done = ctx.run(argv=[sys.executable, __file__, "interrupt", str(ctx.output / project), *args])
    ctx.expect(done.returncode == 130 and done.stderr.strip().startswith(HINT),
               f"Ctrl-C: rc {done.returncode}, stderr {done.stderr[-300:]!r}")
    again = ctx.run("benchmark", *args)
    ctx.expect(again.returncode == 0 and "0 failed" in again.stdout, f"the rerun failed: {again.stdout[-300:]}")


CASES = [
    ("a retrained teacher makes its student stale: refused, flagged, redone by --overwrite",
     retrained_teacher_makes_its_student_stale),
    ("--report-only never tabulates runs of other settings", report_only_never_tabulates_other_settings),
    ("a report never replaces numbers with dashes", a_report_never_replaces_numbers_with_dashes),
    ("--baseline Vanilla names the NONE row; a wrong one fails before training",
     the_baseline_is_checked_before_training),
    ("a missing teacher is one line, before any run", a_missing_teacher_is_one_line_before_anything),
    ("every problem of a matrix at once, each once", every_problem_at_once),
    ("--spec a folder or binary, --out/-o a file: one line", bad_paths_are_one_line),
    ("read-only output folders: one line", read_only_outputs_are_one_line),
    ("Ctrl-C of a sequential benchmark: one line, resumable", lambda ctx: ctrl_c(ctx, [])),
    ("Ctrl-C of --jobs 2: one line, resumable", lambda ctx: ctrl_c(ctx, ["--jobs", "2"])),
]


def interrupt(watched, *args):
    """The Ctrl-C driver (module docstring)."""
    child = subprocess.Popen([sys.executable, str(TOOLS / "benchmark.py"), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None:
        if any("epoch: 1" in p.read_text() for p in Path(watched).glob("*/worklog.txt")):
            os.killpg(child.pid, signal.SIGINT)
            break
        time.sleep(0.1)
    out, err = child.communicate(timeout=600)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return child.returncode


if __name__ == "__main__" and sys.argv[1:2] == ["interrupt"]:
    sys.exit(interrupt(*sys.argv[2:]))
