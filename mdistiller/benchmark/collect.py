"""From run folders to `RunResult`s: what a report knows about each run.

A run folder is what tools/train.py (or mdistiller) leaves in <LOG.PREFIX>/<PROJECT>/<NAME>/.
Where each number comes from:
  accuracies, epochs, curve   worklog.txt (mdistiller's format; see engine/worklog.py)
  images/s                    the per-epoch `throughput` scalars in train.events (this trainer)
  train wall time             run.json, written by the benchmark runner around the training call
  parameter counts            student_best (student) and best/latest (the distiller's `teacher.`)
  labels (method, pair, seed) run.json, else config.yaml (this trainer), else the folder name
                              read as mdistiller's EXPERIMENT.TAG "method,teacher,student"
Anything missing is None (shown as "n/a"), and what is wrong is listed in `problems`; reading a
folder never raises for bad content. Read for a benchmark (`requested`: the config the benchmark
asks for), a run trained with other settings ("mismatch": `differences` lists them, SOLVER.EPOCHS
included) or distilled from teacher weights that changed since ("stale":
engine/teacher_identity.py) is not complete: its numbers are not the requested config's result.

"Best" follows mdistiller: best top-1 is the `best_acc` line (the maximum test top-1); the
`best` checkpoint is the last epoch reaching it (ties refresh it), and `top5_at_best` is that
epoch's top-5, i.e. the top-5 of the checkpoint a user would keep.
"""
import glob
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ..engine.events import read_scalars
from ..engine.run_folder import config_changes, read_config
from ..engine.teacher_identity import teacher_change
from ..engine.worklog import read_worklog
from .spec import method_label, pair_label

RUN_JSON = "run.json"
RUN_MARKERS = ("worklog.txt", "config.yaml", RUN_JSON, "latest", "best", "student_latest", "student_best",
               "train.events")
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_SEED_TAG = re.compile(r"(?:^|[,])SEED:(-?\d+)")


@dataclass
class RunResult:
    folder: str
    method: str
    pair: str
    seed: Optional[int] = None  # None: unknown (each such folder counts as its own sample)
    role: str = "student"
    status: str = "missing"  # complete | incomplete | failed | missing | mismatch | stale
    epochs: int = 0  # epochs logged
    planned_epochs: Optional[int] = None
    best_top1: Optional[float] = None
    best_epoch: Optional[int] = None
    last_top1: Optional[float] = None
    top5_at_best: Optional[float] = None
    last_top5: Optional[float] = None
    wall_time_s: Optional[float] = None
    images_per_s: Optional[float] = None
    student_params: Optional[int] = None
    teacher_params: Optional[int] = None
    curve: List = field(default_factory=list)  # [(epoch, test top-1)]
    problems: List[str] = field(default_factory=list)
    differences: List = field(default_factory=list)  # [key, value trained with, value asked] (mismatch)

    @property
    def complete(self):
        return self.status == "complete"

    def as_dict(self):
        return asdict(self)


# ---------------------------------------------------------------- small readers
def read_run_json(folder):
    path = os.path.join(folder, RUN_JSON)
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_run_json(folder, data):
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, RUN_JSON + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(folder, RUN_JSON))


def count_parameters(state_dict, prefix=""):
    """Learnable parameters in a state dict (BatchNorm running statistics excluded), optionally
    only the keys under `prefix` (e.g. "teacher."); DataParallel's "module." is ignored."""
    total = 0
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith(prefix) and not key.endswith(BUFFER_SUFFIXES) and hasattr(value, "numel"):
            total += int(value.numel())
    return total


def _first_state_dict(folder, names):
    """The state dict in the first readable checkpoint among `names`, or None."""
    from ..errors import CheckpointError
    from ..runtime.checkpoint_io import extract_state_dict, load_checkpoint

    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                return extract_state_dict(load_checkpoint(path), path)
            except CheckpointError:
                continue
    return None


def parameter_counts(folder):
    """(student parameters, teacher parameters) from the folder's checkpoints (None if unknown)."""
    student = _first_state_dict(folder, ("student_best", "student_latest"))
    distiller = _first_state_dict(folder, ("best", "latest"))
    teacher = count_parameters(distiller, "teacher.") if distiller is not None else 0
    return (count_parameters(student) if student is not None else None), (teacher or None)


def labels_from_config(config):
    """(method, pair, seed) from a resolved config.yaml, or None."""
    d = config.get("DISTILLER")
    if not isinstance(d, dict) or "TYPE" not in d:
        return None
    logit_stand = (config.get("EXPERIMENT") or {}).get("LOGIT_STAND", False)
    method = method_label(d["TYPE"], d.get("STACK") or [], logit_stand)
    return method, pair_label(d.get("TEACHER"), d.get("STUDENT"), d["TYPE"]), config.get("SEED")


def labels_from_name(name):
    """(method, pair, seed) from an mdistiller TAG-style folder name "kd,res32x4,res8x4[...]";
    mdistiller glues command-line overrides on as "KEY:VALUE" tags, of which SEED is used."""
    seed = _SEED_TAG.search(name)
    seed = int(seed.group(1)) if seed else None
    parts = [re.split(r"(?=[A-Z][A-Z0-9_.]*:)", p)[0] for p in name.split(",")]
    parts = [p for p in parts if p]
    if len(parts) >= 3:
        return parts[0], pair_label(parts[1], parts[2]), seed
    return name, "", seed


