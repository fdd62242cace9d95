"""What a model name `package.module:callable` may resolve to, decided before anything is called.

A config is data: naming a callable in it must not let the config run arbitrary code (delete or
truncate files, fetch and run code). So the name must resolve to something that builds a model:

  - an nn.Module subclass, from any importable package (its constructor builds the model);
  - a function defined in the user's own code: a module listed in PLUGINS / --plugin (or inside
    one), or a module outside the Python installation (a folder on PYTHONPATH, an editable
    install), never this project's own code (zoo models have their zoo names);
  - a timm or torchvision model builder (also reachable as timm:<name> / torchvision:<name>).

Refused before the module is even imported: the standard library (`sys.stdlib_module_names`;
importing `antigravity` alone opens a web browser), builtins, and the modules whose purpose is
fetching or running code from elsewhere (torch.hub runs a repository's hubconf.py). Refused
after the import, without a call: any other class, a function of an installed package (found in
site-packages/dist-packages or the standard library's folder: `torch:load`, `numpy:load`), a
function that a user module merely re-exports (its real defining module, `__module__`, decides:
`from os import system` does not make `system` the user's), builtins, partials and other callables.
"""
import importlib
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ConfigError
from ..plugins import imported_plugins, is_module_path

FETCHES_CODE = ("torch.hub", "torch.utils.model_zoo", "torch.package", "huggingface_hub", "pip", "setuptools")
INSTALLED_FOLDERS = ("site-packages", "dist-packages")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_FOLDERS = (_PACKAGE, os.path.join(os.path.dirname(_PACKAGE), "tools"))  # mdistiller/ and tools/
ACCEPTED = ("a model name is a zoo name, timm:<name>, torchvision:<name>, or package.module:callable naming an "
            "nn.Module class or a model-building function of your own module (on PYTHONPATH, or in PLUGINS / "
            "--plugin)")


@dataclass(frozen=True)
class Builder:
    """A resolved model constructor: `call(num_classes=..., **kwargs)`; `library` is "timm" or
    "torchvision" for those libraries' builders (whose kwargs may ask for published weights),
    `model` the library's model name then."""
    call: Callable
    library: Optional[str] = None
    model: str = ""


def _refuse(label, name, why):
    return ConfigError(f"{label} is {name!r}, {why}; {ACCEPTED}")


def _in_stdlib(module_name):
    return (module_name or "").split(".")[0] in sys.stdlib_module_names  # builtins included


def _check_module_allowed(module_path, name, label):
    """Before any import: the standard library, builtins and code fetchers are never imported."""
    if _in_stdlib(module_path):
        raise _refuse(label, name, f"which names the Python standard library ({module_path.split('.')[0]}), "
                                   "not a model")
    for fetcher in FETCHES_CODE:
        if module_path == fetcher or module_path.startswith(fetcher + "."):
            raise _refuse(label, name, f"but {fetcher} fetches or runs code from elsewhere and is never called "
                                       "from a model name")


def resolve_user_callable(module_path, attr, label):
    """The Builder `module_path:attr` stands for, checked (module docstring) but not called."""
    name = f"{module_path}:{attr}"
    if not is_module_path(module_path) or not is_module_path(attr) or any(
            p.startswith("__") for p in attr.split(".")):
        raise _refuse(label, name, "not a model name")
    _check_module_allowed(module_path, name, label)
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        raise ConfigError(f"{label} is {name}, but {module_path} cannot be imported ({err}); "
                          "put its folder on PYTHONPATH or pip install its package") from None
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError(f"{label} is {name}, but {module_path} has no callable {attr!r}; "
                          "name a class or function that takes num_classes and returns an nn.Module")
    return _builder(target, name, label)


def _builder(target, name, label):
    import torch.nn as nn

    if inspect.isclass(target):
        if issubclass(target, nn.Module):
            return Builder(target)
        raise _refuse(label, name, f"a class ({target.__module__}.{target.__qualname__}) that is not an nn.Module")
    function = target.__func__ if inspect.ismethod(target) else target
    if not inspect.isfunction(function):
        raise _refuse(label, name, f"a {type(target).__name__}, neither a model class nor a Python function")
    library = _library_builder(function)
    if library:
        return Builder(target, library, function.__name__)
    problem = _not_user_code(function.__module__)
    if problem:
        raise _refuse(label, name, f"a function of {function.__module__} ({problem})")
    return Builder(target)


def _library_builder(function):
    """"timm" / "torchvision" when `function` is one of their registered model builders."""
    top = (function.__module__ or "").split(".")[0]
    if top == "timm":
        import timm

        if timm.is_model(function.__name__) and timm.models.model_entrypoint(function.__name__) is function:
            return "timm"
    if top == "torchvision":
        from torchvision import models

        if function.__name__ in models.list_models() and models.get_model_builder(function.__name__) is function:
            return "torchvision"
    return None


def _not_user_code(module_name):
    """Why functions of `module_name` are not the user's own model code, or None when they are."""
    top = (module_name or "").split(".")[0]
    if _in_stdlib(module_name):
        return "the Python standard library"
    if any(module_name == p or module_name.startswith(p + ".") for p in imported_plugins()):
        return None  # the user named this plug-in on purpose: its functions are theirs
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if not path:
        return "a module without a source file"
    path = os.path.realpath(path)
    if top == "mdistiller" or any(_inside(path, folder) for folder in PROJECT_FOLDERS):
        return "this project's code: zoo models go by their zoo names, e.g. resnet8"
    if _installed(path):
        return f"an installed package, {top}, not your own code"
    return None


def _inside(path, folder):
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _installed(path):
    """Whether a module file belongs to the Python installation: the standard library's folders or
    an installed package (site-packages / dist-packages of any environment)."""
    if any(part in INSTALLED_FOLDERS for part in path.split(os.sep)):
        return True
    paths = sysconfig.get_paths()
    return any(_inside(path, paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k))
