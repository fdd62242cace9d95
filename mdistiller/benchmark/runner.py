"""Running a benchmark: every planned run is a normal training run (`engine.build.train`, what
tools/train.py calls), in this process, one after the other.

Resumable: before each run its folder is inspected (`decide`):
  skip     the worklog ends with `best_acc` after the configured number of epochs, and the
           folder's config.yaml matches the run's config (the keys that are safe to change on
           resume aside: engine/run_folder.py SAFE_ON_RESUME);
  resume   a `latest` checkpoint of the same config exists: continue after its epoch;
  start    no folder, or no results (engine/run_folder.py: no checkpoint of any name, no
           worklog epoch); with --overwrite also results without a `latest`.
A folder with checkpoints whose config differs from the run's, or whose run is stale (its
teacher's weights changed since it trained: engine/teacher_identity.py), is never skipped or
resumed: it is refused (a failed run, one line naming the keys or the teacher) unless
`overwrite` (--overwrite) is given: then its outputs are moved into `<folder>/replaced/N/`
and the run starts over. Nothing is ever deleted.
So a benchmark that was interrupted, or extended by more seeds or methods, only trains what
is missing, and running it again trains nothing. Each run is claimed first (engine/run_lock.py):
a run another launcher is training is left to it ("busy"), never trained twice.

Around each training call `run.json` records the labels (method, pair, seed, role), the
config and overrides, the status and the training wall time (summed over resumed parts).
"""
import os
import time

from ..engine.run_folder import REPLACED, RunFiles, config_changes, describe_changes, read_config
from ..engine.run_lock import claimed, describe, lock_path, unreadable_message
from ..engine.teacher_identity import teacher_change
from ..engine.wandb_log import table_cells
from ..errors import CheckpointError, UserError
from .collect import read_run, read_run_json, write_run_json
from .spec import plan_runs
from ..engine.worklog import read_worklog


def decide(run, cfg, overwrite=False):
    """(action, reason) for one run: action is "skip", "resume" or "start" (module docstring).
    CheckpointError when the folder's config or teacher differs, or it holds results without a
    `latest` (engine/run_folder.py), and `overwrite` is False."""
    folder = run.folder
    if not os.path.isdir(folder):
        return "start", "new"
    why, refusal, way_back = _difference(folder, cfg)
    if why and not RunFiles(folder).results():  # e.g. it diverged in epoch 1: nothing to keep
        return "start", f"{why} and no checkpoint was written: starting over"
    if why:
        if not overwrite:
            raise CheckpointError(f"{folder} {refusal}; pass --overwrite to move its outputs into "
                                  f"{os.path.join(folder, REPLACED)}/ and {way_back}")
        return "start", f"{why}: old outputs moved aside, starting over"
    log = read_worklog(os.path.join(folder, "worklog.txt"))
    if log.finished and log.last_epoch >= cfg.SOLVER.EPOCHS and os.path.isfile(os.path.join(folder, "student_best")):
        return "skip", "complete"
    if os.path.isfile(os.path.join(folder, "latest")):
        return "resume", f"resuming after epoch {log.last_epoch}"
    found = RunFiles(folder).results()
    if found and not overwrite:  # what train would refuse (engine/run_folder.py check_start)
        raise CheckpointError(f"{folder} holds results ({', '.join(found[:4])}) but no `latest` to resume from; pass "
                              f"--overwrite to move them into {os.path.join(folder, REPLACED)}/ and start over")
    if found:
        return "start", "results but no `latest`: old outputs moved aside, starting over"
    return "start", "no committed epoch: starting over"


def _difference(folder, cfg):
    """(why, refusal, way out) when the folder's run is not the one `cfg` asks for: its config
    differs, or it is stale (its teacher's weights changed since: engine/teacher_identity.py);
    else (None, None, None)."""
    saved = read_config(folder)
    changes = config_changes(saved, cfg) if saved else []
    if changes:
        shown = describe_changes(changes)
        return (f"its config changed ({shown})", f"was trained with another config ({shown})",
                "start over, or run it with the config it was trained with")
    stale = teacher_change(folder, cfg)
    if stale:
        return f"it is stale: {stale}", f"is stale: {stale}", "redo it"
    return None, None, None


