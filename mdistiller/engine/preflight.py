"""Every input a run needs, checked before any model or loader is built: `check_inputs(cfgs)`.

Why: a run that stops at its first bad input makes the user find the next one on the next try
(the data, then the teacher, then the output folder ...), each try after a slow start. Here
every check runs, for every config of a run or a matrix, and all problems are raised together:
each once (the same missing teacher of five runs is one line), one line each. One problem is
raised as itself (its own `UserError` subclass); several as `InputProblems`.

The checks are cheap and build nothing: config values of the distiller(s) and the views they
take; the device; model names (what each stands for: a model class or builder, never other
code; models/user_code.py); PLUGINS; the data layout under DATASET.ROOT (no image is decoded); the teacher's
and the student's initial weights files (read, so a truncated file is caught too); the output
folder (the start rules of run_folder.check_start, and that it can be created and written).
"""
import os

from ..distillers import check_distiller_cfg, teacher_required
from ..distillers.inputs import input_views
from ..errors import CheckpointError, OutputError, UnreadableCheckpoint, UserError
from ..plugins import load_plugins
from ..runtime.safe_write import unwritable_folder
from ..runtime.checkpoint_io import extract_student_state_dict, load_checkpoint, missing_weights_words
from .device import resolve_device
from .distributed import DistInfo
from .graph_step import check_cuda_graph
from .run_folder import RunFiles, check_start, run_folder
from .run_lock import RunHeld, held_elsewhere, held_message


class InputProblems(UserError):
    """Several bad inputs at once; `problems` lists their one-line messages, `str()` joins them
    one per line."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def start_problem(cfg, resume=False, overwrite=False, lock=True):
    """run_folder.check_start's refusal for a solo run as a CheckpointError (None: it may start);
    with `lock` (the process that will hold the run's lock: rank 0 under torchrun or Slurm, whose
    other ranks see it held), RunHeld first when another live process trains that folder."""
    folder = run_folder(cfg)
    holder = held_elsewhere(folder) if lock else None
    if holder is not None:
        raise RunHeld(held_message(folder, holder))
    problem = check_start(RunFiles(folder), resume, overwrite, cfg)
    if problem:
        raise CheckpointError(problem)


def check_writable(folder):
    """OutputError unless `folder` exists as a writable folder or can be created. Nothing is written."""
    reason = unwritable_folder(folder)
    if reason:
        raise OutputError(f"cannot write {folder}: {reason}; set LOG.PREFIX to a writable folder (or change "
                          "EXPERIMENT.NAME)")


def check_weights_file(path, way_out):
    """The checkpoint at `path` is readable and holds model weights; `way_out` ends the message
    of an unreadable one."""
    try:
        extract_student_state_dict(load_checkpoint(path), path)
    except UnreadableCheckpoint as err:
        raise UnreadableCheckpoint(f"{err}; {way_out}") from None


def check_models(cfg):
    """What the model names stand for (a model class or builder, never other code; models/user_code.py)."""
    from ..models import check_model_names  # models import torchvision: only when checking

    check_model_names(cfg, teacher=teacher_required(cfg))


def student_weights(cfg):
    """DISTILLER.STUDENT_WEIGHTS ("" = random init); CheckpointError when that file does not exist."""
    init = cfg.DISTILLER.STUDENT_WEIGHTS
    if init and not os.path.isfile(init):
        raise CheckpointError(f"config key DISTILLER.STUDENT_WEIGHTS is {init!r}, which {missing_weights_words(init)}; "
                              "point it to a .pth or .safetensors file, or leave it empty for random init")
    return init


def check_student_weights(cfg):
    if student_weights(cfg):
        check_weights_file(cfg.DISTILLER.STUDENT_WEIGHTS, "point DISTILLER.STUDENT_WEIGHTS to an intact checkpoint "
                           "or leave it empty for random init")


def check_teacher_weights(cfg):
    from ..models.teacher import INTACT_TEACHER, teacher_checkpoint

    if not teacher_required(cfg):
        return
    d = cfg.DISTILLER
    path = teacher_checkpoint(d.TEACHER, cfg.DATASET.TYPE, d.TEACHER_WEIGHTS, dict(d.TEACHER_KWARGS))
    if path is not None:
        check_weights_file(path, INTACT_TEACHER)


def check_device(cfg, info):
    device = resolve_device(cfg.DEVICE, info.local_rank if info.enabled else None)
    if cfg.SOLVER.CUDA_GRAPH:
        check_cuda_graph(cfg, device, info.world_size)


def check_data(cfg):
    from ..data import locate_data  # the data package imports torchvision: only when checking

    locate_data(cfg)


def run_checks(cfg, start=start_problem, info=DistInfo()):
    """The checks for one config (callables that raise a UserError), in the order a user would
    fix what they find."""
    checks = [lambda: load_plugins(cfg.PLUGINS), lambda: check_distiller_cfg(cfg), lambda: input_views(cfg),
              lambda: check_device(cfg, info), lambda: check_models(cfg), lambda: check_data(cfg),
              lambda: check_teacher_weights(cfg), lambda: check_student_weights(cfg),
              lambda: check_writable(run_folder(cfg))]
    return ([lambda: start(cfg)] if start is not None else []) + checks


def input_problems(cfgs, start=start_problem, info=DistInfo()):
    """The distinct UserErrors of every check of every config, in order (see module docstring)."""
    found = {}
    for cfg in cfgs:
        for check in run_checks(cfg, start, info):
            try:
                check()
            except UserError as err:
                found.setdefault(str(err), err)
    return list(found.values())


def check_inputs(cfgs, start=start_problem, info=DistInfo()):
    """Raise the problems `input_problems` finds: one as itself, several as one InputProblems.
    `start(cfg)` raises when the run folder refuses the start (None: not checked, e.g. when the
    caller decides per run whether to start, resume or skip); `info`: this process's place under
    torchrun (its device is cuda:LOCAL_RANK; a CUDA graph needs one process)."""
    problems = input_problems(cfgs, start, info)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputProblems([str(p) for p in problems])
