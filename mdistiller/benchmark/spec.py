"""What a benchmark runs: cells (method x teacher/student pair) x seeds, each a normal training run.

Three ways to describe it, all producing the same `Matrix` (an ordered list of `Cell`s):

1. A spec YAML (`tools/benchmark.py --spec FILE`), e.g. configs/demo/benchmark.yaml:

       project: demo                  # runs go to <LOG.PREFIX>/<project>/<method>,<pair>,seed<N>
       seeds: [0, 1, 2]
       opts: [SOLVER.EPOCHS, 20]      # overrides for every run (KEY VALUE ...)
       pairs:                         # column label -> overrides choosing the two networks
         large -> tiny: [DISTILLER.TEACHER, demo_cnn_large, DISTILLER.STUDENT, demo_cnn_tiny]
       paired: false                  # true = as --paired (one data stream, one teacher pass)
       baseline: Vanilla              # with paired: the row the differences are taken against
       launcher: {type: local, jobs: 2}   # or slurm; tools/benchmark.py's flags take precedence
       slurm: {partition: gpu, time: 720, gpus_per_run: 1}   # launch_slurm.SlurmOptions
       methods:                       # row label -> config, or {cfg, opts, seeds, role}
         Teacher: {cfg: configs/demo/vanilla.yaml, role: teacher}
         Vanilla: configs/demo/vanilla.yaml
         KD: configs/demo/kd.yaml
         SLD+DKD: {cfg: configs/demo/sld.yaml, opts: [DISTILLER.STACK, [DKD]]}

   Every method runs on every pair (without `pairs`, each config's own networks make one
   column). A method with `role: teacher` trains the pair's teacher architecture (its config
   must use DISTILLER.TYPE NONE), once per pair on the first seed unless it lists `seeds`; the
   other runs of that pair then distil from its `student_best`. It is a reference row of the
   table (not ranked). Override order: config file, `opts`, the pair's, the method's, then
   SEED / EXPERIMENT.PROJECT / EXPERIMENT.NAME set by the benchmark.

2. Config files (`--cfg a.yaml b.yaml`): each file is one cell; its row is DISTILLER.TYPE
   (with any DISTILLER.STACK, e.g. "SLD+REVIEWKD"; NONE reads "Vanilla"), its column
   "TEACHER -> STUDENT".

3. Names (`--methods KD SLD+REVIEWKD --pairs res32x4_res8x4`): the config tree's
   `configs/<dataset>/<method>/<pair>.yaml` (lower-case method folder; NONE, the vanilla
   student, is vanilla/<pair>.yaml or else the pair's KD recipe without a teacher). A stack
   "A+B" takes A's config, sets DISTILLER.STACK [B] and adds B's own method sections (e.g.
   REVIEWKD) from B's config of the same pair when there is one.

Relative config paths in a spec resolve against the spec's folder, then the working directory.
"""
import os
import re
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import yaml

from ..config import get_cfg_defaults, load_cfg, path_component_problem
from ..errors import ConfigError, UserError

TEACHER_ROLE = "teacher"
STUDENT_ROLE = "student"
VANILLA_NAMES = ("vanilla", "none")  # row labels of the student trained without a teacher
# Config sections that describe the run rather than a distillation method (see `stack_sections`).
RUN_SECTIONS = {"EXPERIMENT", "DATASET", "DISTILLER", "SOLVER", "LOG"}


@dataclass(frozen=True)
class Cell:
    method: str  # row label
    pair: str  # column label
    config: str  # YAML path
    opts: Tuple = ()  # KEY VALUE overrides on top of the config
    seeds: Optional[Tuple[int, ...]] = None  # None: the matrix's seeds
    role: str = STUDENT_ROLE


