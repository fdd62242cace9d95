"""Name -> distiller class, as mdistiller's `distiller_dict`.

Built-in distillers register themselves with `@register("NAME")`. A plug-in (a module outside
the package, named in the config's PLUGINS or with `--plugin`, see mdistiller/plugins.py) does
the same and may bring its own config section:

    @register("MY_KD", cfg_node={"TEMPERATURE": 4.0, "LOSS": {"KD_WEIGHT": 1.0}})
    class MyKD(Distiller): ...            # reads cfg.MY_KD.TEMPERATURE

The section's keys then have defaults and are validated like built-in ones (unknown keys and
wrong types are refused). mdistiller's way, `distiller_dict["NAME"] = Class`, still works.
"""
from ..config import add_section
from ..errors import ConfigError

distiller_dict = {}


def register(*names, cfg_node=None):
    """Class decorator: register a distiller under one or more config names; `cfg_node` (a yacs
    CfgNode or a dict of defaults) adds the config section named like the first name."""
    if cfg_node is not None:
        add_section(names[0], cfg_node)

    def wrap(cls):
        for name in names:
            distiller_dict[name] = cls
        return cls
    return wrap


def get_distiller_class(name, key="DISTILLER.TYPE"):
    if name not in distiller_dict:
        raise ConfigError(f"config key {key} is {name!r}; registered distillers: {', '.join(sorted(distiller_dict))} "
                          "(a plug-in's distiller needs its module in PLUGINS or --plugin MODULE)")
    return distiller_dict[name]


def registered_name(cls):
    """The config name a distiller class is registered under (its class name if none)."""
    return next((name for name, c in distiller_dict.items() if c is cls), cls.__name__)
