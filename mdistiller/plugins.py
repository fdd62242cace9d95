"""Plug-ins: user modules imported before a config is read (config key PLUGINS, `--plugin`).

A plug-in is any importable module (`my_pkg.my_kd`) that registers distillers, and optionally
their config sections, when imported (distillers/registry.py `register`). The config loader
imports the modules a config names before it merges the file, so the sections they add exist
when their keys are read. A module is looked up on the Python path and, failing that, in the
current directory (as `python -m` would), so `tools/train.py` run from a project folder finds
the project's modules without a wrapper script.
"""
import importlib
import os
import sys

from .errors import ConfigError


def import_plugin(name):
    """Import one plug-in module by its dotted path; a one-line ConfigError when it cannot be."""
    try:
        return _import(name)
    except ModuleNotFoundError as err:
        if not _names_part_of(name, err):
            raise  # the plug-in itself imports something missing: its own traceback says what
        raise ConfigError(f"plug-in module {name} (PLUGINS / --plugin) cannot be imported: no module named "
                          f"{err.name!r}; run from the folder that holds it or add that folder to PYTHONPATH"
                          ) from None


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        if not _names_part_of(name, err) or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)  # only when needed: the module lives in the current directory
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            sys.path.remove(cwd)
            raise


def _names_part_of(name, err):
    """Whether the missing module is `name` or a package on its path (not one it imports)."""
    return bool(err.name) and (name == err.name or name.startswith(err.name + "."))


def load_plugins(names):
    """Import each module in `names` (in order; a module already imported is not run again)."""
    for name in names:
        import_plugin(name)