@dataclass
class Matrix:
    project: str
    seeds: List[int]
    cells: List[Cell]
    opts: List = field(default_factory=list)  # for every run, before the cell's own
    paired: bool = False  # train each (pair, seed)'s students together (tools/benchmark.py --paired)
    baseline: Optional[str] = None  # the method paired differences are taken against
    launcher: dict = field(default_factory=dict)  # the spec's {type: local|slurm, jobs: N}
    slurm: dict = field(default_factory=dict)  # the spec's slurm section (launch_slurm.slurm_options)

    @property
    def methods(self):
        return _unique(c.method for c in self.cells)

    @property
    def pairs(self):
        return _unique(c.pair for c in self.cells)


@dataclass
class Run:
    """One training run: `load_cfg(config, opts)` is its complete config."""

    method: str
    pair: str
    seed: int
    role: str
    config: str
    opts: List
    folder: str  # <LOG.PREFIX>/<PROJECT>/<NAME>

    def cfg(self):
        return load_cfg(self.config, self.opts)


class MatrixProblems(ConfigError):
    """Several problems of one benchmark, found before its first run; `problems`: one line each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def each(items, build):
    """[build(item) for item in items], where the problems of every item are raised together
    (MatrixProblems, each distinct message once) rather than the first item's alone."""
    built, problems = [], {}
    for item in items:
        try:
            built.append(build(item))
        except MatrixProblems as err:
            problems.update(dict.fromkeys(err.problems))
        except UserError as err:
            problems[str(err)] = None
    if problems:
        raise MatrixProblems(problems)
    return built


def _unique(items):
    return list(dict.fromkeys(items))


def find_method(methods, name):
    """The row label among `methods` that `name` means: itself, or for any spelling of Vanilla or
    NONE the vanilla student's row (the README writes Vanilla; with --methods the row is NONE);
    None when there is none."""
    if name in methods:
        return name
    if name.lower() in VANILLA_NAMES:
        return next((m for m in methods if m.lower() in VANILLA_NAMES), None)
    return None


def slug(text):
    """A label as a folder-name piece: letters, digits and `._+-` kept, anything else -> '-'."""
    return re.sub(r"[^A-Za-z0-9._+]+", "-", str(text)).strip("-") or "x"


def method_label(distiller, stack=(), logit_stand=False):
    """Row label of a DISTILLER.TYPE (+ STACK): "KD", "SLD+REVIEWKD"; NONE is "Vanilla"; with
    EXPERIMENT.LOGIT_STAND an "_LS" suffix, as the config tree's folders: "KD_LS"."""
    if distiller == "NONE" and not stack:
        return "Vanilla"
    return "+".join([distiller, *stack]) + ("_LS" if logit_stand else "")


def pair_label(teacher, student, distiller=None):
    """Column label "teacher -> student". A run without a teacher (DISTILLER.TYPE NONE) that
    names none but the default one is labelled by its student alone: the default teacher name
    was never chosen for it (a vanilla baseline meant for a pair's column names that teacher)."""
    if distiller == "NONE" and teacher == get_cfg_defaults().DISTILLER.TEACHER and teacher != student:
        return f"{student} (no teacher)"
    return f"{teacher} -> {student}"


def cfg_labels(cfg):
    """(row, column) labels of a config."""
    d = cfg.DISTILLER
    return (method_label(d.TYPE, d.STACK, cfg.EXPERIMENT.LOGIT_STAND),
            pair_label(d.TEACHER, d.STUDENT, d.TYPE))


# ---------------------------------------------------------------- building a Matrix
def _opts_list(value, where):
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or len(value) % 2:
        raise ConfigError(f"{where} must be a list of KEY VALUE pairs, e.g. [SOLVER.EPOCHS, 10]; got {value!r}")
    return list(value)


def _seeds(value, where):
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ConfigError(f"{where} must be a list of whole numbers, e.g. [0, 1, 2]; got {value!r}")
    return tuple(values)


def _find_config(path, base_dir, where):
    candidates = [path] if os.path.isabs(path) else [os.path.join(base_dir, path), path]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise ConfigError(f"{where}: config file {path} not found (looked in {base_dir} and the working directory)")