def earlier_wall_time(run, action):
    """Training seconds the folder's earlier parts recorded: counted only when resuming, since
    starting over discards that work."""
    return (read_run_json(run.folder).get("wall_time_s") or 0.0) if action == "resume" else 0.0


def wandb_cells(runs):
    """{folder: table cell} of `runs`, carried into their wandb config (LOG.WANDB)."""
    return {run.folder: {"method": run.method, "pair": run.pair, "seed": run.seed} for run in runs}


def run_meta(run, **extra):
    """run.json's labels, config and overrides for one run, "failed" until training completes."""
    return {"method": run.method, "pair": run.pair, "seed": run.seed, "role": run.role,
            "config": run.config, "opts": list(run.opts), "status": "failed", **extra}


def execute(run, cfg, action, train=None, overwrite=False):
    """Train one run (resume or start over; with `overwrite` old outputs are moved aside) and
    record run.json; UserErrors propagate."""
    if train is None:
        from ..engine.build import train
    earlier = earlier_wall_time(run, action)
    meta = run_meta(run)
    start = time.perf_counter()
    try:
        with table_cells(wandb_cells([run])):
            train(cfg, resume=action == "resume", overwrite=overwrite and action == "start")
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


def run_matrix(matrix, dry_run=False, say=print, train=None, overwrite=False):
    """Run (or with dry_run, only list) every planned run of `matrix`. Returns
    (runs, {"skip"/"resume"/"start"/"refused": count}, [(run, error message)] of failed or refused runs)."""
    runs = plan_runs(matrix)
    counts, failures = {"skip": 0, "resume": 0, "start": 0, "refused": 0}, []
    for i, run in enumerate(runs, 1):
        run_one(run, f"[{i}/{len(runs)}]", counts, failures, dry_run, say, train, show_folder=True,
                overwrite=overwrite)
    return runs, counts, failures


def run_one(run, head, counts, failures, dry_run, say, train, show_folder, overwrite=False):
    """Claim (engine/run_lock.py), decide, report (prefixed by `head`) and unless skipped or
    dry-run train one run; counts its action ("busy" when another launcher holds it) and appends
    (run, message) to `failures` when a UserError refuses or stops it."""
    def work():
        decide_and_train(run, head, counts, failures, dry_run, say, train, show_folder, overwrite)

    label = f"{head} {run.method} | {run.pair} | seed {run.seed}"
    if dry_run:
        work()
    else:
        run_claimed([run], label, counts, say, work)


def run_claimed(runs, label, counts, say, work):
    """`work()` while holding the folders of `runs` (all or none); when another launcher holds
    one of them, count the runs as "busy" and say who holds it instead ("locked" when its lock
    cannot be read: nobody is known to hold it, and it must be cleared by hand)."""
    with claimed([run.folder for run in runs]) as held:
        if held:
            folder, holder = held
            if not holder:
                counts["locked"] = counts.get("locked", 0) + len(runs)
                say(f"{label}: not started: {unreadable_message(folder)}")
                return
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


def decide_and_train(run, head, counts, failures, dry_run, say, train, show_folder, overwrite=False):
    cfg = run.cfg()
    labels = f"{head} {run.method} | {run.pair} | seed {run.seed}"
    try:
        action, reason = decide(run, cfg, overwrite)
    except UserError as err:
        say(f"{labels}: refused: {err}")
        counts["refused"] = counts.get("refused", 0) + 1
        failures.append((run, str(err)))
        return
    counts[action] += 1
    say(f"{labels}: {reason}" + (f" ({run.folder})" if show_folder and (dry_run or action != "skip") else ""))
    if not dry_run and action != "skip":
        attempt(head, [run], failures, say, lambda: execute(run, cfg, action, train, overwrite))


def collect_matrix(runs):
    """RunResults of planned runs (labels from the plan, not from the folders), each checked
    against the config it is planned with (collect.py: mismatch, stale)."""
    return [read_run(r.folder, r.method, r.pair, r.seed, r.role, requested=r.cfg()) for r in runs]
