"""The run folder `<LOG.PREFIX>/<PROJECT>/<NAME or TAG>/` and the files in it (mdistiller's names):

  latest, best, epoch_N          {"epoch", "model" (distiller state dict), "optimizer", "best_acc"}
                                 + resume state ("scaler", "rng", "world_size")
  student_latest, student_best, student_N   {"model": student state dict} (loadable as a teacher)
  worklog.txt, train.events/     text log and tensorboard events
  config.yaml                    the resolved config of the run (new)
  replaced/N/                    outputs an --overwrite moved aside (new; nothing is deleted)

An epoch is committed once `latest` names it. A folder without `latest` whose checkpoints are
only the first epoch's (a run killed before its first commit) holds no result: a fresh start
or `--resume` there starts at epoch 1 with a clean worklog. Rules for starting: `check_start`.
A resumed run keeps its committed config: only the keys of SAFE_ON_RESUME may differ.
"""
import glob
import os
import re

import yaml

from ..config import TRAINER_ALIASES, dump_cfg, get_cfg_defaults, run_name
from ..errors import ConfigError, UserError
from ..runtime.safe_write import writing

_CHECKPOINT = re.compile(r"^(latest|best|epoch_\d+|student_(latest|best|\d+))$")
FIRST_EPOCH_FILES = {"best", "student_best", "epoch_1", "student_1", "student_latest"}
STOPPED_FILE = "stopped.txt"  # why a run was stopped early (one line; engine/trainer.py)
RUN_JSON = "run.json"  # the benchmark runner's record of the run (benchmark/collect.py)
REPLACED = "replaced"  # --overwrite moves a run's old outputs into replaced/<N>/
# Keys a resumed run may change: where data and outputs are and how they are loaded or logged,
# not what the committed epochs computed. SOLVER.EPOCHS (to train longer) only under the step
# schedule, whose past learning rates do not depend on it (cosine's do). The exact speed
# settings (memory layout, teacher micro-batches) change float rounding only, as DEVICE does;
# teacher-output replay (DISTILLER.TEACHER_CACHE) changes nothing: a cache is used only when exact.
# EXPERIMENT.LOGIT_STAND is not here: it changes every logit loss.
SAFE_ON_RESUME = ("LOG.", "EXPERIMENT.PROJECT", "EXPERIMENT.NAME", "EXPERIMENT.TAG", "DATASET.NUM_WORKERS",
                  "DATASET.CACHE_DIR", "DATASET.ROOT", "DATASET.DOWNLOAD", "DEVICE", "SOLVER.CHANNELS_LAST",
                  "DISTILLER.TEACHER_CHUNK", "DISTILLER.TEACHER_CACHE")


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

    def outputs(self):
        """Names of this run's own outputs present (checkpoints, logs, config, records), sorted."""
        own = {"worklog.txt", "config.yaml", "train.events", STOPPED_FILE, RUN_JSON}
        if not os.path.isdir(self.folder):
            return []
        return sorted(n for n in os.listdir(self.folder) if _CHECKPOINT.match(n) or n in own)

    def first_epoch_only(self):
        """True when no epoch is committed (no `latest`) and the checkpoints present, if any,
        are the first epoch's: what a run killed before its first commit leaves."""
        names = set(self.checkpoints())
        if "latest" in names or not names <= FIRST_EPOCH_FILES:
            return False
        if "best" not in names:
            return True
        from ..runtime.checkpoint_io import load_checkpoint  # torch: only here, so that reading folders stays light

        try:
            ckpt = load_checkpoint(self.best)
        except UserError:
            return False
        return isinstance(ckpt, dict) and ckpt.get("epoch") == 1

    def remove_temp_files(self):
        """Temp files of a checkpoint write that was killed midway (see save_atomic)."""
        for tmp in glob.glob(os.path.join(glob.escape(self.folder), ".tmp_*")):
            os.remove(tmp)

    def move_aside(self):
        """Move this run's outputs into replaced/<N>/ (--overwrite: nothing is deleted); returns
        that folder, or None when there was nothing to move."""
        names = self.outputs()
        if not names:
            return None
        n = 1
        while os.path.exists(self.path(os.path.join(REPLACED, str(n)))):
            n += 1
        dest = self.path(os.path.join(REPLACED, str(n)))
        with writing(dest):
            os.makedirs(dest)
            for name in names:
                os.replace(self.path(name), os.path.join(dest, name))
        return dest