def load_matrix(path):
    """Read a spec YAML (format in the module docstring)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"benchmark spec {path} does not exist; pass an existing YAML with --spec") from None
    except IsADirectoryError:
        raise ConfigError(f"benchmark spec {path} is a folder; pass a YAML file with --spec") from None
    except UnicodeDecodeError:
        raise ConfigError(f"benchmark spec {path} is not UTF-8 text (a binary file?); pass a YAML file with --spec"
                          ) from None
    except OSError as err:
        raise ConfigError(f"benchmark spec {path} cannot be read ({os.strerror(err.errno) if err.errno else err}); "
                          "pass a readable YAML file with --spec") from None
    except yaml.YAMLError:
        raise ConfigError(f"benchmark spec {path} is not valid YAML: fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"benchmark spec {path} must hold a mapping (project, seeds, opts, pairs, methods)")
    known = {"project", "seeds", "opts", "pairs", "methods", "paired", "baseline", "launcher", "slurm"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"benchmark spec {path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    methods = data.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(f"benchmark spec {path}: 'methods' must map row labels to config files")
    base_dir = os.path.dirname(os.path.abspath(path))
    pairs = data.get("pairs") or {None: []}
    if not isinstance(pairs, dict):
        raise ConfigError(f"benchmark spec {path}: 'pairs' must map column labels to KEY VALUE overrides")
    common = _opts_list(data.get("opts"), f"benchmark spec {path} opts")
    def method_cells(item):
        label, entry = item
        where = f"benchmark spec {path}, method {label!r}"
        entry = {"cfg": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("cfg"), str):
            raise ConfigError(f"{where} needs a config file: `{label}: file.yaml` or `{label}: {{cfg: file.yaml}}`")
        extra = sorted(set(entry) - {"cfg", "opts", "seeds", "role"})
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r}; allowed: cfg, opts, seeds, role")
        role = entry.get("role", STUDENT_ROLE)
        if role not in (STUDENT_ROLE, TEACHER_ROLE):
            raise ConfigError(f"{where}: role is {role!r}; choose student or teacher")
        config = _find_config(entry["cfg"], base_dir, where)
        opts = _opts_list(entry.get("opts"), where + " opts")
        seeds = _seeds(entry.get("seeds"), where + " seeds")
        found = []
        for pair, pair_opts in pairs.items():
            pair_opts = _opts_list(pair_opts, f"benchmark spec {path}, pair {pair!r}")
            label_pair = pair if pair is not None else cfg_labels(load_cfg(config, common + pair_opts + opts))[1]
            found.append(Cell(str(label), str(label_pair), config, tuple(pair_opts + opts), seeds, role))
        return found

    cells = [cell for found in each(methods.items(), method_cells) for cell in found]
    if None in pairs:
        cells = _join_teacher_columns(cells, common)
    paired, baseline = data.get("paired", False), data.get("baseline")
    if not isinstance(paired, bool):
        raise ConfigError(f"benchmark spec {path}: paired is {paired!r}; write true or false")
    methods = _unique(c.method for c in cells if c.role != TEACHER_ROLE)
    if baseline is not None and find_method(methods, str(baseline)) is None:
        raise ConfigError(f"benchmark spec {path}: baseline {baseline!r} is not one of its methods "
                          f"({', '.join(methods)})")
    project = data.get("project")
    if project is not None:
        if isinstance(project, (dict, list, bool)):
            raise ConfigError(f"benchmark spec {path}: project must be a folder name, e.g. project: my_benchmark")
        project = str(project)
        check_project(project, f"benchmark spec {path}: project", "the spec's project:")
    return Matrix(project=str(project or os.path.splitext(os.path.basename(path))[0]),
                  seeds=list(_seeds(data.get("seeds", [0]), f"benchmark spec {path} seeds")),
                  cells=cells, opts=common, paired=paired,
                  baseline=None if baseline is None else find_method(methods, str(baseline)),
                  launcher=_launcher(data.get("launcher"), path), slurm=_mapping(data.get("slurm"), path, "slurm"))


def _mapping(value, path, key):
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"benchmark spec {path}: {key} must be a mapping, e.g. {key}: {{partition: gpu}}")
    return dict(value or {})


def _launcher(value, path):
    """The spec's `launcher:` as {"type": ..., "jobs": ...}; a bare name is the type."""
    launcher = {"type": value} if isinstance(value, str) else _mapping(value, path, "launcher")
    extra = sorted(set(launcher) - {"type", "jobs"})
    if extra:
        raise ConfigError(f"benchmark spec {path}: launcher has unknown key {extra[0]!r}; allowed: type, jobs")
    if launcher.get("type", "local") not in ("local", "slurm"):
        raise ConfigError(f"benchmark spec {path}: launcher type is {launcher['type']!r}; choose local or slurm")
    jobs = launcher.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"benchmark spec {path}: launcher jobs is {jobs!r}; write a whole number >= 1")
    return launcher


