"""Running a benchmark: every planned run is a normal training run (`engine.build.train`, what
tools/train.py calls), in this process, one after the other.

Resumable: before each run its folder is inspected (`decide`):
  skip     the worklog ends with `best_acc` after the configured number of epochs, and the
           folder's config.yaml matches the run's config (LOG.* and loader knobs aside);
  resume   a `latest` checkpoint of the same config exists: continue after its epoch;
  start    nothing usable (no folder, no checkpoint, or a different config): start over,
           deleting the folder's old outputs.
So a benchmark that was interrupted, or extended by more seeds or methods, only trains what
is missing, and running it again trains nothing. Each run is claimed first (engine/run_lock.py):
a run another launcher is training is left to it ("busy"), never trained twice.

Around each training call `run.json` records the labels (method, pair, seed, role), the
config and overrides, the status and the training wall time (summed over resumed parts).
"""
import os
import time

import yaml

from ..config import dump_cfg
from ..engine.run_lock import claimed, describe, lock_path
from ..errors import UserError
from .collect import read_config, read_run, read_run_json, write_run_json
from .spec import plan_runs
from .worklog import read_worklog

# Keys that change how a run is logged or loaded, not what it computes.
NOT_COMPARED = ("LOG", "DATASET.NUM_WORKERS", "DATASET.CACHE_DIR")


def comparable(config):
    """A config dict without the NOT_COMPARED keys."""
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for key in NOT_COMPARED:
        section, _, name = key.partition(".")
        if not name:
            config.pop(section, None)
        elif isinstance(config.get(section), dict):
            config[section].pop(name, None)
    return config


def decide(run, cfg):
    """(action, reason) for one run: action is "skip", "resume" or "start" (module docstring)."""
    folder = run.folder
    if not os.path.isdir(folder):
        return "start", "new"
    saved = read_config(folder)
    if saved and comparable(saved) != comparable(yaml.safe_load(dump_cfg(cfg))):
        return "start", "its config changed: starting over"
    log = read_worklog(os.path.join(folder, "worklog.txt"))
    if log.finished and log.last_epoch >= cfg.SOLVER.EPOCHS and os.path.isfile(os.path.join(folder, "student_best")):
        return "skip", "complete"
    if os.path.isfile(os.path.join(folder, "latest")):
        return "resume", f"resuming after epoch {log.last_epoch}"
    return "start", "no checkpoint: starting over"


def earlier_wall_time(run, action):
    """Training seconds the folder's earlier parts recorded: counted only when resuming, since
    starting over discards that work."""
    return (read_run_json(run.folder).get("wall_time_s") or 0.0) if action == "resume" else 0.0


def run_meta(run, **extra):
    """run.json's labels, config and overrides for one run, "failed" until training completes."""
    return {"method": run.method, "pair": run.pair, "seed": run.seed, "role": run.role,
            "config": run.config, "opts": list(run.opts), "status": "failed", **extra}


def execute(run, cfg, action, train=None):
    """Train one run (resume or start over) and record run.json; UserErrors propagate."""
    if train is None:
        from ..engine.build import train
    earlier = earlier_wall_time(run, action)
    meta = run_meta(run)
    start = time.perf_counter()
    try:
        train(cfg, resume=action == "resume", overwrite=action == "start")
        meta["status"] = "complete"
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
        raise
    except UserError as err:
        meta["error"] = str(err)
        raise
    finally:
        meta["wall_time_s"] = earlier + time.perf_counter() - start
        write_run_json(run.folder, meta)


def run_matrix(matrix, dry_run=False, say=print, train=None):
    """Run (or with dry_run, only list) every planned run of `matrix`. Returns
    (runs, {"skip"/"resume"/"start": count}, [(run, error message)] of failed runs)."""
    runs = plan_runs(matrix)
    counts, failures = {"skip": 0, "resume": 0, "start": 0}, []
    for i, run in enumerate(runs, 1):
        run_one(run, f"[{i}/{len(runs)}]", counts, failures, dry_run, say, train, show_folder=True)
    return runs, counts, failures


def run_one(run, head, counts, failures, dry_run, say, train, show_folder):
    """Claim (engine/run_lock.py), decide, report (prefixed by `head`) and unless skipped or
    dry-run train one run; counts its action ("busy" when another launcher holds it) and appends
    (run, message) to `failures` when a UserError stops it."""
    def work():
        decide_and_train(run, head, counts, failures, dry_run, say, train, show_folder)

    label = f"{head} {run.method} | {run.pair} | seed {run.seed}"
    if dry_run:
        work()
    else:
        run_claimed([run], label, counts, say, work)


def run_claimed(runs, label, counts, say, work):
    """`work()` while holding the folders of `runs` (all or none); when another launcher holds
    one of them, count the runs as "busy" and say who holds it instead."""
    with claimed([run.folder for run in runs]) as held:
        if held:
            folder, holder = held
            counts["busy"] = counts.get("busy", 0) + len(runs)
            say(f"{label}: held by {describe(holder)} (lock {lock_path(folder)}): left to it")
            return
        work()


def attempt(head, runs, failures, say, work):
    """`work()`; a UserError is reported (prefixed by `head`) and recorded for every run in
    `failures`. Returns whether it went through."""
    try:
        work()
        return True
    except UserError as err:
        say(f"{head} failed: {err}")
        failures.extend((run, str(err)) for run in runs)
        return False


def decide_and_train(run, head, counts, failures, dry_run, say, train, show_folder):
    cfg = run.cfg()
    action, reason = decide(run, cfg)
    counts[action] += 1
    say(f"{head} {run.method} | {run.pair} | seed {run.seed}: {reason}"
        + (f" ({run.folder})" if show_folder and (dry_run or action != "skip") else ""))
    if not dry_run and action != "skip":
        attempt(head, [run], failures, say, lambda: execute(run, cfg, action, train))


def collect_matrix(runs):
    """RunResults of planned runs (labels from the plan, not from the folders)."""
    return [read_run(r.folder, r.method, r.pair, r.seed, r.role, planned_epochs=r.cfg().SOLVER.EPOCHS)
            for r in runs]
