"""Drives every command-line program with generated malformed input and counts the endings
that are not one clean line.

Programs: the eight in mdistiller/cli/ (mdistiller-train, -eval, -benchmark, -analyze, -demo,
-bench-paired, -bench-speed, -feature-shapes). Inputs, from a seeded generator (the same seed
gives the same cases, in the same order): wrong types and out-of-range values for every key of
mdistiller/config.py; missing, empty, binary, directory and text paths for every path argument;
truncated and wrong-typed checkpoint files; malformed config and benchmark spec files; bad
numbers and names for the other arguments. Each case starts from a small valid command line
(a one-epoch resnet8 run on a 3-class 16x16 image folder, so a case that is valid trains in a
second or two) and breaks one thing.

A case passes when the program ends with exit code 0 (it ran normally), or with exit code 2
and exactly one `error:` line on stderr (argparse's usage lines beside its error line are
allowed); a traceback, another exit code, or a refusal with zero or several error lines fails.

    python tools/fuzz_cli.py                    # the full sweep: prints "N cases, 0 tracebacks, ..."
    python tools/fuzz_cli.py --fast             # the default test suite's subset
    python tools/fuzz_cli.py --case 17 --show   # one case, with its output

Cases run in this process (each program's `main(argv)`, SystemExit caught, output captured,
global torch settings restored after each); `--subprocess` runs each in a child process.
"""
import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import List, NamedTuple

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# tools/reliability.py (its Context writes the image folder both tools train on), by file path
# so that tools/ does not go on sys.path (its train.py, eval.py ... would shadow other modules)
_spec = importlib.util.spec_from_file_location("reliability_tool", REPO / "tools" / "reliability.py")
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)

TRACEBACK = "Traceback (most recent call last)"
PROGRAMS = ("train", "eval", "benchmark", "analyze", "demo", "bench_paired", "bench_speed", "feature_shapes")
WS = "{ws}"  # the workspace folder in a case's argv (filled in when it runs)
SEED = 0
FAST_PER_PROGRAM = 6  # cases per program in the default suite's subset (--fast)


class Case(NamedTuple):
    program: str
    argv: List[str]
    what: str  # the one thing broken, for the report
    refused: bool = False  # sure to be refused before any training (eligible for --fast)

    def args(self, ws):
        return [a.replace(WS, str(ws)) for a in self.argv]


# ------------------------------------------------------------------ the workspace
# Files every bad path argument is tried with: name -> what it is (written by `Workspace`).
BAD_PATHS = ("missing", "empty", "binary", "folder", "text")
# Checkpoint-shaped files that are not a usable checkpoint.
BAD_CHECKPOINTS = ("truncated.pth", "list.pth", "tensor.pth", "model_int.pth", "model_str_values.pth",
                   "empty_state.pth", "other_arch.pth", "garbage.safetensors", "yaml_as.pth", "zip_junk.pth")


def bad_path(kind):
    return f"{WS}/bad/{kind}"


