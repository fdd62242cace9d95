"""Optimizers and learning-rate schedules.

`build_optimizer(cfg, params)` is the one place optimizers are made. A trainer variant that
needs its own optimizer has a builder in `TRAINER_OPTIMIZERS[SOLVER.UPDATE]` (DOT: "dot").

Schedule (`lr_at`): epochs count from 1, as in mdistiller.
  step   LR * LR_DECAY_RATE ** (number of LR_DECAY_STAGES < epoch), constant within an epoch —
         mdistiller's `adjust_learning_rate` (epoch 151 is the first at 0.1x for 150/180/210).
  cosine LR * (1 + cos(pi * progress)) / 2, per iteration, over the epochs after warm-up.
  warm-up (WARMUP_EPOCHS > 0) scales either schedule linearly, per iteration, from
         1/(warm-up iterations) to 1 over the first WARMUP_EPOCHS epochs.
The `lr` logged per epoch (worklog, tensorboard "lr") is that of the epoch's first step; the
per-iteration value is in tensorboard's "iter/lr".
"""
import math

import torch

from ..errors import ConfigError
from .dot import build_dot_optimizer


def _sgd(cfg, params):
    s = cfg.SOLVER
    return torch.optim.SGD(params, lr=s.LR, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY,
                           nesterov=s.NESTEROV and s.MOMENTUM > 0)


def _adam(cfg, params):
    return torch.optim.Adam(params, lr=cfg.SOLVER.LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def _adamw(cfg, params):
    return torch.optim.AdamW(params, lr=cfg.SOLVER.LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


OPTIMIZERS = {"SGD": _sgd, "Adam": _adam, "AdamW": _adamw}
# SOLVER.UPDATE name -> builder(cfg, params), for trainers with their own optimizer
TRAINER_OPTIMIZERS = {"dot": build_dot_optimizer}


def build_optimizer(cfg, params):
    """The optimizer over `params` (the distiller's `get_learnable_parameters()`)."""
    # Each parameter once: an mdistiller plug-in built on our Distiller (whose list already holds
    # its modules' parameters) adds them again, as it would to mdistiller's student-only list.
    params = list({id(p): p for p in params if p.requires_grad}.values())
    if not params:
        raise ConfigError(f"distiller {cfg.DISTILLER.TYPE} has no learnable parameters; "
                          "check DISTILLER.STUDENT")
    build = TRAINER_OPTIMIZERS.get(cfg.SOLVER.UPDATE, OPTIMIZERS[cfg.SOLVER.TYPE])
    return build(cfg, params)


def lr_at(cfg, epoch, iteration=0, iters_per_epoch=1):
    """Learning rate for step `iteration` (0-based) of `epoch` (1-based)."""
    s = cfg.SOLVER
    elapsed = epoch - 1 + iteration / iters_per_epoch  # epochs done before this step
    if s.LR_SCHEDULER == "step":
        lr = s.LR * s.LR_DECAY_RATE ** sum(1 for stage in s.LR_DECAY_STAGES if stage < epoch)
    else:
        span = max(s.EPOCHS - s.WARMUP_EPOCHS, 1e-12)
        progress = min(max(elapsed - s.WARMUP_EPOCHS, 0.0) / span, 1.0)
        lr = s.LR * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.WARMUP_EPOCHS > 0:
        lr *= min(1.0, (elapsed + 1.0 / iters_per_epoch) / s.WARMUP_EPOCHS)
    return lr


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr
