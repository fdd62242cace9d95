"""Distiller files dropped into this folder (mdistiller's way to add a method): a file that
imports a package this installation lacks raises `MissingDependency`, whose one line names the
file, the package and how to install it, so our tools print that line instead of a traceback
from deep inside `import mdistiller.distillers`. Upstream files need one package beyond our own
dependencies: mdistiller's OFD.py imports scipy, which the `upstream` extra installs.
"""
import importlib.abc
import importlib.machinery
import os
import sys

from ..errors import MissingDependency

UPSTREAM_EXTRA = ("scipy",)  # setup.py extras_require["upstream"]: what upstream distiller files import


def install_hint(missing):
    top = missing.split(".")[0]
    if top in UPSTREAM_EXTRA:
        return 'install the "upstream" extra: pip install "mdistiller[upstream]" (pip install -e ".[upstream]" in a clone)'
    return f"install the package that provides {top} (e.g. pip install {top})"


class _ExplainingLoader(importlib.abc.Loader):
    """Runs a distiller module with its own loader; a missing import becomes MissingDependency."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):  # get_source, get_filename, ...: the file loader's
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        try:
            self.inner.exec_module(module)
        except MissingDependency:
            raise  # explained where it happened (a file this one imports)
        except ModuleNotFoundError as err:
            if not err.name:
                raise
            path = os.path.relpath(module.__file__) if module.__file__ else module.__name__
            raise MissingDependency(f"distiller file {path} imports {err.name}, which is not installed; "
                                    f"{install_hint(err.name)}", name=err.name) from None


class _DistillerFiles(importlib.abc.MetaPathFinder):
    """Finds the modules of this package as usual and gives them the explaining loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname.rpartition(".")[0] != __package__:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _ExplainingLoader(spec.loader)
        return spec


def explain_missing_imports():
    """Install the finder once (distillers/__init__.py calls this before importing any method)."""
    if not any(isinstance(f, _DistillerFiles) for f in sys.meta_path):
        sys.meta_path.insert(0, _DistillerFiles())