class Workspace:
    """A scratch folder holding the valid inputs the base command lines use (data/, teacher.pth,
    student.pth, tiny.yaml, a finished run under runs/) and the bad files cases point at (bad/)."""

    def __init__(self, root):
        self.root = Path(root)
        self.data = self.root / "data"

    def build(self):
        import torch

        from mdistiller.models import create_model

        # the 3-class 16x16 colour folder of tools/reliability.py's cases, moved to data/
        shutil.move(str(reliability.Context(self.root / "rel").image_folder()), str(self.data))
        shutil.rmtree(self.root / "rel")
        torch.manual_seed(0)
        model = create_model("resnet8", 3).state_dict()
        torch.save({"model": model}, self.root / "teacher.pth")
        torch.save({"model": model}, self.root / "student.pth")
        (self.root / "tiny.yaml").write_text(TINY_YAML)
        for method in ("kd", "dkd", "sld"):  # a config tree for --methods (benchmark, bench_paired)
            (self.root / "configs" / "tiny" / method).mkdir(parents=True)
            (self.root / "configs" / "tiny" / method / "r8.yaml").write_text(
                TINY_YAML.replace("TYPE: KD", f"TYPE: {method.upper()}"))
        self._bad_files(model)
        self._finished_run()

    def _bad_files(self, model):
        import torch

        bad = self.root / "bad"
        bad.mkdir()
        (bad / "empty").write_bytes(b"")
        (bad / "binary").write_bytes(bytes(random.Random(1).randrange(256) for _ in range(4096)))
        (bad / "folder").mkdir()
        (bad / "text").write_text("just some text\n")
        whole = io.BytesIO()
        torch.save({"model": model}, whole)
        (bad / "truncated.pth").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
        torch.save([1, 2, 3], bad / "list.pth")
        torch.save(torch.zeros(3), bad / "tensor.pth")
        torch.save({"model": 5}, bad / "model_int.pth")
        torch.save({"model": {"conv1.weight": "weights"}}, bad / "model_str_values.pth")
        torch.save({"model": {}}, bad / "empty_state.pth")
        from mdistiller.models import create_model

        torch.save({"model": create_model("resnet20", 3).state_dict()}, bad / "other_arch.pth")
        (bad / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
        (bad / "yaml_as.pth").write_text("DISTILLER:\n  TYPE: KD\n")
        (bad / "zip_junk.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
        for name, text in SPECS.items():
            (bad / f"spec_{name}.yaml").write_text(text)
        for name, text in CONFIG_FILES.items():
            (bad / f"cfg_{name}.yaml").write_text(text)

    def _finished_run(self):
        """runs/fuzz/done: a finished one-epoch KD run (for eval and analyze)."""
        from mdistiller.cli import train

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = train.main([a.replace(WS, str(self.root)) for a in train_base("done", prefix=f"{WS}/runs")])
        if code != 0:
            raise RuntimeError(f"the fuzz workspace's base run failed:\n{err.getvalue()}")


TINY_YAML = """DATASET:
  TYPE: imagefolder
  ROOT: data
  NUM_WORKERS: 0
DISTILLER:
  TYPE: KD
  TEACHER: resnet8
  STUDENT: resnet8
  TEACHER_WEIGHTS: teacher.pth
SOLVER:
  BATCH_SIZE: 8
  EPOCHS: 1
DEVICE: cpu
LOG:
  QUIET: true
"""

# Malformed benchmark specs (tools/benchmark.py --spec).
SPECS = {
    "list": "- KD\n- SLD\n",
    "scalar": "42\n",
    "bad_yaml": "methods: [KD\n",
    "methods_str": "methods: KD\n",
    "methods_num": "methods: {KD: 5}\n",
    "methods_missing_cfg": "methods: {KD: {opts: [SOLVER.EPOCHS, 1]}}\n",
    "methods_cfg_missing_file": "methods: {KD: nowhere.yaml}\n",
    "unknown_key": "methods: {KD: ../tiny.yaml}\ncolour: blue\n",
    "seeds_str": "methods: {KD: ../tiny.yaml}\nseeds: [a, b]\n",
    "seeds_negative": "methods: {KD: ../tiny.yaml}\nseeds: [-3]\n",
    "seeds_float": "methods: {KD: ../tiny.yaml}\nseeds: [1.5]\n",
    "opts_odd": "methods: {KD: ../tiny.yaml}\nopts: [SOLVER.EPOCHS]\n",
    "opts_unknown_key": "methods: {KD: ../tiny.yaml}\nopts: [SOLVER.NOPE, 1]\n",
    "pairs_str": "methods: {KD: ../tiny.yaml}\npairs: abc\n",
    "pairs_list": "methods: {KD: ../tiny.yaml}\npairs: [1, 2]\n",
    "launcher_unknown": "methods: {KD: ../tiny.yaml}\nlauncher: {type: moon}\n",
    "launcher_jobs": "methods: {KD: ../tiny.yaml}\nlauncher: {type: local, jobs: -2}\n",
    "slurm_scalar": "methods: {KD: ../tiny.yaml}\nslurm: 5\n",
    "role_unknown": "methods: {KD: {cfg: ../tiny.yaml, role: boss}}\n",
    "project_escape": "methods: {KD: ../tiny.yaml}\nproject: ../../escape\n",
    "paired_str": "methods: {KD: ../tiny.yaml}\npaired: maybe\n",
    "baseline_unknown": "methods: {KD: ../tiny.yaml}\npaired: true\nbaseline: Nope\n",
    "empty_methods": "methods: {}\n",
    "method_blank": "methods: {'': ../tiny.yaml}\n",
}

# Malformed config files (--cfg).
CONFIG_FILES = {
    "list": "- DISTILLER\n",
    "scalar": "3\n",
    "bad_yaml": "DISTILLER: {TYPE: KD\n",
    "tabs": "DISTILLER:\n\tTYPE: KD\n",
    "unknown_section": "NOPE:\n  X: 1\n",
    "unknown_key": "SOLVER:\n  NOPE: 1\n",
    "section_scalar": "SOLVER: 5\n",
    "key_is_section": "SOLVER:\n  LR: {a: 1}\n",
    "plugins_bad": "PLUGINS: [5]\n",
    "plugins_missing": "PLUGINS: [no_such_plugin_module_xyz]\n",
    "trainer_unknown": "SOLVER:\n  TRAINER: fast\n",
    "duplicate_keys": "SOLVER:\n  LR: 0.1\n  LR: abc\n",
    "anchors": "a: &x [1]\nSOLVER:\n  LR_DECAY_STAGES: *x\n",
    "python_tag": "SOLVER:\n  LR: !!python/object/apply:os.system [echo hi]\n",
}


# ------------------------------------------------------------------ base command lines
def train_base(name="run", prefix=f"{WS}/out", *extra):
    return ["--quiet", "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT", f"{WS}/data",
            "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8", "SOLVER.EPOCHS", "1", "LOG.PREFIX", prefix,
            "EXPERIMENT.PROJECT", "fuzz", "EXPERIMENT.NAME", name, "DISTILLER.TYPE", "KD",
            "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet8",
            "DISTILLER.TEACHER_WEIGHTS", f"{WS}/teacher.pth", *extra]


RUN = f"{WS}/runs/fuzz/done"
EVAL_BASE = ["-m", "resnet8", "-c", f"{WS}/student.pth", "-d", "imagefolder", "--root", f"{WS}/data",
             "DEVICE", "cpu", "DATASET.NUM_WORKERS", "0"]
ANALYZE_BASE = ["-c", f"{RUN}/student_best", "-t", f"{WS}/teacher.pth", "--root", f"{WS}/data",
                "--tsne-samples", "0", "--quiet", "-o", f"{WS}/out/analysis"]
BENCH_BASE = ["--cfg", f"{WS}/tiny.yaml", "--seeds", "0", "--quiet", "--no-chart", "--project", "bench",
              "--out", f"{WS}/out/bench", "--dry-run"]
SPEED_BASE = ["--cfg", f"{WS}/tiny.yaml", "--synthetic", "32", "--batches", "1", "--warmup", "0",
              "--workers", "0", "--device", "cpu", "--only", "data"]
TREE = ["--configs-dir", f"{WS}/configs", "--dataset", "tiny"]  # the workspace's config tree
PAIRED_BASE = ["--root", f"{WS}/data", *TREE, "--pair", "r8", "--methods", "KD", "--epochs", "1",
               "--train-subset", "0", "--test-subset", "0", "--device", "cpu", "--out", f"{WS}/out/paired"]
FEATURE_BASE = ["resnet8", "resnet8"]


# ------------------------------------------------------------------ values
def wrong_values(default, rng):
    """Wrong-typed or out-of-range values (command-line strings) for a key whose default is
    `default`. Huge numbers are kept to kinds where a valid one stays cheap."""
    common = ["[1, 2", "{a: 1}", "[[]]", "~", "", "!!binary AAAA"]
    if isinstance(default, bool):
        pool = ["maybe", "2", "[true]", "1.5", "yes please"]
    elif isinstance(default, int):
        pool = ["-1", "-99999999999999999999", "1.5", "abc", "True", "nan", "[3]", "0x", "1e30"]
    elif isinstance(default, float):
        pool = ["-1", "abc", "nan", "inf", "-inf", "True", "[0.5]", "1e999", "0"]
    elif isinstance(default, str):
        pool = ["123", "[a]", "no_such_value", "a" * 300, "../../x", "True", " "]
    elif isinstance(default, (list, tuple)):
        pool = ["abc", "5", "[-1]", "[abc]", "[[1]]", "[1e999]", "[]", "[true]", "{}"]
    else:  # a free-form section (constructor kwargs)
        pool = ["abc", "[1]", "{num_classes: 3}", "{no_such_argument: 1}", "{pretrained: 5}", "5"]
    return rng.sample(pool, min(4, len(pool))) + rng.sample(common, 1)


def flat_keys():
    """(key, default) of every config key, in the tree's order."""
    from yacs.config import CfgNode

    from mdistiller.config import get_cfg_defaults

    def walk(node, prefix):
        for name, value in node.items():
            key = prefix + name
            if isinstance(value, CfgNode) and not value.is_new_allowed():
                yield from walk(value, key + ".")
            else:
                yield key, value

    return list(walk(get_cfg_defaults(), ""))


def distiller_for(key):
    """The DISTILLER.TYPE whose section `key` is in (so that its checks run), or None."""
    from mdistiller.distillers import distiller_dict

    section = key.split(".")[0]
    return section if section in distiller_dict else None


# Keys whose valid large values make a run long or big rather than wrong (SOLVER.EPOCHS 10**20
# trains for ever); the generator gives them no huge values.
SIZE_KEYS = ("SOLVER.EPOCHS", "DATASET.IMAGE_SIZE", "CRD.NCE.K", "DATASET.TEST.BATCH_SIZE",
             "SOLVER.WARMUP_EPOCHS", "LOG.SAVE_CHECKPOINT_FREQ")


# ------------------------------------------------------------------ the generator
def config_key_cases(rng):
    cases = []
    for key, default in flat_keys():
        method = distiller_for(key)
        extra = ["DISTILLER.TYPE", method] if method and key != "DISTILLER.TYPE" else []
        for value in wrong_values(default, rng):
            if key in SIZE_KEYS and re.fullmatch(r"1e\d+|\d{6,}", value):
                continue
            cases.append(Case("train", train_base(f"k{len(cases)}", f"{WS}/out", *extra, key, value),
                              f"{key} {value!r}", refused=value in ("abc", "[[]]", "{a: 1}")))
    return cases


def path_cases():
    """Every path argument of every program, given each bad path kind (and checkpoints given
    each bad checkpoint)."""
    cases = []

    def add(program, base, flag, kinds, refused=True):
        for kind in kinds:
            argv = list(base)
            if flag in argv:  # replace the base's value
                argv[argv.index(flag) + 1] = bad_path(kind)
            else:
                argv += [flag, bad_path(kind)]
            cases.append(Case(program, argv, f"{flag} {kind}", refused))

    ckpts = BAD_PATHS + BAD_CHECKPOINTS
    add("train", train_base("p"), "--cfg", BAD_PATHS + tuple(f"cfg_{n}.yaml" for n in CONFIG_FILES))
    add("train", train_base("p"), "DISTILLER.TEACHER_WEIGHTS", ckpts)
    add("train", train_base("p"), "DISTILLER.STUDENT_WEIGHTS", ckpts)
    add("train", train_base("p"), "DATASET.ROOT", BAD_PATHS)
    add("train", train_base("p"), "LOG.PREFIX", ("binary", "text"))
    add("eval", EVAL_BASE, "-c", ckpts)
    add("eval", EVAL_BASE, "--root", BAD_PATHS)
    add("analyze", ANALYZE_BASE, "-c", ckpts)
    add("analyze", ANALYZE_BASE, "-t", ckpts)
    add("analyze", ANALYZE_BASE, "--root", BAD_PATHS)
    add("analyze", ANALYZE_BASE, "-o", ("binary", "text"))
    add("benchmark", BENCH_BASE, "--cfg", BAD_PATHS + tuple(f"cfg_{n}.yaml" for n in CONFIG_FILES))
    add("benchmark", [a for a in BENCH_BASE if a not in ("--cfg", f"{WS}/tiny.yaml")], "--spec",
        BAD_PATHS + tuple(f"spec_{n}.yaml" for n in SPECS))
    add("benchmark", [a for a in BENCH_BASE if a not in ("--cfg", f"{WS}/tiny.yaml", "--dry-run")] + ["--report-only"],
        "--runs-dir", BAD_PATHS)
    add("benchmark", BENCH_BASE[:-1] + ["--report-only"], "--out", ("binary", "text"))
    add("demo", ["--dry-run"], "--cifar", BAD_PATHS)
    add("demo", ["--quiet"], "--cifar", ("missing", "empty", "text"))
    add("bench_paired", PAIRED_BASE, "--root", BAD_PATHS)
    add("bench_paired", PAIRED_BASE, "--teacher-weights", ckpts)
    add("bench_paired", PAIRED_BASE, "--configs-dir", BAD_PATHS)
    add("bench_speed", SPEED_BASE, "--cfg", BAD_PATHS + tuple(f"cfg_{n}.yaml" for n in CONFIG_FILES))
    add("bench_speed", [a for a in SPEED_BASE if a not in ("--synthetic", "32")], "--root", BAD_PATHS)
    add("feature_shapes", FEATURE_BASE, "--cfg", BAD_PATHS + tuple(f"cfg_{n}.yaml" for n in CONFIG_FILES))
    return cases


NUMBERS = ["-1", "0", "abc", "1.5", "99999999999999999999", "nan", ""]
COUNTS = [n for n in NUMBERS if len(n) < 6]  # for arguments whose valid huge values mean a run without end
NAMES = ["", "nope", "builtins:print", "timm:", "os.path:join", "../x", "KD+", "a" * 300, "Resnet8"]


def argument_cases(rng):
    """Numbers and names for the other arguments (each replaced in, or added to, a base)."""
    plan = [
        ("eval", EVAL_BASE, "-m", NAMES), ("eval", EVAL_BASE, "-bs", NUMBERS), ("eval", EVAL_BASE, "-d", NAMES),
        ("analyze", ANALYZE_BASE, "--tsne-samples", NUMBERS), ("analyze", ANALYZE_BASE, "--max-diff", NUMBERS + ["inf"]),
        ("analyze", ANALYZE_BASE, "-m", NAMES), ("analyze", ANALYZE_BASE, "--teacher-model", NAMES),
        ("benchmark", BENCH_BASE, "--seeds", NUMBERS), ("benchmark", BENCH_BASE, "--jobs", NUMBERS),
        ("benchmark", BENCH_BASE, "--project", NAMES), ("benchmark", BENCH_BASE, "--baseline", NAMES),
        ("benchmark", [a for a in BENCH_BASE if a not in ("--cfg", f"{WS}/tiny.yaml")] + TREE + ["--pairs", "r8"],
         "--methods", NAMES),
        ("demo", ["--dry-run"], "--seeds", NUMBERS),
        ("bench_paired", PAIRED_BASE, "--methods", NAMES), ("bench_paired", PAIRED_BASE, "--pair", NAMES),
        ("bench_paired", PAIRED_BASE, "--epochs", COUNTS), ("bench_paired", PAIRED_BASE, "--train-subset", NUMBERS),
        ("bench_paired", PAIRED_BASE, "--workers", NUMBERS), ("bench_paired", PAIRED_BASE, "--repeat", COUNTS),
        ("bench_paired", PAIRED_BASE, "--device", NAMES),
        ("bench_speed", SPEED_BASE, "--synthetic", NUMBERS), ("bench_speed", SPEED_BASE, "--batches", COUNTS),
        ("bench_speed", SPEED_BASE, "--workers", NUMBERS), ("bench_speed", SPEED_BASE, "--subset", NUMBERS),
        ("bench_speed", SPEED_BASE, "--threads", NUMBERS), ("bench_speed", SPEED_BASE, "--device", NAMES),
        ("feature_shapes", [], "teacher", NAMES), ("feature_shapes", [], "student", NAMES),
        ("feature_shapes", FEATURE_BASE, "--dataset", NAMES),
    ]
    cases = []
    for program, base, flag, values in plan:
        for value in rng.sample(values, min(4, len(values))):
            if flag in ("teacher", "student"):  # feature_shapes' positional names
                argv = [value, "resnet8"] if flag == "teacher" else ["resnet8", value]
            elif flag in base:
                argv = list(base)
                argv[argv.index(flag) + 1] = value
            else:
                argv = list(base) + [flag, value]
            cases.append(Case(program, argv, f"{flag} {value!r}", refused=value in ("abc", "")))
    return cases


def overrides_cases(rng):
    """Broken KEY VALUE lists: odd length, unknown keys and sections, flags in the overrides."""
    broken = [["SOLVER.LR"], ["NOPE", "1"], ["SOLVER.NOPE", "1"], ["SOLVER", "1"], ["solver.lr", "0.1"],
              ["SOLVER.LR.X", "1"], ["--plugin"], ["--plugin", ""], ["--base-temp", "abc"], [".", "1"],
              ["PLUGINS", "[5]"], ["PLUGINS", "no_such_plugin_xyz"], ["--logit-stand", "--kd-weight", "x"]]
    cases = []
    for program, base in (("train", train_base("o")), ("eval", EVAL_BASE), ("feature_shapes", FEATURE_BASE)):
        for extra in broken:
            cases.append(Case(program, list(base) + extra, f"overrides {extra}", refused=True))
    rng.shuffle(cases)
    return cases


def generate(seed=SEED):
    """Every case, in a fixed order for a given seed."""
    rng = random.Random(seed)
    return config_key_cases(rng) + path_cases() + argument_cases(rng) + overrides_cases(rng)


def fast_subset(cases, seed=SEED):
    """A few cases per program that are refused before any training (the default suite's share)."""
    rng = random.Random(seed)
    chosen = []
    for program in PROGRAMS:
        pool = [i for i, c in enumerate(cases) if c.program == program and c.refused]
        chosen += rng.sample(pool, min(FAST_PER_PROGRAM, len(pool)))
    return sorted(chosen)


# ------------------------------------------------------------------ running and judging
def verdict(code, out, err):
    """None when the ending is clean (see the module docstring), else why not."""
    if TRACEBACK in out or TRACEBACK in err:
        return "traceback"
    if code == 0:
        return None
    errors = [line for line in err.splitlines() if re.match(r"^(\S+: )?error: ", line)]
    if code != 2:
        return f"exit code {code}"
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    return None


@contextlib.contextmanager
def restored_globals(cwd):
    """Run in `cwd`, then put back what a program may change for the whole process."""
    import torch

    saved = (os.getcwd(), list(sys.path), torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.get_default_dtype())
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved[0])
        sys.path[:] = saved[1]
        torch.set_num_threads(saved[2])
        torch.use_deterministic_algorithms(saved[3])
        torch.set_default_dtype(saved[4])


def run_in_process(program, argv, cwd):
    """(exit code, stdout, stderr) of mdistiller.cli.<program>.main(argv), as the process would end."""
    main = importlib.import_module(f"mdistiller.cli.{program}").main
    out, err = io.StringIO(), io.StringIO()
    with restored_globals(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if isinstance(done.code, str):
                print(done.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - what the interpreter would print
            traceback.print_exc()
            code = 1
    return code or 0, out.getvalue(), err.getvalue()


def run_subprocess(program, argv, cwd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(REPO / "tools" / f"{program}.py"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def run_case(case, ws, in_process=True):
    """(verdict or None, exit code, stdout, stderr, seconds) of one case in workspace `ws`."""
    start = time.time()
    run = run_in_process if in_process else run_subprocess
    code, out, err = run(case.program, case.args(ws), str(ws))
    return verdict(code, out, err), code, out, err, time.time() - start


def describe(index, case):
    return f"#{index} {case.program}: {case.what} | argv: {' '.join(repr(a) if ' ' in a or not a else a for a in case.argv)}"


def sweep(indices, cases, ws, in_process=True, show=False, report=print):
    """Runs the chosen cases; returns {"cases": n, "tracebacks": t, "failures": [(index, why, output)],
    "ran": how many ended normally (exit 0)}.
    `show`: print every case's output, not only the failures'."""
    failures, tracebacks, ran = [], 0, 0
    for index in indices:
        why, code, out, err, secs = run_case(cases[index], ws, in_process)
        ran += code == 0
        if why:
            tracebacks += why == "traceback"
            failures.append((index, why, err or out))
            report(f"FAIL {describe(index, cases[index])}\n     {why}: {(err or out).strip().splitlines()[-1:]}")
        if show:
            report(f"{describe(index, cases[index])}\n  exit {code}, {secs:.1f} s, {why or 'ok'}\n{out}{err}")
        shutil.rmtree(Path(ws) / "out", ignore_errors=True)  # every case starts from no outputs
    return {"cases": len(indices), "tracebacks": tracebacks, "failures": failures, "ran": ran}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fuzz_cli.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED, help="generator seed (default %(default)s)")
    parser.add_argument("--fast", action="store_true", help="only the default test suite's subset")
    parser.add_argument("--programs", nargs="+", choices=PROGRAMS, help="only these programs' cases")
    parser.add_argument("--case", type=int, nargs="+", help="only these case numbers")
    parser.add_argument("--show", action="store_true", help="print each case's output")
    parser.add_argument("--list", action="store_true", help="list the cases; run nothing")
    parser.add_argument("--subprocess", action="store_true", help="run each case in a child process")
    args = parser.parse_args(argv)
    cases = generate(args.seed)
    indices = args.case or (fast_subset(cases, args.seed) if args.fast else list(range(len(cases))))
    indices = [i for i in indices if not args.programs or cases[i].program in args.programs]
    if args.list:
        for i in indices:
            print(describe(i, cases[i]))
        return 0
    ws = Path(tempfile.mkdtemp(prefix="mdistiller-fuzz-"))
    start = time.time()
    try:
        Workspace(ws).build()
        result = sweep(indices, cases, ws, not args.subprocess, args.show, lambda line: print(line, flush=True))
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    print(f"{result['cases']} cases, {result['tracebacks']} tracebacks, "
          f"{len(result['failures']) - result['tracebacks']} other failures; {result['ran']} ran normally "
          f"({time.time() - start:.0f} s, seed {args.seed})")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
