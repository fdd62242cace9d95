"""One trainer per run folder: the lock file `<run folder>.lock` beside the folder.

Every trainer entry (tools/train.py alone, with --resume or --overwrite, a paired group,
torchrun's rank 0: engine/build.py) and every launcher (tools/benchmark.py in this process, a
`--jobs N` worker, a Slurm job) claims a run before it decides what to do with it and releases
it when done, so two processes never train the same run folder at once. A trainer whose own
process holds the lock already (a launcher training the run in-process) goes on under it.
The file names its holder: {"host", "pid", "pid_start", "job_id" (Slurm's, or null), "since"}.
It is never half-written: the holder is written whole to a temp file, which is then hard-linked
to the lock's name (link fails if the lock exists: the claim is atomic). A lock that cannot be
written (full disk) is one OutputError line, and leaves no lock behind. A lock that cannot be
read (empty or not JSON: written by hand, or by an old version killed mid-write) is never taken
for a holder: `held_message` names its path and how to clear it.

A lock whose holder is gone is stale and is taken over:
  - written on this host: gone when that pid no longer runs the process that wrote the lock
    (its start time is recorded, so a reused pid does not count);
  - written on another host by a Slurm job: gone when `squeue` no longer lists that job; a
    requeued or preempted job that lands on another node finds its own job id in the lock
    and carries on (its earlier attempt was killed);
  - written on another host outside Slurm: cannot be checked from here; it stays held, and
    the message names the lock file to delete once that process is known to be gone.
The lock sits beside the run folder, not in it, so that nothing that clears or moves a run's
outputs touches it.
"""
import contextlib
import errno
import json
import os
import socket
import subprocess
import time

from ..errors import UserError
from ..runtime.safe_write import write_temp, writing

SQUEUE_TIMEOUT_S = 30
UNREADABLE_WAIT_S = 0.5  # how long an unreadable lock may be "being written" (by an old version) before it is reported


def lock_path(folder):
    return os.path.normpath(os.fspath(folder)) + ".lock"


def _start_time(pid):
    """The process's start time in clock ticks since boot (None where /proc is absent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def job_id():
    """This process's Slurm job id (the array form for array tasks), or None outside Slurm."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def me():
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _start_time(pid), "job_id": job_id(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}


def describe(holder):
    """"host vm pid 123 (Slurm job 45)": who holds a lock, for messages."""
    if not holder:
        return "an unreadable lock"
    job = f" (Slurm job {holder['job_id']})" if holder.get("job_id") else ""
    return f"host {holder.get('host')} pid {holder.get('pid')}{job} since {holder.get('since')}"


def unreadable_message(folder):
    path = lock_path(folder)
    return (f"the run lock {path} is unreadable (empty or not a lock written by mdistiller), so who holds "
            f"{os.path.normpath(os.fspath(folder))} is unknown; if no other process trains that run, delete {path} "
            "and run again")


def held_message(folder, holder):
    """One line: who holds `folder`'s lock and the way out (what a refused trainer prints)."""
    if not holder:
        return unreadable_message(folder)
    path = lock_path(folder)
    if holder.get("host") == socket.gethostname():
        out = f"wait until it ends, or stop it (kill {holder.get('pid')}) and run again"
    elif holder.get("job_id"):
        out = f"wait until it ends, or cancel it (scancel {holder['job_id']}) and run again"
    else:
        out = f"wait until it ends; if that process no longer runs, delete {path} and run again"
    return f"{os.path.normpath(os.fspath(folder))} is being trained by {describe(holder)} (lock {path}); {out}"


def slurm_job_states(job_ids):
    """{job id: Slurm state (PENDING, RUNNING, COMPLETING, ...)} of those of `job_ids` that the
    queue still lists; None when squeue cannot be asked (no Slurm here)."""
    job_ids = {str(j) for j in job_ids}
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(sorted(job_ids))], capture_output=True,
                             text=True, timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None  # squeue fails on ids the controller forgot: those are gone, anything else is unknown
    states = dict(line.split(None, 1) for line in out.stdout.splitlines() if len(line.split()) == 2)
    return {job: state.strip() for job, state in states.items() if job in job_ids}


def pid_alive(holder):
    """Whether the process that wrote the lock still runs (on this host)."""
    pid = holder.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False  # kill(0) and kill(-1) would signal groups of processes, not a holder
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # alive, another user's
    return holder.get("pid_start") is None or _start_time(pid) == holder.get("pid_start")


