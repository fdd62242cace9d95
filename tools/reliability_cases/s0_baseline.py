"""Baseline: an ordinary run trains, writes only its run folder, and resumes."""
from pathlib import Path


def trains_and_writes_only_its_run_folder(ctx):
    done = ctx.run("train", *ctx.train_args("baseline"))
    ctx.expect(done.returncode == 0, f"a plain one-epoch run failed (rc {done.returncode}): {done.stderr[-300:]}")
    folder = Path(ctx.output, "rel", "baseline")
    ctx.expect((folder / "student_latest").is_file(), "no student_latest after a finished run")


def resume_of_a_finished_run_keeps_its_results(ctx):
    folder = Path(ctx.output, "rel", "baseline")
    token = ctx.keep_results(folder)
    done = ctx.run("train", *ctx.train_args("baseline"), "--resume")
    ctx.expect(done.returncode == 0, f"--resume of a finished run failed (rc {done.returncode}): {done.stderr[-300:]}")
    ctx.check_results(token)


CASES = [
    ("a one-epoch run writes only its run folder", trains_and_writes_only_its_run_folder),
    ("--resume of a finished run keeps its results", resume_of_a_finished_run_keeps_its_results),
]
