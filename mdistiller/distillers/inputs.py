"""What a configured distiller needs from the data pipeline, decided from its class and the config:
how many views per image (`input_views`) and whether batches carry sample indices
(`needs_index`). The engine asks these before it builds the loaders; the distiller classes
declare what they take (their `views` / `needs_index` attributes, see base.py).
"""
from ..errors import ConfigError
from .base import Distiller
from .registry import get_distiller_class


def declared_views(cls):
    """The view counts a distiller class accepts, or None when it does not say: an mdistiller
    plug-in that overrides `forward_train` and inherits the base default takes whatever its
    SOLVER.TRAINER gives it, as in mdistiller."""
    if not isinstance(cls, type) or not issubclass(cls, Distiller):
        return tuple(cls.views) if hasattr(cls, "views") else None
    for klass in cls.__mro__:
        if klass is Distiller:
            break
        if "views" in vars(klass):
            return tuple(klass.views)
    overrides = any("forward_train" in vars(k) for k in cls.__mro__[:cls.__mro__.index(Distiller)])
    return None if overrides else tuple(Distiller.views)


def distiller_classes(cfg):
    """The configured distiller class and the classes of DISTILLER.STACK."""
    return [get_distiller_class(cfg.DISTILLER.TYPE)] + [get_distiller_class(n, key="DISTILLER.STACK")
                                                         for n in cfg.DISTILLER.STACK]


def input_views(cfg):
    """Views per training image: 2 when SOLVER.TRAINER is "ours" or the distiller only takes
    two, else 1. ConfigError when the trainer gives what the distiller cannot take."""
    supported = {1, 2}
    for cls in distiller_classes(cfg):
        supported &= set(declared_views(cls) or (1, 2))
    if not supported:
        raise ConfigError(f"DISTILLER.TYPE {cfg.DISTILLER.TYPE} and DISTILLER.STACK {list(cfg.DISTILLER.STACK)} "
                          "accept no common number of views; they cannot be combined")
    if cfg.SOLVER.TRAINER == "ours":
        if 2 not in supported:
            raise ConfigError(f"config key SOLVER.TRAINER is 'ours' (weak + strong views) but distiller "
                              f"{cfg.DISTILLER.TYPE} takes one view; use SOLVER.TRAINER base")
        return 2
    return min(supported)


def needs_index(cfg):
    """Whether batches carry sample/contrast indices: SOLVER.TRAINER "crd" or a CRD-like distiller."""
    return cfg.SOLVER.TRAINER == "crd" or any(getattr(c, "needs_index", False) for c in distiller_classes(cfg))


def teacher_train_key(cfg):
    """The config key that makes the configured distiller run its teacher in train mode, or None."""
    return getattr(get_distiller_class(cfg.DISTILLER.TYPE), "teacher_train_key", lambda _: None)(cfg)
