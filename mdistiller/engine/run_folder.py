"""The run folder `<LOG.PREFIX>/<PROJECT>/<NAME or TAG>/` and the files in it (mdistiller's names):

  latest, best, epoch_N          {"epoch", "model" (distiller state dict), "optimizer", "best_acc"}
                                 + resume state ("scaler", "rng", "world_size") and "config"
                                 (the run's config.yaml text, new)
  student_latest, student_best, student_N   {"model": student state dict} (loadable as a teacher)
  worklog.txt, train.events/     text log and tensorboard events
  config.yaml                    the resolved config of the run (new)
  teacher.json                   the digest of the teacher weights it learned from (new; teacher_identity.py)
  replaced/N/                    outputs an --overwrite moved aside (new; nothing is deleted)

PROJECT and NAME/TAG are one path component each (config.py), and `run_folder` checks that
the folder lies under LOG.PREFIX.

Committing an epoch (`commit`: the only way the trainer writes these files):
  1. stage: each file of the epoch is written whole (through a temp file `.tmp_<name>*`, fsynced)
     and renamed to `.staged_<name>`: `latest` first, then student_latest, epoch_N and
     student_N (every LOG.SAVE_CHECKPOINT_FREQ epochs), best and student_best (when top-1
     improved), and worklog.txt (the committed epochs' blocks and this epoch's);
  2. commit: `.staged_latest` is renamed to `latest`. From here on the epoch is committed;
  3. publish: the other staged files are renamed to their own names.
A failure while staging (full disk, Ctrl-C) removes what was staged, so every file still
describes the previous epoch. The renames of 2 and 3 run with SIGINT and SIGTERM held back,
so Ctrl-C and a scheduler's SIGTERM land before or after them, never in between. A crash
between 2 and 3 (kill -9, power loss) is completed at the next start (`finish_commit`): staged
files without a `.staged_latest` belong to the committed epoch and are renamed in; staged
files beside a `.staged_latest` belong to an epoch that was never committed and are removed.
So `latest`, `best`/`student_best`, `epoch_N`/`student_N` and worklog.txt never refer to an
epoch that was not committed (train.events may hold its scalars: events are not results).

A folder holds results (`RunFiles.results`) when anything in it, outside replaced/ and nested
runs included, is a checkpoint, by name (latest, best, epoch_N, student_*) or by content (a
torch zip or pickle, or a safetensors file, of any name), or a worklog.txt with an epoch block.
Such a folder is only reused with --resume (when it has a `latest`) or --overwrite, which
moves everything in it (nested runs too) into replaced/N/. A folder without results (new, or a
run killed before its first commit) simply starts (again) at epoch 1, with or without
--resume. Rules for starting: `check_start`. A resumed run keeps its committed config: only the
keys of SAFE_ON_RESUME may differ from `committed_config`.
"""
import contextlib
import glob
import os
import re
import signal

import yaml

from ..config import TRAINER_ALIASES, dump_cfg, get_cfg_defaults, run_name
from ..errors import CheckpointError, ConfigError, UserError
from ..runtime.safe_write import fsync_folder, write_temp, writing
from .run_lock import held_message, holder_alive, read_lock
from .teacher_identity import TEACHER_FILE, teacher_change
from .worklog import read_worklog

_CHECKPOINT = re.compile(r"^(latest|best|epoch_\d+|student_(latest|best|\d+))$")
# First bytes of a checkpoint of any name: torch's zip format, a (legacy torch) pickle.
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
STAGED = ".staged_"  # an epoch's file written whole, waiting for its commit (module docstring)
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
    """The run's folder; ConfigError when it would not lie under LOG.PREFIX (config.py checks
    PROJECT and NAME/TAG first, naming the key)."""
    prefix = os.path.normpath(os.path.abspath(cfg.LOG.PREFIX))
    folder = os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, run_name(cfg))
    inside = os.path.normpath(os.path.abspath(folder))
    if os.path.dirname(os.path.dirname(inside)) != prefix:
        raise ConfigError(f"the run folder {folder} does not lie two levels under LOG.PREFIX {cfg.LOG.PREFIX}; "
                          "make EXPERIMENT.PROJECT and EXPERIMENT.NAME (or TAG) plain folder names")
    return folder


