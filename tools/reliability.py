"""Replays the trust cases end to end and counts what must stay zero.

Every case runs the real programs (`tools/*.py`) in child processes on files it writes itself
(hostile configs and modules, run folders with results, truncated locks, ...) inside one
scratch workspace, and this script counts, over all cases:

- code executed: marker files written by hostile code (a hostile module or callable writes one
  under `<workspace>/markers/` whenever it is imported or called);
- files outside run folders touched: files of the workspace, outside its `output/` folder (the
  runs' LOG.PREFIX) and the caches, that a command created, changed or deleted;
- results lost: result files (checkpoints, worklogs) recorded by a case that no longer exist
  with the same content, in place or moved under the run folder's `replaced/`;
- tracebacks: commands whose output holds a Python traceback;
- expectations failed: what a case checks beyond the four counts (the right exit code, the
  one-line message, ...).

The cases live in tools/reliability_cases/, one module per group (`s1_*.py`, `s2_*.py`, ...),
each with `CASES = [(name, function), ...]`; a function takes the `Context` below.

    python tools/reliability.py [--only s1 s2] [--cifar DIR] [--keep]

Exits 0 only when every count is zero.
"""
import argparse
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CASES_DIR = Path(__file__).resolve().parent / "reliability_cases"
TRACEBACK = "Traceback (most recent call last)"
COUNTS = ("code executed", "files outside run folders touched", "results lost", "tracebacks",
          "expectations failed")


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree(root, skip):
    """{relative path: (size, sha256)} of every file under root, folders in `skip` left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                found[str(path.relative_to(root))] = ("link", "")
                continue
            found[str(path.relative_to(root))] = (path.stat().st_size, _digest(path))
    return found


class Context:
    """What a case gets: a scratch workspace, a way to run the programs, and the counters.

    - `ws`: the workspace; `output`: the runs' LOG.PREFIX (the only place commands may write,
      besides `cache`); `markers`: where hostile code leaves its marks.
    - `run(tool, *args)`: runs `tools/<tool>.py` (or any argv with `argv=`) and returns the
      CompletedProcess (text); counts a traceback and any file touched outside `output/`.
    - `hostile_module(folder, name)`: writes a module that leaves a marker when imported or called.
    - `keep_results(run_folder)` / `check_results(token)`: result files that must survive.
    - `expect(condition, what)`: one expectation of the case.
    - `image_folder()`: a tiny 3-class image folder (16x16 PNGs) for training runs;
      `train_args(name, *extra)`: a quiet one-epoch CPU run of resnet8 on it, under `output/`.
    """

    def __init__(self, ws, cifar=None):
        self.ws = Path(ws)
        self.output = self.ws / "output"
        self.cache = self.ws / "cache"
        self.markers = self.ws / "markers"
        for folder in (self.output, self.cache, self.markers):
            folder.mkdir(parents=True, exist_ok=True)
        self.cifar = cifar
        self.counts = dict.fromkeys(COUNTS, 0)
        self.case = None
        self.notes = []
        self._data = None

    # --- running the programs
    def env(self, **extra):
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(self.cache), PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
                   MDISTILLER_MARKERS=str(self.markers))
        env.update(extra)
        return env

    def run(self, tool=None, *args, argv=None, cwd=None, env=None, timeout=600, allow=()):
        """Runs `python tools/<tool>.py ARGS` (or `argv`) in `cwd` (default: the workspace).
        Files under `allow` (besides output/ and the caches) may change."""
        argv = list(argv) if argv is not None else [sys.executable, str(REPO / "tools" / f"{tool}.py"), *args]
        skip = {self.output, self.cache, *(Path(a) for a in allow)}
        before = _tree(self.ws, skip)
        done = subprocess.run(argv, cwd=str(cwd or self.ws), env=env or self.env(), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        after = _tree(self.ws, skip)
        touched = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
        if touched:
            self.count("files outside run folders touched", len(touched), f"touched {touched[:5]}")
        if TRACEBACK in done.stdout or TRACEBACK in done.stderr:
            self.count("tracebacks", 1, f"traceback from {' '.join(map(str, argv[1:4]))}...:\n"
                       + (done.stderr or done.stdout)[-1500:])
        return done

    # --- hostile code
    def hostile_module(self, folder, name="hostile_probe"):
        """folder/<name>.py: importing it, or calling any of its functions, leaves a marker."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.py").write_text(
            "import os, time\n"
            "def _mark(what):\n"
            f"    d = os.environ.get('MDISTILLER_MARKERS', {str(self.markers)!r})\n"
            "    open(os.path.join(d, f'{what}-{os.getpid()}-{time.time_ns()}'), 'w').close()\n"
            f"_mark('import-{name}')\n"
            "def build(*a, **k):\n    _mark('call-build')\n    raise SystemExit('hostile build called')\n"
            "class Model:\n    def __init__(self, *a, **k):\n        _mark('call-Model')\n")
        return folder / f"{name}.py"

    # --- results that must survive
    def keep_results(self, run_folder):
        """Records every file of run_folder (recursively) so that check_results can find it again."""
        run_folder = Path(run_folder)
        return run_folder, {p: _digest(run_folder / p) for p, _ in _tree(run_folder, set()).items()}

    def check_results(self, token):
        """Counts each recorded file whose content is found nowhere under its run folder any more."""
        run_folder, recorded = token
        present = {v[1] for v in _tree(run_folder, set()).values()} if run_folder.exists() else set()
        lost = [p for p, sha in recorded.items() if sha not in present]
        if lost:
            self.count("results lost", len(lost), f"lost {lost[:5]} of {run_folder.name}")
        return not lost

    # --- expectations
    def expect(self, condition, what):
        if not condition:
            self.count("expectations failed", 1, what)
        return bool(condition)

    def count(self, key, n, why):
        self.counts[key] += n
        self.notes.append(f"{self.case}: {key} +{n}: {why}")

    # --- data and a quick run
    def image_folder(self):
        if self._data is None:
            self._data = self.ws / "data" / "colours"
            rng = np.random.default_rng(0)
            for split, count in (("train", 8), ("test", 4)):
                for c, name in enumerate(("ant", "bee", "cat")):
                    (self._data / split / name).mkdir(parents=True)
                    for i in range(count):
                        pixels = rng.integers(0, 60, (16, 16, 3)) + np.eye(3, dtype=np.int64)[c] * 180
                        Image.fromarray(pixels.astype(np.uint8)).save(self._data / split / name / f"{i}.png")
        return self._data

    def train_args(self, name, *extra, project="rel"):
        return ["--quiet", "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", str(self.image_folder()),
                "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8", "SOLVER.EPOCHS", "1",
                "LOG.PREFIX", str(self.output), "EXPERIMENT.PROJECT", project, "EXPERIMENT.NAME", name,
                "DISTILLER.STUDENT", "resnet8", *extra]


