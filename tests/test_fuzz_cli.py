"""tools/fuzz_cli.py: every command-line program, fed generated malformed input, ends with one
`error:` line or runs normally, never with a traceback (issue 28, "Beyond the list").

The default suite runs a seeded subset in this process (a few refused cases per program) and
two cases as real child processes; the full sweep (`python tools/fuzz_cli.py`, or this file with
`-m slow`) runs every generated case.
"""
import os
import re

import pytest

from helpers.tiny import REPO
from helpers.tools import load_tool

fuzz = load_tool("fuzz_cli")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("fuzz")
    fuzz.Workspace(ws).build()
    return ws


def test_the_generator_is_seeded_covers_every_program_and_key_and_has_500_cases():
    cases = fuzz.generate()
    assert cases == fuzz.generate()  # deterministic
    assert cases != fuzz.generate(seed=1)
    assert len(cases) >= 500
    assert {c.program for c in cases} == set(fuzz.PROGRAMS)
    broken_keys = {c.what.split(" ")[0] for c in cases if c.program == "train"}
    assert {key for key, _ in fuzz.flat_keys()} <= broken_keys
    readme = open(os.path.join(REPO, "README.md")).read()
    said = re.search(r"with ([\d,]+) generated\s+malformed command lines", readme)
    assert said and int(said.group(1).replace(",", "")) == len(cases), f"the README's count is now {len(cases)}"
    assert f"`{len(cases)} cases, 0 tracebacks, 0 other failures" in readme


def test_the_verdict_accepts_one_error_line_or_success_only():
    assert fuzz.verdict(0, "trained\n", "") is None
    assert fuzz.verdict(2, "", "error: config key X is 'y'; choose a or b\n") is None
    assert fuzz.verdict(2, "", "usage: mdistiller-eval [-h]\nmdistiller-eval: error: argument -bs: invalid int\n") is None
    assert fuzz.verdict(1, "", "Traceback (most recent call last):\n  ...\nValueError: x\n") == "traceback"
    assert fuzz.verdict(2, "", "") == "0 error lines"
    assert fuzz.verdict(1, "", "error: x\n") == "exit code 1"


def test_the_fast_subset_ends_cleanly_in_process(workspace):
    cases = fuzz.generate()
    chosen = fuzz.fast_subset(cases)
    assert len(chosen) >= 40 and {cases[i].program for i in chosen} == set(fuzz.PROGRAMS)
    result = fuzz.sweep(chosen, cases, workspace, report=lambda line: None)
    assert result["failures"] == [], [fuzz.describe(i, cases[i]) + f": {why}\n{out}"
                                      for i, why, out in result["failures"]]


def test_two_cases_end_cleanly_as_child_processes(workspace):
    cases = fuzz.generate()
    picks = [next(i for i, c in enumerate(cases) if c.program == "train" and c.what.startswith("--cfg binary")),
             next(i for i, c in enumerate(cases) if c.program == "eval" and c.what.startswith("-c truncated"))]
    result = fuzz.sweep(picks, cases, workspace, in_process=False, report=lambda line: None)
    assert result["failures"] == []


# What earlier sweeps found (each a traceback, a fork bomb or an endless run on main), as
# (program, argv, part of the one error line).
FOUND = [
    ("train", fuzz.train_base("w", f"{fuzz.WS}/out", "DISTILLER.TYPE", "KDSVD", "KDSVD.LOSS.CE_WEIGHT", "inf"),
     "config key KDSVD.LOSS.CE_WEIGHT is inf; a loss weight must be a number >= 0"),
    ("train", fuzz.train_base("w", f"{fuzz.WS}/out", "--logit-stand", "--base-temp", "inf"),
     "--base-temp is inf; it must be a positive number"),
    ("train", fuzz.train_base("w", f"{fuzz.WS}/out", "DATASET.NUM_WORKERS", "99999999999999999999"),
     "config key DATASET.NUM_WORKERS is 99999999999999999999; use at most 256 loader processes"),
    ("eval", fuzz.EVAL_BASE[:3] + [f"{fuzz.WS}/bad/text"] + fuzz.EVAL_BASE[4:],
     "bad/text is not a PyTorch checkpoint"),
    ("bench_speed", fuzz.SPEED_BASE + ["--threads", "99999999999999999999"], "--threads at most 1024"),
    ("bench_speed", fuzz.SPEED_BASE[:3] + ["99999999999999999999"] + fuzz.SPEED_BASE[4:], "--synthetic at most"),
    ("bench_paired", fuzz.PAIRED_BASE + ["--threads", "99999999999999999999"], "use at most 1024"),
]


@pytest.mark.parametrize("program, argv, message", FOUND, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(FOUND)])
def test_what_the_sweep_found_is_one_line(workspace, program, argv, message):
    case = fuzz.Case(program, argv, "found")
    why, code, out, err, _ = fuzz.run_case(case, workspace)
    assert why is None and code == 2, (why, err)
    assert message in err, err


@pytest.mark.slow
def test_the_full_sweep_has_no_tracebacks(workspace):
    cases = fuzz.generate()
    result = fuzz.sweep(range(len(cases)), cases, workspace, report=print)
    print(f"{result['cases']} cases, {result['tracebacks']} tracebacks")
    assert result["failures"] == [], [fuzz.describe(i, cases[i]) + f": {why}" for i, why, _ in result["failures"]]
