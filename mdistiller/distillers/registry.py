"""Name -> distiller class, as mdistiller's `distiller_dict`.

Built-in distillers register themselves with `@register("NAME")`. Third-party mdistiller
plug-ins can be added the same way or by assigning `distiller_dict["NAME"] = Class`.
"""
from ..errors import ConfigError

distiller_dict = {}


def register(*names):
    """Class decorator: register a distiller under one or more config names."""
    def wrap(cls):
        for name in names:
            distiller_dict[name] = cls
        return cls
    return wrap


def get_distiller_class(name, key="DISTILLER.TYPE"):
    if name not in distiller_dict:
        raise ConfigError(f"config key {key} is {name!r}; registered distillers: {', '.join(sorted(distiller_dict))}")
    return distiller_dict[name]


def registered_name(cls):
    """The config name a distiller class is registered under (its class name if none)."""
    return next((name for name, c in distiller_dict.items() if c is cls), cls.__name__)
