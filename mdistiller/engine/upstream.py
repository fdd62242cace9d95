"""mdistiller's `trainer_dict`, for training scripts written for mdistiller and its forks (the
MLKD, SLD and logit-standardization repositories), which end with

    distiller = torch.nn.DataParallel(distiller.cuda())
    trainer = trainer_dict[cfg.SOLVER.TRAINER](experiment_name, distiller, train_loader, val_loader, cfg)
    trainer.train(resume=resume)

Each class here takes those arguments and trains through our trainer (`build.train_prepared`):
the loaders `mdistiller.dataset` built, our checkpoints and exact resume, the run folder's lock,
into `<LOG.PREFIX>/<experiment_name>` as upstream names it. The trainer name stands for the keys
it sets (`config.TRAINER_ALIASES`): `base`, `crd`, `dot`, `crd_dot`, and `ours` / `aug` (two
views). DataParallel is unwrapped: the run uses one device (DEVICE). A folder that already holds
a run is refused, as by tools/train.py, where upstream trained over it; `--resume` continues it.

Functions that such scripts call end them on bad input (`UserError`) with one `error: ...` line
and exit code 2, as our own tools do, instead of a traceback (`exits_on_user_error`).
"""
import functools
import os
import sys

from ..config import finish_cfg
from ..errors import UserError
from .build import train_prepared
from .progress import say


def exits_on_user_error(fn):
    """Wrap a function that mdistiller-style scripts call (module docstring)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    return wrapper


def script_cfg(cfg, trainer=None):
    """Our validated, frozen config from the yacs tree a script merged with plain yacs
    (`mdistiller.engine.cfg.CFG`), left untouched; `trainer`: the trainer_dict key the script
    picked, which stands for its keys as SOLVER.TRAINER does."""
    run = cfg.clone()
    run.defrost()
    if trainer is not None:
        run.SOLVER.TRAINER = trainer
    finish_cfg(run)
    run.freeze()
    return run


def unwrap(distiller):
    """The distiller inside DataParallel / DistributedDataParallel (or the distiller itself)."""
    return getattr(distiller, "module", distiller)


class BaseTrainer:
    """`Trainer(experiment_name, distiller, train_loader, val_loader, cfg).train(resume=False)`."""

    trainer = "base"

    def __init__(self, experiment_name, distiller, train_loader, val_loader, cfg):
        self.cfg = cfg
        self.distiller = distiller
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.log_path = os.path.join(cfg.LOG.PREFIX, experiment_name)
        self.best_acc = -1

    @exits_on_user_error
    def train(self, resume=False):
        cfg = script_cfg(self.cfg, self.trainer)
        gpus = getattr(self.distiller, "device_ids", None) or []
        if len(gpus) > 1:
            say(f"note: DataParallel over {len(gpus)} GPUs; this run trains on one (DEVICE {cfg.DEVICE}). For "
                "several, run torchrun --nproc_per_node N tools/train.py --cfg ...")
        try:
            self.best_acc = train_prepared(cfg, unwrap(self.distiller), self.train_loader, self.val_loader,
                                           self.log_path, resume=resume)
        except KeyboardInterrupt:
            print("interrupted; continue the run with --resume", file=sys.stderr)
            raise SystemExit(130) from None
        return self.best_acc


class CRDTrainer(BaseTrainer):
    trainer = "crd"


class DOT(BaseTrainer):
    trainer = "dot"


class CRDDOT(BaseTrainer):
    trainer = "crd_dot"


class AugTrainer(BaseTrainer):
    """The two-view trainer of the MLKD and SLD repositories (`ours`) and the LS one (`aug`)."""

    trainer = "ours"


class LSAugTrainer(AugTrainer):
    trainer = "aug"


# one class per SOLVER.TRAINER name (config.TRAINER_ALIASES)
trainer_dict = {cls.trainer: cls for cls in (BaseTrainer, CRDTrainer, DOT, CRDDOT, AugTrainer, LSAugTrainer)}