def holder_alive(holder):
    """Whether the holder of a lock may still be working (module docstring)."""
    mine = me()
    if holder.get("host") == mine["host"]:
        return pid_alive(holder)  # the most precise test, inside a job or not
    if not holder.get("job_id"):
        return True  # another host, no job: nothing to ask
    if str(holder["job_id"]) == str(mine["job_id"]):
        return False  # an earlier attempt of this very job, requeued onto another node: killed
    states = slurm_job_states([holder["job_id"]])
    return True if states is None else bool(states)


def read_lock(folder):
    """The holder dict of `folder`'s lock, None when unlocked ({} when unreadable)."""
    try:
        with open(lock_path(folder)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _create(path, holder):
    """Create the lock `path` holding `holder`, whole or not at all; FileExistsError when it
    exists, OutputError when it cannot be written."""
    with writing(path):
        tmp = write_temp(os.path.dirname(path) or ".", f".{os.path.basename(path)}.",
                         lambda f: f.write(json.dumps(holder).encode()))
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            with writing(path):
                raise
        _create_exclusive(path, tmp)  # a file system without hard links
    finally:
        os.remove(tmp)


def _create_exclusive(path, written):
    """Where hard links are refused: create `path` exclusively and copy `written` into it; a
    failed copy removes the lock it created."""
    with open(written, "rb") as f:
        data = f.read()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with writing(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.remove(path)
        raise


def _take_over(path, stale):
    """Move a stale lock aside and check that it is the one judged stale (another launcher may
    have replaced it meanwhile: then it is put back). True when the lock is gone."""
    aside = f"{path}.stale.{socket.gethostname()}.{os.getpid()}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    try:
        with open(aside) as f:
            moved = json.load(f)
    except (OSError, ValueError):
        moved = None
    if moved != stale:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
        os.remove(aside)
        return False
    os.remove(aside)
    return True


def is_mine(holder):
    """Whether `holder` is this very process (a launcher that claimed the run, now training it)."""
    mine = me()
    return bool(holder) and all(holder.get(k) == mine[k] for k in ("host", "pid", "pid_start"))


def held_elsewhere(folder):
    """The holder of `folder`'s lock when another live process (or an unreadable lock: {}) holds
    it, else None. Only reads: a trainer's up-front checks report it before anything else."""
    if not os.path.isfile(lock_path(folder)):  # also when a parent is a file (reported elsewhere)
        return None
    holder = read_lock(folder)
    if holder is None or (holder and (is_mine(holder) or not holder_alive(holder))):
        return None
    return holder


def try_claim(folder, attempts=3, reentrant=False):
    """Claim `folder` for this process: (True, None) when claimed now, (False, holder) when a
    live holder has it ({}: the lock is unreadable, see `held_message`); with `reentrant`,
    (True, holder) when this very process held it already. OutputError when the lock cannot be
    written."""
    path = lock_path(folder)
    with writing(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    holder, unreadable_since = None, None
    while attempts > 0:
        try:
            _create(path, me())
            return True, None
        except FileExistsError:
            holder = read_lock(folder)
        if holder is None:
            attempts -= 1
            continue  # released meanwhile
        if not holder:  # an old version may be writing it: wait a moment, never take it over
            unreadable_since = unreadable_since or time.monotonic()
            if time.monotonic() - unreadable_since > UNREADABLE_WAIT_S:
                return False, {}
            time.sleep(0.05)
            continue
        if reentrant and is_mine(holder):
            return True, holder
        attempts -= 1
        if holder_alive(holder) or not _take_over(path, holder):
            return False, holder
    return False, holder or {}


def release(folder):
    """Remove `folder`'s lock if this process holds it."""
    holder = read_lock(folder)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path(folder))


@contextlib.contextmanager
def claimed(folders, reentrant=False):
    """Claim every folder (all or none): yields None when all are held by this process, else
    (folder, holder) of the first held elsewhere. Released on exit, except those this process
    held before (`reentrant`: their claimant releases them)."""
    got = []
    try:
        for folder in folders:
            ok, holder = try_claim(folder, reentrant=reentrant)
            if not ok:
                yield folder, holder
                return
            if holder is None:
                got.append(folder)
        yield None
    finally:
        for folder in got:
            release(folder)


class RunHeld(UserError):
    """Another process trains this run folder (or its lock is unreadable)."""


@contextlib.contextmanager
def holding(folders):
    """`claimed`, for a trainer: RunHeld (one line, `held_message`) when a folder is held by
    another process. A launcher of this process that holds it (and now trains it) keeps it."""
    with claimed(folders, reentrant=True) as held:
        if held:
            raise RunHeld(held_message(*held))
        yield
