"""mdistiller's `mdistiller.engine.utils`, for scripts written for mdistiller and its forks:
`load_checkpoint`, `save_checkpoint`, `log_msg`, `validate`, `AverageMeter`, `accuracy`,
`adjust_learning_rate`, with mdistiller's signatures on our parts.

Differences that keep its guarantees: `load_checkpoint` is our safe loader (tensors and plain
values only, `weights_only`), `save_checkpoint` writes atomically, and `validate` evaluates on
the device the model is on (no `.cuda()`) and prints mdistiller's `[EVAL] Top-1:...` line.
"""
import os

import torch

from ..errors import CheckpointError
from ..models.cifar import CIFAR_TEACHER_DIR
from .cfg import log_msg
from .checkpoint import load_checkpoint as _load_checkpoint
from .checkpoint import save_atomic
from .evaluation import evaluate
from .optim import lr_at, set_lr
from .upstream import exits_on_user_error

__all__ = ["AverageMeter", "accuracy", "adjust_learning_rate", "load_checkpoint", "log_msg", "save_checkpoint",
           "validate"]


class AverageMeter:
    """The running mean of a value: `update(val, n)` adds `val` for `n` samples; `.avg`."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val = self.avg = self.sum = self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


@exits_on_user_error
def load_checkpoint(path):
    """The object saved at `path`, on the CPU (refused with one line if it holds code)."""
    if not os.path.exists(path) and os.path.normpath(path).startswith(os.path.normpath(CIFAR_TEACHER_DIR)):
        raise CheckpointError(f"teacher checkpoint {path} does not exist: install mdistiller's published teachers "
                              "(cifar_teachers.tar) with `mdistiller-fetch-teachers` run from this folder, or extract "
                              "that archive into download_ckpts/ (tar xf cifar_teachers.tar -C download_ckpts)")
    return _load_checkpoint(path)


def save_checkpoint(obj, path):
    save_atomic(obj, path)


def accuracy(output, target, topk=(1,)):
    """[top-k accuracy in percent, a 1-element tensor] for each k, as mdistiller returns them."""
    with torch.no_grad():
        top = output.topk(max(topk), dim=1).indices
        hits = top == target.reshape(-1, 1)
        return [hits[:, :k].any(dim=1).float().sum().reshape(1) * (100.0 / target.shape[0]) for k in topk]


def adjust_learning_rate(epoch, cfg, optimizer):
    """Set the LR of `epoch` (SOLVER's schedule) on `optimizer`; returns it."""
    lr = lr_at(cfg, epoch, 0, 1)
    set_lr(optimizer, lr)
    return lr


def validate(val_loader, distiller):
    """(top-1, top-5, mean cross-entropy) of `distiller(image=...)` in eval mode on `val_loader`."""
    model = getattr(distiller, "module", distiller)
    device = next(model.parameters()).device
    distiller.eval()
    result = evaluate(lambda image: distiller(image=image), val_loader, device, progress=True)
    print(log_msg(f"Top-1:{result['top1']:.3f}| Top-5:{result['top5']:.3f}", "EVAL"))
    return result["top1"], result["top5"], result["loss"]
