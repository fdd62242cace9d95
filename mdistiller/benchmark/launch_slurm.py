"""`tools/benchmark.py --launcher slurm`: one Slurm job per unit (launch.py), through submitit.

Submission skips what needs no job: complete units, units another launcher holds (a live
lock), and units whose earlier job is still queued. Student jobs wait for this submission's
teacher jobs (`--dependency afterok`, cancelled if a teacher fails). Each job's files (submitit's
pickles, the log `<job id>_0_log.out`) are in <project>/slurm/, and `<run name>.json` there
records the run's latest job id and log: `--status` and the failure report read them.

In the job, `SlurmUnit` runs `run_unit` with the job's CPUs as torch threads. With several
tasks (one per GPU), the tasks form one DDP process group from the job's environment (rank,
world size, the first node as master) and train the unit's run together; task 0 claims the
run and writes its records. Slurm preemption, a time limit or `scontrol requeue` stop the job:
submitit's checkpoint hook (`SlurmUnit.checkpoint`) requeues the same unit, and the requeued
job finds its own job id in the run's lock, takes it over and resumes from `latest` (the
trainer commits it at every epoch end), so the run ends with the weights of an uninterrupted run.

Status comes from the run folders, their locks and `squeue`/`scontrol`, never from sacct
alone: clusters without accounting storage answer sacct with an error.
"""
import contextlib
import datetime
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass, field, fields
from typing import Optional

from ..engine.run_lock import describe, holder_alive, read_lock, slurm_job_states
from ..errors import ConfigError
from .cache_jobs import CacheUnit, cache_complete
from .launch import finished, new_counts, plan_units, run_state, run_unit

POLL_S = 2.0


@dataclass
class SlurmOptions:
    partition: Optional[str] = None
    time: int = 24 * 60  # minutes per job
    gpus_per_run: int = 0
    tasks_per_run: int = 0  # processes (DDP ranks) per run; 0: one per GPU, at least one
    cpus_per_task: int = 1
    mem: Optional[str] = None  # e.g. "16G"
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    sbatch: dict = field(default_factory=dict)  # any other sbatch option: {"exclude": "node3"}

    @property
    def tasks(self):
        return self.tasks_per_run or max(1, self.gpus_per_run)


def slurm_options(section, where="the spec's slurm section"):
    """SlurmOptions from a spec's `slurm:` mapping; ConfigError naming an unknown or bad key."""
    names = {f.name: f for f in fields(SlurmOptions)}
    options = SlurmOptions()
    for key, value in (section or {}).items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(names)}")
        want = dict if key == "sbatch" else int if names[key].type in (int, "int") else str
        if want is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{where}: {key} is {value!r}; write a whole number >= 0")
        if want is dict and not isinstance(value, dict):
            raise ConfigError(f"{where}: sbatch must map option names to values, e.g. {{exclude: node3}}")
        setattr(options, key, value if want is not str else str(value))
    return options


def sbatch_parameters(options, name, dependency=None):
    """submitit SlurmExecutor parameters for one unit's job."""
    extra = dict(options.sbatch)
    params = {"job_name": f"mdistiller:{name}", "time": options.time, "ntasks_per_node": options.tasks,
              "cpus_per_task": options.cpus_per_task, "stderr_to_stdout": True}
    if options.gpus_per_run:
        params["gpus_per_node"] = options.gpus_per_run
    if options.tasks > 1:
        params["srun_args"] = ["--kill-on-bad-exit=1"]  # a failed rank ends the job, not a hang
    for key in ("partition", "mem", "account", "qos", "constraint"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    if dependency:
        params["dependency"] = dependency
        extra["kill-on-invalid-dep"] = "yes"
    params["additional_parameters"] = extra
    return params


class SlurmUnit:
    """What a job runs (module docstring)."""

    def __init__(self, unit, overwrite=False):
        self.unit = unit
        self.overwrite = overwrite  # --overwrite: a run trained with another config starts over

    def __call__(self):
        import submitit
        import torch

        torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            join_process_group(env)
        if env.global_rank != 0:
            return follow_rank0(self.unit, overwrite=self.overwrite)
        counts, failures = run_unit(self.unit, overwrite=self.overwrite)
        if failures:
            raise RuntimeError("; ".join(f"{folder}: {message}" for folder, message in failures))
        return counts

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption or timeout: requeue this unit; it resumes from `latest`."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SlurmUnit(self.unit, self.overwrite))


def join_process_group(env):
    """The variables torch.distributed reads (engine/distributed.py), from the job's tasks."""
    os.environ.update({"RANK": str(env.global_rank), "WORLD_SIZE": str(env.num_tasks),
                       "LOCAL_RANK": str(env.local_rank), "MASTER_ADDR": env.hostnames[0],
                       "MASTER_PORT": str(20000 + int(str(env.job_id).split("_")[0]) % 20000)})


def follow_rank0(unit, wait_s=600, overwrite=False):
    """Tasks other than 0: once task 0 holds the run's lock (this job's id in it), train with the
    action it takes (they read the same folder before anything is written); nothing when
    another launcher holds the run or it is complete. A task 0 that fails takes the others
    down (srun --kill-on-bad-exit)."""
    from ..engine.build import train
    from ..engine.run_lock import job_id
    from .runner import decide

    run = unit.runs[0]
    cfg = run.cfg()
    deadline = time.time() + wait_s
    while True:
        holder = read_lock(run.folder)
        if holder and str(holder.get("job_id")) == job_id():
            break
        if (holder and holder_alive(holder)) or decide(run, cfg, overwrite)[0] == "skip":
            return None
        if time.time() > deadline:
            raise RuntimeError(f"task 0 did not claim {run.folder} within {wait_s} s")
        time.sleep(0.2)
    action, _ = decide(run, cfg, overwrite)
    if action != "skip":
        train(cfg, resume=action == "resume", overwrite=overwrite and action == "start")
    return None


# ---------------------------------------------------------------- submission
def jobs_folder(unit):
    return os.path.join(unit.project_dir, "slurm")


def record_path(run):
    return os.path.join(os.path.dirname(os.path.normpath(run.folder)), "slurm",
                        os.path.basename(os.path.normpath(run.folder)) + ".json")


def read_record(run):
    try:
        with open(record_path(run)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_record(run, job_id, log):
    path = record_path(run)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"job_id": str(job_id), "log": log, "submitted": datetime.datetime.now().isoformat()}, f)
    os.replace(path + ".tmp", path)


