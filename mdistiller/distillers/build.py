"""Build the configured distiller: `build_distiller(cfg, student, teacher)`.

Looks the class up in the registry (`DISTILLER.TYPE`), checks its config values before anything
is trained (`check_distiller_cfg`, also usable before the models are built), and calls it with
mdistiller's signatures: `Cls(student, teacher, cfg)`, or `Cls(student)` for classes that set
`needs_teacher = False` (NONE).
"""
from ..errors import ConfigError
from .registry import get_distiller_class


def teacher_required(cfg):
    """Whether the configured distiller uses a teacher (NONE does not: skip loading one)."""
    return getattr(get_distiller_class(cfg.DISTILLER.TYPE), "needs_teacher", True)


def check_distiller_cfg(cfg):
    """Raise ConfigError for a bad distiller name or bad values of its config keys."""
    cls = get_distiller_class(cfg.DISTILLER.TYPE)
    check = getattr(cls, "check_cfg", None)  # third-party mdistiller classes may have none
    if check is not None:
        check(cfg)
    return cls


def build_distiller(cfg, student, teacher):
    cls = check_distiller_cfg(cfg)
    if getattr(cls, "needs_teacher", True):
        distiller = cls(student, teacher, cfg)
    else:
        distiller = cls(student)
    return attach_stack(distiller, cfg)


def attach_stack(distiller, cfg):
    """DISTILLER.STACK hook: extra distillers whose loss terms join the main one's.

    Stacking is implemented separately; until it is wired in here, a non-empty STACK is refused
    rather than silently ignored."""
    if cfg.DISTILLER.STACK:
        raise ConfigError(f"config key DISTILLER.STACK is {list(cfg.DISTILLER.STACK)}; stacking distillers "
                          "is not available yet: leave it empty")
    return distiller