def read_config(folder):
    """A run folder's config.yaml as nested dicts ({} if absent or unreadable)."""
    try:
        with open(os.path.join(folder, "config.yaml")) as f:
            data = yaml.safe_load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}


def _flat(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _safe_change(key, before, now, scheduler):
    if key == "SOLVER.EPOCHS":  # training longer changes no committed epoch under the step schedule
        return scheduler == "step" and isinstance(before, int) and now >= before
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in SAFE_ON_RESUME)


def config_changes(saved, cfg):
    """[(key, saved value, value in cfg)] where `cfg` differs from `saved` (a config.yaml as
    dicts) in a key that is not safe to change on resume. A key the saved file lacks (written
    before the key existed) counts as its default; an old SOLVER.TRAINER counts as the keys it
    stands for (`config.TRAINER_ALIASES`), as loading that file would resolve it."""
    now = _flat(yaml.safe_load(dump_cfg(cfg)))
    before = _flat(saved)
    if before.get("SOLVER.TRAINER") in TRAINER_ALIASES:
        before.update(TRAINER_ALIASES[before.pop("SOLVER.TRAINER")])
    defaults = _flat(yaml.safe_load(dump_cfg(get_cfg_defaults())))
    scheduler = now.get("SOLVER.LR_SCHEDULER")
    changed = []
    for key, value in now.items():
        old = before.get(key, defaults.get(key))
        if old != value and not _safe_change(key, old, value, scheduler) and not _same_input(cfg, key, old):
            changed.append((key, old, value))
    return changed


def _same_input(cfg, key, old):
    """Whether DATASET.VIEWS / INDICES `old` give `cfg`'s distiller the batches its own value
    gives (e.g. `fewest`, from an old SOLVER.TRAINER base, and `auto` both give KD one view)."""
    from ..distillers.inputs import input_views, needs_index  # the registry: only when these keys differ

    resolve = {"DATASET.VIEWS": input_views, "DATASET.INDICES": needs_index}.get(key)
    if resolve is None:
        return False
    saved = cfg.clone()
    saved.defrost()
    section, name = key.rsplit(".", 1)
    saved[section][name] = old
    try:
        return resolve(saved) == resolve(cfg)
    except ConfigError:
        return False


def describe_changes(changes, limit=3):
    """'KEY old -> new, ...' for the first `limit` changes."""
    shown = ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes[:limit])
    return shown + (f" (+{len(changes) - limit} more)" if len(changes) > limit else "")


def _shown(names):
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def check_start(files, resume, overwrite, cfg=None):
    """None if the run may start as asked, else the one-line reason (a CheckpointError message).
    `cfg`: the run's config, compared on resume with the committed config.yaml."""
    if resume and overwrite:
        return "--resume and --overwrite contradict each other; pass one of them"
    if overwrite:
        return None
    folder, present = files.folder, files.checkpoints()
    aside = f"--overwrite to move them into {os.path.join(folder, REPLACED)}/ and start over"
    if os.path.isfile(files.latest):
        if not resume:
            return (f"output folder {folder} already holds checkpoints ({_shown(present)}); pass --resume to continue "
                    f"that run, {aside}, or choose another EXPERIMENT.NAME")
        saved = read_config(folder) if cfg is not None else {}
        changes = config_changes(saved, cfg) if saved else []  # mdistiller's own folders have no config.yaml
        if changes:
            return (f"cannot resume {folder} with a changed config ({describe_changes(changes)}); resume with the "
                    f"run's own config (--cfg {files.config} --resume), or pass {aside}")
        return None
    if files.first_epoch_only():
        if resume and not files.outputs():
            return (f"cannot resume: {files.latest} does not exist; run without --resume to start fresh "
                    "(or check EXPERIMENT.NAME/TAG and LOG.PREFIX)")
        return None  # nothing committed: (re)start at epoch 1
    return (f"output folder {folder} holds checkpoints ({_shown(present)}) but no `latest` to resume from; pass "
            f"{aside}, or choose another EXPERIMENT.NAME")


def make_ready(files, overwrite):
    """After `check_start` passed (rank 0 only): move old outputs aside for --overwrite (returns
    where to, else None), create the folder, drop temp files of a killed checkpoint write."""
    moved = files.move_aside() if overwrite else None
    with writing(files.folder):
        os.makedirs(files.folder, exist_ok=True)
        files.remove_temp_files()
    return moved