def _join_teacher_columns(cells, common):
    """Without `pairs`, columns come from the configs, and a teacher-role method (whose config
    names the teacher as student) joins every column whose teacher is its architecture."""
    def teacher_arch(cell):
        return load_cfg(cell.config, common + list(cell.opts)).DISTILLER.TEACHER

    teacher_of = {c.pair: teacher_arch(c) for c in cells if c.role != TEACHER_ROLE}
    joined = []
    for cell in cells:
        if cell.role == TEACHER_ROLE:
            arch = teacher_arch(cell)
            joined += [replace(cell, pair=p) for p in teacher_of if teacher_of[p] == arch] or [cell]
        else:
            joined.append(cell)
    return joined


def matrix_from_configs(paths, seeds, project, opts=()):
    """One cell per config file, labelled from its DISTILLER section."""
    cells = each(paths, lambda path: Cell(*cfg_labels(load_cfg(path, list(opts))), path))
    return Matrix(project=project, seeds=list(seeds), cells=cells, opts=list(opts))


def stack_sections(path):
    """A config file's method sections (everything but the run's own sections) as KEY VALUE opts."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    opts = []

    def flatten(prefix, node):
        for key, value in node.items():
            if isinstance(value, dict):
                flatten(f"{prefix}{key}.", value)
            else:
                opts.extend([f"{prefix}{key}", value])

    flatten("", {k: v for k, v in data.items() if isinstance(v, dict) and k not in RUN_SECTIONS})
    return opts


def config_for(configs_dir, dataset, method, pair):
    """(config path, extra overrides) of `method` on `pair` in the config tree:
    <configs_dir>/<dataset>/<method>/<pair>.yaml. NONE (vanilla) uses vanilla/<pair>.yaml when it
    exists, else the pair's KD recipe with DISTILLER.TYPE NONE (same student, solver and data).
    ConfigError when there is none."""
    root = os.path.join(configs_dir, dataset)
    vanilla = method.upper() in ("NONE", "VANILLA")
    candidates = [("vanilla", []), ("kd", ["DISTILLER.TYPE", "NONE"])] if vanilla else [(method.lower(), [])]
    for folder, extra in candidates:
        path = os.path.join(root, folder, f"{pair}.yaml")
        if os.path.isfile(path):
            return path, extra
    have = sorted(os.listdir(root)) if os.path.isdir(root) else []
    raise ConfigError(f"no config for method {method} and pair {pair}: "
                      f"{os.path.join(root, candidates[0][0], pair + '.yaml')} does not exist "
                      f"(method folders there: {', '.join(have) or 'none'}); pass --cfg files instead")


def matrix_from_names(methods, pairs, seeds, project, dataset="cifar100", configs_dir="configs", opts=()):
    """Cells for methods x pairs from the config tree; "A+B" stacks B onto A (module docstring)."""
    def cell(item):
        method, pair = item
        base, *stacked = method.split("+")
        config, extra = config_for(configs_dir, dataset, base, pair)
        if stacked:
            extra = extra + ["DISTILLER.STACK", list(stacked)]
            for name in stacked:
                try:
                    extra += stack_sections(config_for(configs_dir, dataset, name, pair)[0])
                except ConfigError:
                    pass  # the stacked method has no config for this pair: its defaults apply
        return Cell(method, pair, config, tuple(extra))

    cells = each([(method, pair) for method in methods for pair in pairs], cell)
    return Matrix(project=project, seeds=list(seeds), cells=cells, opts=list(opts))


# ---------------------------------------------------------------- from a Matrix to runs
def _folder(cfg):
    return os.path.join(cfg.LOG.PREFIX, cfg.EXPERIMENT.PROJECT, cfg.EXPERIMENT.NAME)


def _run(matrix, cell, seed, extra=()):
    name = f"{slug(cell.method)},{slug(cell.pair)},seed{seed}"
    opts = list(matrix.opts) + list(cell.opts) + list(extra) + [
        "SEED", seed, "EXPERIMENT.PROJECT", matrix.project, "EXPERIMENT.NAME", name]
    return Run(cell.method, cell.pair, seed, cell.role, cell.config, opts, _folder(load_cfg(cell.config, opts)))


def teacher_run(matrix, cell):
    """The run that trains the teacher of `cell.pair`: the cell's config with STUDENT := TEACHER."""
    probe = load_cfg(cell.config, list(matrix.opts) + list(cell.opts))
    if probe.DISTILLER.TYPE != "NONE":
        raise ConfigError(f"benchmark method {cell.method!r} has role teacher but its config uses DISTILLER.TYPE "
                          f"{probe.DISTILLER.TYPE}; teachers are trained with NONE")
    seeds = cell.seeds or matrix.seeds[:1]  # one teacher per pair unless the spec asks for more
    return [_run(matrix, cell, s, ["DISTILLER.STUDENT", probe.DISTILLER.TEACHER]) for s in seeds]