def _looks_like_checkpoint(path):
    """Whether the file at `path` holds a checkpoint, whatever its name (its first bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if head.startswith(_CHECKPOINT_MAGIC):
        return True
    # safetensors: the JSON header's length (8 bytes, little-endian), then the header itself
    return len(head) == 9 and head[8:9] == b"{" and 1 < int.from_bytes(head[:8], "little") < 1 << 30


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
        own = {"worklog.txt", "config.yaml", "train.events", STOPPED_FILE, RUN_JSON, TEACHER_FILE}
        if not os.path.isdir(self.folder):
            return []
        return sorted(n for n in os.listdir(self.folder) if _CHECKPOINT.match(n) or n in own)

    def _walk(self):
        """(folder, subfolders, files) of everything in the run folder but replaced/, top first."""
        for dirpath, dirnames, filenames in os.walk(self.folder):
            if os.path.normpath(dirpath) == os.path.normpath(self.folder):
                dirnames[:] = [d for d in dirnames if d != REPLACED]
            yield dirpath, dirnames, filenames

    def results(self):
        """Paths (relative to the folder) of the results it holds (module docstring), sorted."""
        found = []
        for dirpath, _, filenames in self._walk():
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name.startswith((".tmp_", STAGED, "events.out.tfevents")) or os.path.islink(path):
                    continue  # uncommitted writes, finished at the next start; tensorboard's own files
                if _CHECKPOINT.match(name) or _looks_like_checkpoint(path) or \
                        (name == "worklog.txt" and read_worklog(path).epochs):
                    found.append(os.path.relpath(path, self.folder))
        return sorted(found)

    def busy_nested(self):
        """One line about a run nested in this folder that another process trains (its lock held
        by a live or unknown holder), else None: --overwrite must not move it away."""
        for dirpath, _, filenames in self._walk():
            for name in filenames:
                if name.endswith(".lock"):
                    nested = os.path.join(dirpath, name[:-len(".lock")])
                    holder = read_lock(nested)
                    if holder == {} or (holder and holder_alive(holder)):
                        return held_message(nested, holder)
        return None

    def remove_temp_files(self):
        """Temp files of a write that was killed midway (see save_atomic and `commit`)."""
        for tmp in glob.glob(os.path.join(glob.escape(self.folder), ".tmp_*")):
            os.remove(tmp)

    def finish_commit(self):
        """Complete or undo an epoch's commit that a crash interrupted (module docstring)."""
        if not os.path.isdir(self.folder):
            return
        staged = sorted(n for n in os.listdir(self.folder) if n.startswith(STAGED))
        committed = STAGED + "latest" not in staged
        for name in staged:
            if committed:
                os.replace(self.path(name), self.path(name[len(STAGED):]))
            else:
                os.remove(self.path(name))
        if staged:
            fsync_folder(self.folder)
        self.remove_temp_files()

    def committed_epoch(self):
        """The last committed epoch (0: none), as the worklog records it: at every start it is
        cut to the epochs `latest` holds, and every commit writes both."""
        if not os.path.isfile(self.latest):
            return 0
        return read_worklog(self.worklog).last_epoch

    def move_aside(self):
        """Move everything in the folder but replaced/ (nested runs too) into replaced/<N>/
        (--overwrite: nothing is deleted); returns that folder, or None when there was nothing to move."""
        names = sorted(n for n in os.listdir(self.folder) if n != REPLACED) if os.path.isdir(self.folder) else []
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


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends (where the platform allows)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def commit(files, writers):
    """Commit one epoch's files (module docstring). `writers`: {file name: write(binary file)},
    `latest` among them. A failed write is one OutputError line naming the file; then nothing
    of the epoch is left."""
    order = ["latest"] + [name for name in writers if name != "latest"]
    staged = []
    try:
        for name in order:
            with writing(files.path(name)):
                tmp = write_temp(files.folder, ".tmp_" + name, writers[name])
                staged.append(files.path(STAGED + name))
                os.replace(tmp, staged[-1])
        with writing(files.folder):
            fsync_folder(files.folder)
    except BaseException:
        for path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise
    with _signals_held(), writing(files.latest):
        os.replace(staged[0], files.latest)  # the commit point
        for name, path in zip(order[1:], staged[1:]):
            os.replace(path, files.path(name))
        fsync_folder(files.folder)


def read_config(folder):
    """A run folder's config.yaml as nested dicts ({} if absent or unreadable)."""
    try:
        with open(os.path.join(folder, "config.yaml")) as f:
            data = yaml.safe_load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}


