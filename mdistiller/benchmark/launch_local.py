"""`tools/benchmark.py --launcher local --jobs N`: up to N units (launch.py) at once on this
machine, each in a worker process of its own.

Each worker holds one slot for its life: on a GPU machine one GPU (CUDA_VISIBLE_DEVICES; slots
go round the visible GPUs when N exceeds them), and everywhere its share of the CPU threads
(cores // N, at least one), so N one-GPU or few-thread runs do not fight over the machine.
Workers are started with "spawn" (a fresh interpreter: no CUDA state inherited). A unit's own
output (progress, warnings, tracebacks) goes to <project>/logs/<unit>.log; this process prints
the unit's decision and outcome when it ends. Teachers run before students (launch.py stages).
Ctrl-C is handled here alone: the workers ignore SIGINT, and this process stops their trainings
(SIGTERM, which a worker turns into the in-process runner's interruption) and passes the
KeyboardInterrupt on, so that tools/benchmark.py prints one line saying how to resume.
"""
import concurrent.futures
import contextlib
import glob
import multiprocessing
import os
import signal
import threading
import traceback

from ..errors import UserError
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
    """Worker initializer: adopt one slot before torch starts any thread or CUDA context. Ctrl-C
    is this process's to handle (`stop_workers`): a worker ignores SIGINT, and SIGTERM stops
    its training as Ctrl-C stops an in-process run (its run.json says "interrupted")."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    slot = queue.get()
    os.environ.update(slot["env"])
    import torch

    torch.set_num_threads(slot["threads"])


_busy = False  # a worker is running a unit (`_work`)
_stopping = False  # a worker was told to stop: units already queued to it are not started


def _on_sigterm(signum, frame):
    global _stopping
    _stopping = True
    if _busy:
        raise KeyboardInterrupt  # unwinds the run: its lock is released and run.json records the interruption
    os._exit(128 + signum)  # idle: nothing to leave in order


@contextlib.contextmanager
def sigint_ignored():
    """Workers started inside inherit an ignored SIGINT from the start (before their initializer
    runs), so a Ctrl-C never interrupts one while Python is starting. Only the main thread may
    set handlers: elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_workers(workers):
    """After Ctrl-C here: end the workers' trainings (SIGTERM) and let the pool wind down."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()


def log_file(unit):
    return os.path.join(unit.project_dir, "logs", f"{unit.name}.log")


def _work(unit, log_path, overwrite=False):
    """One unit in a worker: (counts, failures, the lines to print)."""
    global _busy
    if _stopping:
        return new_counts(), [(run.folder, "interrupted") for run in unit.runs], []
    lines = []
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        def say(line):
            lines.append(line)
            print(line)

        _busy = True
        try:
            counts, failures = run_unit(unit, say, overwrite=overwrite)
        except KeyboardInterrupt:  # stopped by the launcher's Ctrl-C (stop_workers), which says so itself
            counts, failures = new_counts(), [(run.folder, "interrupted") for run in unit.runs]
        except UserError as err:  # e.g. a full disk while claiming the unit's runs: one line
            print(f"failed: {err}")  # to the log; the parent prints the failure
            counts, failures = new_counts(), [(run.folder, str(err)) for run in unit.runs]
        except Exception as err:  # a bug, not bad input: keep the traceback in the unit's log
            traceback.print_exc()
            counts = new_counts()
            failures = [(run.folder, f"{type(err).__name__}: {err}") for run in unit.runs]
        finally:
            _busy = False
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
    before = set(multiprocessing.active_children())
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_take_slot,
                                                initargs=(queue,)) as pool:
        try:
            for stage in stages:
                run_stage(pool, stage, overwrite, counts, failures, by_folder, say)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_workers(set(multiprocessing.active_children()) - before)
            raise
    return runs, counts, failures


def run_stage(pool, stage, overwrite, counts, failures, by_folder, say):
    """Train the unfinished units of one stage on the pool; tally and report each as it ends."""
    todo = []
    for unit in stage:
        if finished(unit):
            counts["skip"] += len(unit.runs)
        else:
            todo.append(unit)
    with sigint_ignored():
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
