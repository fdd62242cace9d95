"""How the training loop treats its runs: one run, or several in one loop (paired training).

`Trainer` asks its rules four things: which runs a resume loads (`live`: not those a group
stopped earlier, whose folder holds `stopped.txt`), whose checkpoint the resumed loop starts
from (`resume_from`), which runs train an epoch (`due`), and what a run that turned non-finite
does (`drop_diverged`). A single run (`OneRun`): its own, always, raise. A group (`RunGroup`):
  * with `stop_diverged` (what paired training uses) a run whose loss or weights turn non-finite
    is stopped instead of raising: a one-line `stopped.txt` in its folder says why, it leaves the
    loop, writes no further checkpoint and no `best_acc` line, and the other runs go on; the
    error is raised once no run is left. It needs one process: ranks would disagree on which
    runs are left;
  * a resume skips stopped runs, and runs whose `latest` is ahead of the others (killed between
    two runs' commits) wait until the others have caught up with them: the loop restarts after
    the epoch of the run furthest behind, with that run's random state.
"""
import os

from ..errors import CheckpointError, NonFiniteLossError
from .progress import say
from .run_folder import STOPPED_FILE


def stopped_reason(folder):
    """The reason recorded in `folder`'s stopped.txt, or None when the run was not stopped."""
    try:
        with open(os.path.join(folder, STOPPED_FILE)) as f:
            return f.read().strip() or "stopped"
    except FileNotFoundError:
        return None


class OneRun:
    """The rules of a single run (module docstring)."""

    def __init__(self, runs):
        self.runs = list(runs)

    def live(self):
        """The runs a resume loads: those not stopped earlier (each run's `stopped` is set)."""
        for run in self.runs:
            run.stopped = stopped_reason(run.files.folder)
        live = [run for run in self.runs if run.stopped is None]
        if not live:
            raise CheckpointError(f"every run was stopped earlier (see {STOPPED_FILE} in {self.runs[0].files.folder}); "
                                  "start over with --overwrite")
        return live

    def resume_from(self, live):
        return live[0]

    def due(self, epoch):
        return list(self.runs)

    def drop_diverged(self, runs, check):
        return [check(run) for run in runs]


class RunGroup(OneRun):
    """The rules of several runs in one loop (module docstring)."""

    def __init__(self, runs, info, stop_diverged=False):
        if stop_diverged and info.enabled:
            raise ValueError("stop_diverged needs one process: ranks would disagree on which runs are left")
        super().__init__(runs)
        self.stop_diverged = stop_diverged
        self.is_main = info.is_main

    def resume_from(self, live):
        """Runs ahead of the others wait for them; the random state is that of the run behind."""
        return min(live, key=lambda run: run.epoch_done)

    def due(self, epoch):
        return [run for run in self.runs if run.stopped is None and run.epoch_done < epoch]

    def drop_diverged(self, runs, check):
        """[check(run)] of the runs that pass it. With stop_diverged a run whose check raises
        NonFiniteLossError is stopped and removed from `runs` (in place) instead of raising,
        unless it was the last one left."""
        passed = []
        for run in list(runs):
            try:
                passed.append(check(run))
            except NonFiniteLossError as err:
                if not self.stop_diverged or not any(r.stopped is None for r in self.runs if r is not run):
                    raise
                run.stop(str(err))
                runs.remove(run)
                say(f"stopped {run.files.folder}: {err}", self.is_main)
        return passed


def run_rules(runs, info, stop_diverged=False):
    """The rules for these runs: OneRun for a single run trained without stop_diverged."""
    if len(runs) == 1 and not stop_diverged:
        return OneRun(runs)
    return RunGroup(runs, info, stop_diverged)