def committed_config(files):
    """The config the committed epochs were trained with, as nested dicts: config.yaml, or
    where that is missing or unreadable the copy `latest` carries; None where neither exists
    (mdistiller's own folders). CheckpointError when config.yaml is unreadable and `latest`
    carries no copy: the resume cannot be checked."""
    text = _read(files.config)
    saved = _config_tree(text)
    if saved:
        return saved
    saved = _config_tree(_config_in_latest(files))
    if saved or text is None:
        return saved
    raise CheckpointError(f"cannot resume {files.folder}: its config.yaml is unreadable and {files.latest} carries "
                          "no copy of the config, so the resume cannot be checked against the config its epochs were "
                          f"trained with; restore {files.config}, or start over with --overwrite (the old outputs "
                          f"are moved into {os.path.join(files.folder, REPLACED)}/)")


def _read(path):
    """A text file's content; None when it does not exist, "" when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _config_tree(text):
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) and data else None


def _config_in_latest(files):
    if not os.path.isfile(files.latest):
        return None
    from ..runtime.checkpoint_io import load_checkpoint  # torch: only here, so that reading folders stays light

    try:
        ckpt = load_checkpoint(files.latest)
    except UserError:
        return None  # the resume itself reports the unreadable `latest`
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    return config if isinstance(config, str) else None


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


# How a refused start can go on, as the messages of `check_start` put it: for tools/train.py, and
# for mdistiller-style scripts (engine/upstream.py), which have --resume but no --overwrite.
OUR_WAYS = {"start_over": "pass --overwrite to move them into {replaced}/ and start over",
            "same_config": "resume with the run's own config (--cfg {config} --resume)"}
SCRIPT_WAYS = {"start_over": "move the folder away to start over",
               "same_config": "resume with the config file and overrides the run was started with"}


def check_start(files, resume, overwrite, cfg=None, ways=OUR_WAYS):
    """None if the run may start as asked, else the one-line reason (a CheckpointError message).
    `cfg`: the run's config, compared on resume with `committed_config`. `ways`: how the
    messages say to go on (OUR_WAYS or SCRIPT_WAYS)."""
    if resume and overwrite:
        return "--resume and --overwrite contradict each other; pass one of them"
    folder = files.folder
    if overwrite:
        busy = files.busy_nested()
        return f"cannot move the outputs of {folder} aside: {busy}" if busy else None
    aside = ways["start_over"].format(replaced=os.path.join(folder, REPLACED))
    if os.path.isfile(files.latest):
        if not resume:
            return (f"output folder {folder} already holds checkpoints ({_shown(files.checkpoints())}); pass --resume "
                    f"to continue that run, {aside}, or choose another EXPERIMENT.NAME")
        try:
            saved = committed_config(files) if cfg is not None else None
        except CheckpointError as err:
            return str(err)
        changes = config_changes(saved, cfg) if saved else []  # mdistiller's own folders have no config
        if changes:
            own = ways["same_config"].format(config=files.config)
            if ways is OUR_WAYS and not _config_tree(_read(files.config)):
                own = (f"resume with the config and overrides it was started with (its config.yaml is unreadable; "
                       f"{files.latest} carries the config compared here)")
            return f"cannot resume {folder} with a changed config ({describe_changes(changes)}); {own}, or {aside}"
        stale = teacher_change(folder, cfg) if cfg is not None else None
        if stale:
            return f"cannot resume {folder}: {stale}; {aside}"
        return None
    found = files.results()
    if found:
        return (f"output folder {folder} holds results ({_shown(found)}) but no `latest` to resume from; "
                f"{aside}, or choose another EXPERIMENT.NAME")
    if resume and not files.outputs():
        return (f"cannot resume: {files.latest} does not exist; run without --resume to start fresh "
                "(or check EXPERIMENT.NAME/TAG and LOG.PREFIX)")
    return None  # nothing committed: (re)start at epoch 1


def make_ready(files, overwrite):
    """After `check_start` passed (rank 0 only, holding the run's lock): finish a commit a crash
    interrupted, move the folder's contents aside for --overwrite when it holds results
    (returns where to, else None), create the folder."""
    with writing(files.folder):
        files.finish_commit()
        moved = files.move_aside() if overwrite and files.results() else None
        os.makedirs(files.folder, exist_ok=True)
    return moved
