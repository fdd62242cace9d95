"""Build the configured distiller: `build_distiller(cfg, student, teacher)`.

Looks the class up in the registry (`DISTILLER.TYPE`), checks its config values before anything
is trained (`check_distiller_cfg`, also usable before the models are built), and calls it with
mdistiller's signatures: `Cls(student, teacher, cfg)`, `Cls(student, teacher, cfg, num_data)` for
classes that set `needs_index` (CRD) or whose constructor takes `num_data` (mdistiller-style
CRD plug-ins), or `Cls(student)` for classes that set
`needs_teacher = False` (NONE). A non-empty DISTILLER.STACK wraps the result in a `Stack`
(see stack.py).
"""
import inspect

import torch

from ..errors import ConfigError
from .registry import get_distiller_class, registered_name
from .stack import build_stack, check_stack_cfg


def teacher_required(cfg):
    """Whether the configured distiller uses a teacher (NONE does not: skip loading one)."""
    return getattr(get_distiller_class(cfg.DISTILLER.TYPE), "needs_teacher", True)


def check_distiller_cfg(cfg):
    """Raise ConfigError for a bad distiller name or bad values of its config keys."""
    cls = get_distiller_class(cfg.DISTILLER.TYPE)
    check = getattr(cls, "check_cfg", None)  # third-party mdistiller classes may have none
    if check is not None:
        check(cfg)
    if cfg.DISTILLER.STACK:
        check_stack_cfg(cfg)
    return cls


def takes_num_data(cls):
    """Whether the constructor takes a fourth argument, the training-set size (mdistiller's CRD
    signature `(student, teacher, cfg, num_data)`)."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return any(p.name == "num_data" for p in params) or len(positional) >= 4


def build_distiller(cfg, student, teacher, num_data=None):
    """`num_data` (training-set size) sizes the memory bank of distillers with `needs_index`
    (CRD), which take it as a fourth argument as in mdistiller."""
    def build(cls):
        if not getattr(cls, "needs_teacher", True):
            return cls(student)
        try:
            if getattr(cls, "needs_index", False) or takes_num_data(cls):
                return cls(student, teacher, cfg, num_data)
            return cls(student, teacher, cfg)
        except (AssertionError, RuntimeError) as err:
            raise cuda_only(cls, err) from None

    return build_stack(cfg, build(check_distiller_cfg(cfg)), build)


def cuda_only(cls, err):
    """`err` unchanged, or, when it is a constructor's `.cuda()` failing on a machine without
    CUDA (upstream files such as mdistiller's CRD.py do that), a one-line ConfigError."""
    first = (str(err).strip().splitlines() or [""])[0]
    if torch.cuda.is_available() or not any(word in first for word in ("CUDA", "NVIDIA")):
        return err
    return ConfigError(f"distiller {registered_name(cls)} calls .cuda() in its constructor ({first}), so it runs "
                       "only on a machine with a CUDA GPU; run it there (DEVICE auto or cuda)")
