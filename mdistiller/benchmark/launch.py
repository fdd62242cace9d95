"""Launching a benchmark's runs somewhere else than one after the other in this process.

A matrix becomes work units: one run, or with --paired one (pair, seed) group whose members
train together. Units come in two stages: teacher-role runs first (the students distil from
their weights), then the students. A launcher (launch_local.py: a pool of local processes;
launch_slurm.py: one Slurm job per unit) executes `run_unit` for each unit that is not
finished; `run_unit` claims the unit's run folders (engine/run_lock.py), decides (skip,
resume, start) and trains exactly as the in-process runner does, so every launcher gives the
same run folders, and rerunning any of them trains only what is missing.

`run_states` reads where each run stands (done, running, pending, failed, not started) from
the run folders, their locks and the Slurm submission records: what `--status` prints
(`locked`: a lock nobody can read, to be deleted by hand).
"""
import os
from dataclasses import dataclass
from typing import List

from ..engine.run_lock import describe, holder_alive, read_lock, unreadable_message
from ..errors import UserError
from .cache_jobs import CacheUnit, cache_complete, plan_cache_units, run_cache_unit, wait_for_claim
from .collect import read_run_json
from .paired_runs import member_action, paired_groups, run_group
from .runner import decide, run_one
from .spec import TEACHER_ROLE, Run, plan_runs


@dataclass
class Unit:
    runs: List[Run]  # one run, or the members of a paired group
    paired: bool = False
    cache: object = None  # the benchmark.cache_jobs.CacheUnit whose teacher cache it replays, if any

    @property
    def name(self):
        """A file-name-safe label: the run folder's name, or the group's "<pair>,seed<N>"."""
        first = os.path.basename(os.path.normpath(self.runs[0].folder))
        return first.split(",", 1)[1] if self.paired else first

    @property
    def project_dir(self):
        return os.path.dirname(os.path.normpath(self.runs[0].folder))

    def label(self):
        r = self.runs[0]
        return f"{r.pair} | seed {r.seed} (paired group)" if self.paired else f"{r.method} | {r.pair} | seed {r.seed}"


def plan_units(matrix, paired=False):
    """(planned runs, [teacher units, student units]); the students' stage starts with the
    teacher-cache jobs of the students that replay (benchmark/cache_jobs.py)."""
    runs = plan_runs(matrix)
    if paired:
        teachers, groups = paired_groups(runs)
        students = [Unit(group, True) for group in groups]
    else:
        teachers = [r for r in runs if r.role == TEACHER_ROLE]
        students = [Unit([r]) for r in runs if r.role != TEACHER_ROLE]
    return runs, [[Unit([t]) for t in teachers], plan_cache_units(students) + students]


def finished(unit):
    """Whether every run of the unit is complete (a paired member stopped for a diverged loss counts)."""
    if isinstance(unit, CacheUnit):
        return cache_complete(unit)
    decide_one = member_action if unit.paired else decide
    try:
        return all(decide_one(run, run.cfg())[0] in ("skip", "stopped") for run in unit.runs)
    except UserError:  # a changed config: its worker refuses it (or, with --overwrite, starts over)
        return False


def new_counts():
    return {"skip": 0, "resume": 0, "start": 0, "busy": 0, "refused": 0}


def run_unit(unit, say=print, train=None, overwrite=False):
    """Claim, decide and train one unit here (what every launcher's worker runs). Returns
    (counts, [(run folder, error message)] of failed runs)."""
    if isinstance(unit, CacheUnit):
        return run_cache_unit(unit, say)
    counts, failures = new_counts(), []
    tell = lambda line: say(line.strip())  # noqa: E731 (no "[i/n]" head: units run in any order)
    if unit.cache is not None:
        wait_for_claim(unit.cache, tell)
    if unit.paired:
        run_group(unit.runs, "", counts, failures, say=tell, train_group=train, overwrite=overwrite)
    else:
        run_one(unit.runs[0], "", counts, failures, False, tell, train, show_folder=True, overwrite=overwrite)
    return counts, [(run.folder, message) for run, message in failures]


def add_counts(total, counts):
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


# ---------------------------------------------------------------- where each run stands
@dataclass
class RunState:
    run: Run
    state: str  # done | running | pending | failed | unfinished (stopped, no failure known) | not started
    #             | locked (its lock is unreadable: nobody can claim it until it is deleted)
    job_id: str = ""  # Slurm job (or "" for a local process)
    log: str = ""  # the job's or local worker's log file, when known
    detail: str = ""  # who holds it, or why it failed


def run_state(run, record, queued, exit_state=None):
    """The RunState of one run. `record`: its launch record ({"job_id", "log"} or {}); `queued`:
    {job id: Slurm state} of the jobs still in the queue (None: no Slurm to ask)."""
    job, log = str(record.get("job_id") or ""), record.get("log", "")
    try:
        action, _ = decide(run, run.cfg())
    except UserError as err:  # trained with another config: refused until --overwrite
        return RunState(run, "failed", job, log, str(err))
    if action == "skip":
        return RunState(run, "done", job, log)
    holder = read_lock(run.folder)
    if holder == {}:
        return RunState(run, "locked", job, log, unreadable_message(run.folder))
    if holder and holder_alive(holder):
        return RunState(run, "running", str(holder.get("job_id") or job), log, describe(holder))
    if job and queued and job in queued:
        state = queued[job]
        return RunState(run, "running" if state in ("RUNNING", "COMPLETING") else "pending", job, log, state)
    meta = read_run_json(run.folder)
    if meta.get("status") in ("failed", "interrupted") or job:
        why = meta.get("error") or (f"job ended {exit_state(job)}" if job and exit_state else "ended unfinished")
        return RunState(run, "failed", job, log, why)
    return RunState(run, "unfinished" if os.path.isdir(run.folder) else "not started", job, log)


def format_state(s):
    job = f" job {s.job_id}" if s.job_id else ""
    extra = f" ({s.detail})" if s.detail else ""
    log = f" log: {s.log}" if s.log and s.state != "done" else ""
    return f"{s.state:<11} {s.run.method} | {s.run.pair} | seed {s.run.seed}{job}{extra}{log}"
