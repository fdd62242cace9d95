"""`tools/benchmark.py --launcher local --jobs N`: up to N units (launch.py) at once on this
machine, each in a worker process of its own.

Each worker holds one slot for its life: on a GPU machine one GPU (CUDA_VISIBLE_DEVICES; slots
go round the visible GPUs when N exceeds them), and everywhere its share of the CPU threads
(cores // N, at least one), so N one-GPU or few-thread runs do not fight over the machine.
Workers are started with "spawn" (a fresh interpreter: no CUDA state inherited). A unit's own
output (progress, warnings, tracebacks) goes to <project>/logs/<unit>.log; this process prints
the unit's decision and outcome when it ends. Teachers run before students (launch.py stages).
"""
import concurrent.futures
import contextlib
import glob
import multiprocessing
import os
import traceback

from .launch import add_counts, finished, new_counts, plan_units, run_unit


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_slots(jobs, gpu_ids):
    """One {"env": {...}, "threads": n} per worker (module docstring)."""
    threads = max(1, cpu_count() // jobs)
    slots = []
    for i in range(jobs):
        env = {"OMP_NUM_THREADS": str(threads)}
        if gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = gpu_ids[i % len(gpu_ids)]
        slots.append({"env": env, "threads": threads})
    return slots


def visible_gpus():
    """The GPU ids this process may hand out ([] on a CPU machine)."""
    if not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/kfd"):
        return []  # no NVIDIA/AMD GPU device here: spare this process a torch import before the workers start
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return listed.split(",") if listed else [str(i) for i in range(torch.cuda.device_count())]


def _take_slot(queue):
    """Worker initializer: adopt one slot before torch starts any thread or CUDA context."""
    slot = queue.get()
    os.environ.update(slot["env"])
    import torch

    torch.set_num_threads(slot["threads"])


def log_file(unit):
    return os.path.join(unit.project_dir, "logs", f"{unit.name}.log")


def _work(unit, log_path, overwrite=False):
    """One unit in a worker: (counts, failures, the lines to print)."""
    lines = []
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        def say(line):
            lines.append(line)
            print(line)

        try:
            counts, failures = run_unit(unit, say, overwrite=overwrite)
        except Exception as err:  # a bug, not bad input: keep the traceback in the unit's log
            traceback.print_exc()
            counts = new_counts()
            failures = [(run.folder, f"{type(err).__name__}: {err}") for run in unit.runs]
    return counts, failures, lines


def run_local(matrix, paired=False, jobs=1, say=print, overwrite=False):
    """Train every unfinished unit of `matrix`, `jobs` at a time. Returns what `run_matrix`
    returns: (runs, counts, [(run, error message)])."""
    runs, stages = plan_units(matrix, paired)
    by_folder = {run.folder: run for stage in stages for unit in stage for run in unit.runs}  # cache anchors too
    counts, failures = new_counts(), []
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    for slot in make_slots(jobs, visible_gpus()):
        queue.put(slot)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_take_slot,
                                                initargs=(queue,)) as pool:
        for stage in stages:
            todo = []
            for unit in stage:
                if finished(unit):
                    counts["skip"] += len(unit.runs)
                else:
                    todo.append(unit)
            futures = {pool.submit(_work, unit, log_file(unit), overwrite): unit for unit in todo}
            for future in concurrent.futures.as_completed(futures):
                unit = futures[future]
                done, failed, lines = future.result()
                add_counts(counts, done)
                for line in lines:
                    say(line)
                for folder, message in failed:
                    say(f"failed: {unit.label()}: {message} (log {log_file(unit)})")
                    failures.append((by_folder[folder], message))
    return runs, counts, failures
