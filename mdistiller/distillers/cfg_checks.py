"""Value checks for distiller config keys, raising one-line `ConfigError`s that name the key.

The config loader checks types against the defaults; these check what a method needs of the
values (a temperature is positive, a weight is not negative, ...). Distillers call them from
their `check_cfg(cfg)` classmethod, which runs before any model is built.
"""
import math
import numbers

from ..errors import ConfigError


def cfg_value(cfg, key):
    """The value at a dotted key, e.g. cfg_value(cfg, "KD.LOSS.CE_WEIGHT")."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _is_number(value):
    """A finite real number: an infinite weight or temperature turns every loss non-finite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(cfg, key, example):
    value = cfg_value(cfg, key)
    if not (_is_number(value) and value > 0):
        raise ConfigError(f"config key {key} is {value!r}; it must be a positive number, e.g. {example}")


def check_non_negative(cfg, *keys):
    for key in keys:
        value = cfg_value(cfg, key)
        if not (_is_number(value) and value >= 0):
            raise ConfigError(f"config key {key} is {value!r}; a loss weight must be a number >= 0")


def check_int(cfg, key, minimum, meaning):
    value = cfg_value(cfg, key)
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum):
        raise ConfigError(f"config key {key} is {value!r}; it must be a whole number >= {minimum} ({meaning})")


def check_bool(cfg, *keys):
    for key in keys:
        value = cfg_value(cfg, key)
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} is {value!r}; use true or false")


def check_choice(cfg, key, choices):
    value = cfg_value(cfg, key)
    if value not in choices:
        raise ConfigError(f"config key {key} is {value!r}; choose one of {', '.join(choices)}")


def check_temperatures(cfg, key, example="[1, 2, 3, 4, 5, 6]"):
    value = cfg_value(cfg, key)
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ConfigError(f"config key {key} is {value!r}; list at least one positive temperature, e.g. {example}")
    bad = [t for t in value if not (_is_number(t) and t > 0)]
    if bad:
        raise ConfigError(f"config key {key} has {bad[0]!r} in {list(value)}; every temperature must be a positive number")