def load_groups(only):
    sys.path.insert(0, str(CASES_DIR))
    names = sorted(p.stem for p in CASES_DIR.glob("s[0-9]*.py"))
    chosen = [n for n in names if not only or any(n.startswith(o) for o in only)]
    return [(n, importlib.import_module(n)) for n in chosen]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="reliability.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=[], metavar="GROUP", help="case groups to run (s1 s2 ...)")
    parser.add_argument("--cifar", default=None, help="a CIFAR-100 root, for the cases that need real data")
    parser.add_argument("--keep", action="store_true", help="keep the scratch workspace and print where it is")
    args = parser.parse_args(argv)

    ws = Path(tempfile.mkdtemp(prefix="mdistiller-reliability-"))
    ctx = Context(ws, cifar=args.cifar)
    before_markers = 0
    start = time.time()
    n_cases = 0
    for group, module in load_groups(args.only):
        print(f"{group}: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}")
        for name, case in module.CASES:
            ctx.case = f"{group}/{name}"
            notes_before = len(ctx.notes)
            try:
                case(ctx)
            except Exception:  # a case that breaks is a failed expectation, never a silent pass
                ctx.count("expectations failed", 1, "the case itself raised:\n" + traceback.format_exc())
            n_cases += 1
            markers = len(list(ctx.markers.iterdir()))
            if markers > before_markers:
                ctx.count("code executed", markers - before_markers, "hostile code left a marker")
                before_markers = markers
            status = "ok  " if len(ctx.notes) == notes_before else "FAIL"
            print(f"  {status} {name}")
            for note in ctx.notes[notes_before:]:
                print("       " + note.replace("\n", "\n       "))
    print(f"{n_cases} cases in {time.time() - start:.0f} s")
    print(", ".join(f"{key} {ctx.counts[key]}" for key in COUNTS))
    if args.keep:
        print(f"workspace kept: {ws}")
    else:
        shutil.rmtree(ws, ignore_errors=True)
    return 0 if not any(ctx.counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