def make_executor(folder):
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'mdistiller[slurm]'") from None
    if subprocess.run(["which", "sbatch"], capture_output=True).returncode != 0:
        raise ConfigError("--launcher slurm needs Slurm's sbatch on PATH; run on a cluster's login node, "
                          "or use --launcher local")
    return submitit.SlurmExecutor(folder=folder)


def submit(executor, unit, overwrite=False):
    """executor.submit, with sbatch's refusal (bad partition, account, time...) as one line."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr: said once below
            return executor.submit(SlurmUnit(unit, overwrite))
    except (subprocess.CalledProcessError, FailedJobError, FailedSubmissionError) as err:
        said = getattr(err, "stderr", None) or str(err)
        said = said.decode(errors="replace") if isinstance(said, bytes) else said
        line = next((x.strip() for x in said.splitlines() if x.strip()), type(err).__name__)
        raise ConfigError(f"sbatch refused the job of {unit.label()}: {line}; check the --slurm-* options "
                          "(or the spec's slurm section)") from None


def why_not_submit(unit, queued):
    """None when the unit needs a job, else the reason (and the job it waits on, if any)."""
    if finished(unit):
        return "complete", None
    for run in unit.runs:
        holder = read_lock(run.folder)
        if holder and holder_alive(holder):
            return f"held by {describe(holder)}", holder.get("job_id")
    job = read_record(unit.runs[0]).get("job_id")
    if job and queued and job in queued:
        return f"already queued as job {job} ({queued[job]})", job
    return None, None


def submit_units(matrix, paired, options, say=print, overwrite=False):
    """Submit every unfinished unit; returns (runs, counts, {job id: unit} of the jobs to wait for)."""
    runs, stages = plan_units(matrix, paired)
    counts, waiting = new_counts(), {}
    recorded = [read_record(run).get("job_id") for run in runs]
    queued = slurm_job_states([j for j in recorded if j]) or {}
    executor = None
    for stage in stages:
        before = sorted(waiting)
        for unit in stage:
            reason, job = why_not_submit(unit, queued)
            if reason:
                counts["skip" if reason == "complete" else "busy"] += len(unit.runs)
                say(f"{unit.label()}: {reason}")
                if job:
                    waiting[str(job)] = unit
                continue
            executor = executor or make_executor(jobs_folder(unit))
            after = "afterok:" + ":".join(before) if before else None
            executor.update_parameters(**sbatch_parameters(options, unit.name, after))
            job = submit(executor, unit, overwrite)
            for run in unit.runs:
                write_record(run, job.job_id, str(job.paths.stdout))
            counts["start"] += len(unit.runs)
            waiting[str(job.job_id)] = unit
            say(f"{unit.label()}: submitted as job {job.job_id} (log {job.paths.stdout})")
    return runs, counts, waiting


def wait_for(job_ids, poll_s=POLL_S):
    """Until none of `job_ids` is in the queue any more (a requeued job stays in it)."""
    pending = set(job_ids)
    while pending:
        states = slurm_job_states(pending)
        if states is None:
            raise ConfigError("squeue stopped answering while waiting for the jobs; check the cluster, "
                              "then rerun the same command (finished runs are kept)")
        pending = set(states)
        if pending:
            time.sleep(poll_s)


def exit_state(job_id):
    """"FAILED (exit code 1:0)" from scontrol while the controller remembers the job, else None."""
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields_ = dict(item.split("=", 1) for item in out.split() if "=" in item)
    if "JobState" not in fields_:
        return None
    return f"{fields_['JobState']} (exit code {fields_.get('ExitCode', '?')})"


def run_slurm(matrix, paired=False, options=None, wait=True, say=print, overwrite=False):
    """Submit, and unless `wait` is False wait and report: (runs, counts, [(run, message)])."""
    runs, counts, waiting = submit_units(matrix, paired, options or SlurmOptions(), say, overwrite)
    if not wait:
        say(f"{len(waiting)} job(s) queued; `--status` shows where they stand")
        return runs, counts, []
    wait_for(waiting)
    failures = []
    for job, unit in waiting.items():
        if isinstance(unit, CacheUnit):  # its students ran their teacher where the cache lacked an epoch
            if not cache_complete(unit):
                say(f"failed: {unit.label()}: job {job} (log {read_record(unit.runs[0]).get('log')})")
            continue
        for run in unit.runs:
            state = run_state(run, read_record(run), {}, exit_state)
            if state.state == "running":  # its job found another launcher training it
                say(f"{unit.label()}: still training elsewhere ({state.detail})")
            elif state.state != "done":
                say(f"failed: {unit.label()}: job {state.job_id} {state.detail} (log {state.log})")
                failures.append((run, state.detail))
    return runs, counts, failures


def slurm_states(runs):
    """[RunState] of every run (`--status`)."""
    records = [read_record(run) for run in runs]
    queued = slurm_job_states([r["job_id"] for r in records if r.get("job_id")])
    return [run_state(run, record, queued, exit_state) for run, record in zip(runs, records)]

