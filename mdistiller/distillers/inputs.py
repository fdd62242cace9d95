"""What a configured distiller needs from the data pipeline, decided from its class and the config:
how many views per image (`input_views`, DATASET.VIEWS) and whether batches carry sample indices
(`needs_index`, DATASET.INDICES). The engine asks these before it builds the loaders; the config
keys' `auto` means "what the distiller classes declare" (their `views` / `needs_index`
attributes, see base.py; `default_views`, where a class has it, is the count `auto` picks
when the others allow it, else the fewest they all accept).
"""
from ..errors import ConfigError
from .base import Distiller, defined_below_distiller, is_legacy
from .registry import get_distiller_class


def declared_views(cls):
    """The view counts a distiller class accepts, or None when it does not say: an mdistiller
    plug-in that overrides `forward_train` and inherits the base default takes whatever
    DATASET.VIEWS gives it, as it took what mdistiller's SOLVER.TRAINER gave it."""
    if not isinstance(cls, type) or not issubclass(cls, Distiller):
        return tuple(cls.views) if hasattr(cls, "views") else None
    if defined_below_distiller(cls, "views"):
        return tuple(cls.views)
    return None if is_legacy(cls) else tuple(Distiller.views)


def distiller_classes(cfg):
    """The configured distiller class and the classes of DISTILLER.STACK."""
    return [get_distiller_class(cfg.DISTILLER.TYPE)] + [get_distiller_class(n, key="DISTILLER.STACK")
                                                         for n in cfg.DISTILLER.STACK]


def _names(cfg):
    return " + ".join([cfg.DISTILLER.TYPE, *cfg.DISTILLER.STACK])


def input_views(cfg):
    """Views per training image (1 = weak, 2 = weak + strong): DATASET.VIEWS; `fewest`: the fewest
    the distiller and every DISTILLER.STACK entry accept; `auto`: the distiller's `default_views`
    if they all take it, else the fewest. ConfigError when no count suits them all, or when
    DATASET.VIEWS asks for one they cannot take."""
    classes = distiller_classes(cfg)
    supported = {1, 2}
    for cls in classes:
        supported &= set(declared_views(cls) or (1, 2))
    if not supported:
        raise ConfigError(f"DISTILLER.TYPE {cfg.DISTILLER.TYPE} and DISTILLER.STACK {list(cfg.DISTILLER.STACK)} "
                          "accept no common number of views; they cannot be combined")
    wanted = cfg.DATASET.VIEWS
    if wanted in ("auto", "fewest"):
        preferred = getattr(classes[0], "default_views", None) if wanted == "auto" else None
        return preferred if preferred in supported else min(supported)
    if wanted not in supported:
        alias = " (SOLVER.TRAINER ours sets 2)" if wanted == 2 else ""
        raise ConfigError(f"config key DATASET.VIEWS is {wanted}{alias} but distiller {_names(cfg)} takes "
                          f"{min(supported)} view(s) only; set DATASET.VIEWS auto and leave SOLVER.TRAINER out")
    return wanted


def needs_index(cfg):
    """Whether batches carry sample/contrast indices: DATASET.INDICES, or with `auto` whether a
    distiller declares `needs_index` (CRD). ConfigError for False with such a distiller."""
    declared = any(getattr(cls, "needs_index", False) for cls in distiller_classes(cfg))
    setting = cfg.DATASET.INDICES
    if setting == "auto":
        return declared
    if declared and not setting:
        raise ConfigError(f"config key DATASET.INDICES is False but distiller {_names(cfg)} needs sample indices; "
                          "set DATASET.INDICES auto")
    return bool(setting)


def teacher_train_key(cfg):
    """The config key that makes the configured distiller run its teacher in train mode, or None."""
    return getattr(get_distiller_class(cfg.DISTILLER.TYPE), "teacher_train_key", lambda _: None)(cfg)
