"""The run folder `<LOG.PREFIX>/<PROJECT>/<NAME or TAG>/` and the files in it (mdistiller's names):

  latest, best, epoch_N          {"epoch", "model" (distiller state dict), "optimizer", "best_acc"}
                                 + resume state ("scaler", "rng", "world_size")
  student_latest, student_best, student_N   {"model": student state dict} (loadable as a teacher)
  worklog.txt, train.events/     text log and tensorboard events
  config.yaml                    the resolved config of the run (new)
"""
import glob
import os
import re
import shutil

from ..config import run_name

_CHECKPOINT = re.compile(r"^(latest|best|epoch_\d+|student_(latest|best|\d+))$")


def run_folder(cfg):
    return os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, run_name(cfg))


class RunFiles:
    """Paths of one run's outputs."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def path(self, name):
        return os.path.join(self.folder, name)

    latest = property(lambda self: self.path("latest"))
    best = property(lambda self: self.path("best"))
    student_latest = property(lambda self: self.path("student_latest"))
    student_best = property(lambda self: self.path("student_best"))
    worklog = property(lambda self: self.path("worklog.txt"))
    events = property(lambda self: self.path("train.events"))
    config = property(lambda self: self.path("config.yaml"))

    def epoch(self, n):
        return self.path(f"epoch_{n}")

    def student_epoch(self, n):
        return self.path(f"student_{n}")

    def checkpoints(self):
        """Names of the checkpoint files present, sorted."""
        if not os.path.isdir(self.folder):
            return []
        return sorted(n for n in os.listdir(self.folder) if _CHECKPOINT.match(n))

    def remove_temp_files(self):
        """Temp files of a checkpoint write that was killed midway (see save_atomic)."""
        for tmp in glob.glob(os.path.join(glob.escape(self.folder), ".tmp_*")):
            os.remove(tmp)

    def clear(self):
        """Delete this run's outputs (and nothing else in the folder): --overwrite."""
        for name in self.checkpoints():
            os.remove(self.path(name))
        for path in (self.worklog, self.config):
            if os.path.isfile(path):
                os.remove(path)
        if os.path.isdir(self.events):
            shutil.rmtree(self.events)
        self.remove_temp_files()


def check_start(files, resume, overwrite):
    """None if the run may start as asked, else the one-line reason (a CheckpointError message)."""
    if resume and overwrite:
        return "--resume and --overwrite contradict each other; pass one of them"
    if resume and not os.path.isfile(files.latest):
        return (f"cannot resume: {files.latest} does not exist; run without --resume to start fresh "
                "(or check EXPERIMENT.NAME/TAG and LOG.PREFIX)")
    present = files.checkpoints()
    if present and not resume and not overwrite:
        shown = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
        return (f"output folder {files.folder} already holds checkpoints ({shown}); pass --resume to continue "
                "that run, --overwrite to delete them and start over, or choose another EXPERIMENT.NAME")
    return None


def make_ready(files, overwrite):
    """After `check_start` passed (rank 0 only): clear old outputs for --overwrite, create the
    folder, drop temp files of a killed checkpoint write."""
    if overwrite:
        files.clear()
    os.makedirs(files.folder, exist_ok=True)
    files.remove_temp_files()
