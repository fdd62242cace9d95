"""Does `tools/benchmark.py --launcher local --jobs 2` really run two runs at once?

Times the same two equal one-thread training runs (the vanilla demo student on the bundled
demo digits, seeds 0 and 1) twice, each time as a whole `tools/benchmark.py` command in a
fresh output folder: one after the other (`--jobs 1`), then at once (`--jobs 2`). Both
commands see the same 2 CPUs (this process's first two), so every run has one thread in both
modes (OMP_NUM_THREADS=1 for the in-process runner; cores // jobs for the workers). Prints
the machine, both wall times, the ratio (at once / one after the other; 0.5 is perfect
overlap, 1.0 none) and whether both modes gave the same accuracies.

    python tools/bench_jobs.py [--epochs 30]
"""
import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """DATASET:
  TYPE: demo
  NUM_WORKERS: 0
DISTILLER:
  TYPE: NONE
  STUDENT: demo_cnn_tiny
SOLVER:
  EPOCHS: {epochs}
  BATCH_SIZE: 64
  LR: 0.05
"""
SPEC = "project: jobs\nseeds: [0, 1]\nopts: [LOG.QUIET, true]\nmethods:\n  Vanilla: {config}\n"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def timed_benchmark(spec, out, jobs):
    """Wall seconds of one tools/benchmark.py command, and its results.csv accuracies."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "--spec", spec, "--jobs", str(jobs),
           "--no-chart", "LOG.PREFIX", out]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    with open(os.path.join(out, "jobs", "results.csv")) as f:
        return seconds, {r["seed"]: r["best_top1"] for r in csv.DictReader(f)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (1,000 digits each)")
    args = p.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("error: this benchmark needs 2 CPUs; run it on a machine with at least two")
    all_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(all_cpus)[:2])  # children inherit: both modes see the same 2 CPUs
    work = tempfile.mkdtemp(prefix="bench_jobs_")
    try:
        config = os.path.join(work, "vanilla.yaml")
        with open(config, "w") as f:
            f.write(CONFIG.format(epochs=args.epochs))
        spec = os.path.join(work, "spec.yaml")
        with open(spec, "w") as f:
            f.write(SPEC.format(config=config))
        serial, acc_serial = timed_benchmark(spec, os.path.join(work, "serial"), 1)
        parallel, acc_parallel = timed_benchmark(spec, os.path.join(work, "parallel"), 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import torch

    print(f"machine: {cpu_name()}, 2 of {len(all_cpus)} CPUs, load average {os.getloadavg()[0]:.1f} at the end, "
          f"torch {torch.__version__}")
    print(f"two vanilla demo_cnn_tiny runs (seeds 0, 1), {args.epochs} epochs each, one thread per run")
    print(f"one after the other (--jobs 1): {serial:7.1f} s")
    print(f"at once (--jobs 2):             {parallel:7.1f} s")
    print(f"ratio at once / one after the other: {parallel / serial:.2f}x (0.5 = perfect overlap)")
    print(f"same accuracies in both modes: {'yes' if acc_serial == acc_parallel else 'NO'} "
          f"({acc_serial} vs {acc_parallel})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