# ---------------------------------------------------------------- one folder
def read_run(folder, method=None, pair=None, seed=None, role=None, planned_epochs=None, requested=None):
    """Everything known about the run in `folder`; labels passed in (from a benchmark spec)
    win over those found in the folder. `requested`: the config the run should have (module
    docstring)."""
    meta, config = read_run_json(folder), read_config(folder)
    found = ((meta.get("method"), meta.get("pair"), meta.get("seed")) if meta.get("method")
             else labels_from_config(config) or labels_from_name(os.path.basename(os.path.normpath(folder))))
    result = RunResult(folder=folder, method=method or found[0], pair=pair if pair is not None else found[1],
                       seed=seed if seed is not None else found[2], role=role or meta.get("role", "student"))
    if planned_epochs is None and requested is not None:
        planned_epochs = requested.SOLVER.EPOCHS
    if planned_epochs is None:
        planned_epochs = (config.get("SOLVER") or {}).get("EPOCHS")
    result.planned_epochs = planned_epochs
    if not os.path.isdir(folder):
        result.problems.append("not run yet (no folder)")
        return result
    log = read_worklog(os.path.join(folder, "worklog.txt"))
    result.problems += log.problems
    _fill_accuracies(result, log)
    result.status = _against_request(result, config, requested) or _status(result, log, meta)
    result.wall_time_s = meta.get("wall_time_s")
    throughput = [v for _, v in read_scalars(os.path.join(folder, "train.events")).get("throughput", [])]
    result.images_per_s = sum(throughput) / len(throughput) if throughput else None
    result.student_params, result.teacher_params = parameter_counts(folder)
    return result


def value_token(value):
    """A config value as written after a KEY on the command line: [DKD], 0.05, True."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_token(v) for v in value) + "]"
    return str(value)


def requested_differences(saved, cfg):
    """[(key, value in the saved config.yaml, value in cfg)]: what config_changes counts, and
    SOLVER.EPOCHS in either direction (a longer schedule may resume, but until then the run is
    not the longer schedule's result)."""
    changes = config_changes(saved, cfg)
    epochs = (saved.get("SOLVER") or {}).get("EPOCHS")
    if epochs is not None and epochs != cfg.SOLVER.EPOCHS and all(key != "SOLVER.EPOCHS" for key, _, _ in changes):
        changes.append(("SOLVER.EPOCHS", epochs, cfg.SOLVER.EPOCHS))
    return changes


def _against_request(result, config, requested):
    """"mismatch" or "stale", with its problem line, when the folder's run is not the run
    `requested` asks for; None otherwise (or when nothing was requested)."""
    if requested is None:
        return None
    differences = requested_differences(config, requested) if config else []
    if differences:
        result.differences = [[key, old, new] for key, old, new in differences]
        shown = ", ".join(f"{key} {value_token(old)} (asked: {value_token(new)})" for key, old, new in differences)
        result.problems.append(f"trained with other settings than asked: {shown}; not shown as the asked config's "
                               "result")
        return "mismatch"
    stale = teacher_change(result.folder, requested)
    if stale:
        result.problems.append(f"stale: {stale}; not shown (the benchmark with --overwrite retrains it)")
        return "stale"
    return None


def _fill_accuracies(result, log):
    top1 = log.series("test_acc")
    if not top1:
        return
    result.epochs = log.last_epoch
    result.curve = top1
    best = log.best_acc if log.finished else max(v for _, v in top1)
    result.best_top1 = best
    reaching = [e for e, v in top1 if v >= best]
    result.best_epoch = reaching[-1] if reaching else None
    result.last_top1 = top1[-1][1]
    top5 = dict(log.series("test_acc_top5"))
    result.top5_at_best = top5.get(result.best_epoch)
    result.last_top5 = top5.get(top1[-1][0])


def _status(result, log, meta):
    if meta.get("status") == "failed" and not log.finished:
        result.problems.append(f"training failed: {meta.get('error', 'see its output')}")
        return "failed"
    if not log.epochs:
        if "no worklog.txt" not in log.problems:
            result.problems.append("worklog.txt has no complete epoch")
        return "incomplete"
    if not log.finished:
        planned = f" of {result.planned_epochs}" if result.planned_epochs else ""
        result.problems.append(f"no best_acc line: training stopped after epoch {log.last_epoch}{planned}")
        return "incomplete"
    if result.planned_epochs and log.last_epoch < result.planned_epochs:
        result.problems.append(f"finished at epoch {log.last_epoch} but the config asks for {result.planned_epochs}")
        return "incomplete"
    return "complete"


# ---------------------------------------------------------------- many folders
def is_run_folder(path):
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in RUN_MARKERS)


def find_run_folders(root):
    """Run folders at `root`, below it (a project folder) or two levels down (an output root)."""
    if is_run_folder(root):
        return [root]
    for pattern in ("*", os.path.join("*", "*")):
        found = sorted(p for p in glob.glob(os.path.join(glob.escape(root), pattern)) if is_run_folder(p))
        if found:
            return found
    return []
