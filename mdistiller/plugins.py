"""Plug-ins: user modules imported before a config is read (config key PLUGINS, `--plugin`).

A plug-in is any importable module (`my_pkg.my_kd`) that registers distillers, and optionally
their config sections, when imported (distillers/registry.py `register`). The config loader
imports the modules a config names before it merges the file, so the sections they add exist
when their keys are read. A module is looked up on the Python path and, failing that, in the
current directory (as `python -m` would), so `tools/train.py` run from a project folder finds
the project's modules without a wrapper script.

Importing a plug-in runs its code: only the user's own command line and the configs they pass
with `--cfg` name plug-ins (a run folder's saved config.yaml does not: analysis/analyze.py asks
first). The modules imported here are remembered, because a model name may use a plug-in's
functions (models/user_code.py).
"""
import importlib
import os
import sys

from .errors import ConfigError

_imported = []  # plug-in modules imported by this process, in order


def is_module_path(name):
    """Whether `name` is a dotted module path (`my_pkg.my_kd`): no file path, no relative import."""
    return isinstance(name, str) and bool(name) and all(part.isidentifier() for part in name.split("."))


def imported_plugins():
    """The plug-in modules this process imported (load_plugins), in order."""
    return list(_imported)


def import_plugin(name):
    """Import one plug-in module by its dotted path; a one-line ConfigError when it cannot be."""
    if not is_module_path(name):
        raise ConfigError(f"plug-in module {name!r} (PLUGINS / --plugin) is not a module path; write dotted "
                          "module names such as my_pkg.my_kd, with the folder holding my_pkg on PYTHONPATH")
    try:
        module = _import(name)
    except ModuleNotFoundError as err:
        if not _names_part_of(name, err):
            raise  # the plug-in itself imports something missing: its own traceback says what
        raise ConfigError(f"plug-in module {name} (PLUGINS / --plugin) cannot be imported: no module named "
                          f"{err.name!r}; run from the folder that holds it or add that folder to PYTHONPATH"
                          ) from None
    if name not in _imported:
        _imported.append(name)
    return module


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