def check_project(project, what="benchmark project", where="--project (or the spec's project:)"):
    """A benchmark's project is one folder name under LOG.PREFIX: ConfigError otherwise."""
    why = path_component_problem(project)
    if why:
        raise ConfigError(f"{what} is {project!r}: {why}; set {where} to a plain folder name such as my_benchmark")


def plan_runs(matrix):
    """Every run, in execution order: teachers first, then seed by seed (so that a partial
    benchmark already has whole tables), pair by pair, method by method."""
    check_project(matrix.project)
    runs, teacher_weights = [], {}
    for cell in matrix.cells:
        if cell.role == TEACHER_ROLE:
            if cell.pair in teacher_weights:
                raise ConfigError(f"benchmark pair {cell.pair!r} has two teacher-role methods; keep one")
            trained = teacher_run(matrix, cell)
            runs += trained
            teacher_weights[cell.pair] = os.path.join(trained[0].folder, "student_best")
    students = [c for c in matrix.cells if c.role != TEACHER_ROLE]
    for seed in _unique([s for c in students for s in (c.seeds or matrix.seeds)]):
        for pair in matrix.pairs:
            for cell in students:
                if cell.pair == pair and seed in (cell.seeds or matrix.seeds):
                    weights = teacher_weights.get(pair)
                    distils = load_cfg(cell.config, list(matrix.opts) + list(cell.opts)).DISTILLER.TYPE != "NONE"
                    extra = ["DISTILLER.TEACHER_WEIGHTS", weights] if weights and distils else []
                    runs.append(_run(matrix, cell, seed, extra))
    folders = [r.folder for r in runs]
    clash = next((f for f in folders if folders.count(f) > 1), None)
    if clash:
        raise ConfigError(f"two benchmark runs would share the folder {clash}; "
                          "give their methods/pairs distinct labels")
    return runs
