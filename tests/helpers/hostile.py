"""Hostile files for the trust tests: code that leaves a marker file when it runs.

A test passes such a file where a config, a run folder or a model name could make the program
run it, and then checks that no marker appeared (nothing ran) and that a victim file outside
the run folders kept its bytes (nothing was touched).
"""
import pickle
import textwrap
from pathlib import Path


def markers(folder):
    """The marker files left in `folder` (sorted names)."""
    return sorted(p.name for p in Path(folder).iterdir())


def write_hostile_module(folder, name, marker_dir):
    """folder/<name>.py: importing it leaves `import-<name>`, calling `build` or `Model` leaves
    `call-build` / `call-Model` in marker_dir."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(f"""\
        import os
        MARKERS = {str(marker_dir)!r}
        def _mark(what):
            open(os.path.join(MARKERS, what), "w").close()
        _mark("import-{name}")
        def build(*args, **kwargs):
            _mark("call-build")
        class Model:
            def __init__(self, *args, **kwargs):
                _mark("call-Model")
        """))
    return path


def write_reexporting_module(folder, name="reexports"):
    """folder/<name>.py: a user module that merely imports dangerous functions (importing it runs
    nothing hostile), so `<name>:basicConfig` names logging's function, not the user's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent("""\
        import functools
        from logging import basicConfig
        from os import system
        from subprocess import run

        touch = functools.partial(open, mode="w")

        class Settings:  # a class, but no model
            def __init__(self, **kwargs):
                self.kwargs = kwargs
        """))
    return name


class _Marks:
    """Unpickling this calls open(marker, "w"): the marker file appears if a loader runs it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_hostile_pickle(path, marker):
    """A pickle (a torch/numpy-loadable file) whose loading with full unpickling creates `marker`."""
    with open(path, "wb") as f:
        pickle.dump({"model": _Marks(marker)}, f)
    return path
