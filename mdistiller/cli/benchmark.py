"""Benchmark tables: run methods x teacher/student pairs x seeds, then tabulate the output folders.

    # a spec listing the runs (format: mdistiller/benchmark/spec.py), e.g. the demo's
    python tools/benchmark.py --spec configs/demo/benchmark.yaml [--seeds 0 1 2]
    # config files, one table cell each
    python tools/benchmark.py --cfg configs/cifar100/kd/res56_res20.yaml configs/cifar100/sld/res56_res20.yaml
    # names from the config tree: configs/<dataset>/<method>/<pair>.yaml ("A+B" stacks B onto A)
    python tools/benchmark.py --methods KD DKD SLD --pairs res56_res20 res32x4_res8x4 --seeds 0 1 2
    # tables only, from folders already there (also mdistiller's own output folders)
    python tools/benchmark.py --report-only --runs-dir output/cifar100_baselines
    # paired: each (pair, seed)'s students train together on one data stream, one teacher pass
    # per batch (mdistiller/benchmark/paired_runs.py); adds paired.md/json: method minus baseline per seed
    python tools/benchmark.py --methods NONE KD DKD SLD --pairs res32x4_res8x4 --seeds 0 1 2 --paired
    # reproduction report: the papers' published numbers beside ours (paper.md; mdistiller/benchmark/paper.py)
    python tools/benchmark.py --report-only --paper --methods KD DKD MLKD SLD --pairs res32x4_res8x4 --seeds 0 1 2
    # many runs at once: on this machine (one GPU, or cores/N threads, per run), or on a Slurm cluster
    python tools/benchmark.py --spec bench.yaml --launcher local --jobs 8
    python tools/benchmark.py --spec bench.yaml --launcher slurm --slurm-partition gpu --slurm-gpus-per-run 1
    python tools/benchmark.py --spec bench.yaml --status     # done/running/pending/failed, job ids, logs

Before the first run every input of the matrix is checked (mdistiller/benchmark/matrix_checks.py) and
all problems are printed at once, one `error: ...` line each. Runs that are complete are skipped
and interrupted ones resumed, so the same command can be repeated or extended (after Ctrl-C too);
--dry-run lists what would run. A run whose folder was trained with another config, or whose
teacher's weights changed since (stale), is refused unless --overwrite is given, which moves its
old outputs into <run folder>/replaced/N/ (nothing is deleted). Results files whose cells would
lose their numbers are not replaced without --overwrite (the old ones go to <out>/replaced/N/). A run another launcher is training (its
`<run folder>.lock`) is left to it (mdistiller/benchmark/launch*.py). Results: results.md (papers' layout),
results.csv (one row per run), results.json and results.png in --out (default: the project's
output folder). Trailing KEY VALUE pairs override every run's config, as for tools/train.py.
Exit codes: 0 done, 1 some runs failed, 2 bad input (`error: ...` lines), 130 interrupted (Ctrl-C).
"""
import os
import sys

from ..errors import ConfigError, OutputError, UserError
from . import add_config_arguments, new_parser, plugin_opts


def parse_args(argv=None):
    p = new_parser("benchmark", "Run a benchmark matrix and build its tables.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--spec", help="benchmark spec YAML (methods, pairs, seeds, project)")
    what.add_argument("--cfg", nargs="+", metavar="YAML", help="config files, one cell each")
    what.add_argument("--methods", nargs="+", metavar="NAME", help="methods (registered names, A+B stacks)")
    what.add_argument("--runs-dir", nargs="+", metavar="DIR",
                      help="tabulate existing run folders (implies --report-only)")
    p.add_argument("--pairs", nargs="+", metavar="PAIR", help="with --methods: config names, e.g. res32x4_res8x4")
    p.add_argument("--dataset", default="cifar100", help="with --methods: the config tree's dataset folder")
    p.add_argument("--configs-dir", default="configs", help="with --methods: root of the config tree")
    p.add_argument("--seeds", nargs="+", metavar="N", help="seeds (default: the spec's, else 0)")
    p.add_argument("--project", help="EXPERIMENT.PROJECT of the runs (default: the spec's, else 'benchmark')")
    p.add_argument("--out", help="where results.* go (default: <LOG.PREFIX>/<project>, or the --runs-dir)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what would happen; train nothing")
    p.add_argument("--report-only", action="store_true", help="train nothing; tables from the folders present")
    p.add_argument("--quiet", action="store_true", help="no progress bars (LOG.QUIET)")
    p.add_argument("--overwrite", action="store_true",
                   help="runs whose folder was trained with another config start over; their old outputs are "
                        "moved into <run folder>/replaced/N/ (without it such runs are refused)")
    p.add_argument("--no-chart", action="store_true", help="skip results.png")
    p.add_argument("--paper", action="store_true", help="also paper.md: the published numbers beside ours, with "
                                                        "deltas (mdistiller/benchmark/paper_results.json)")
    p.add_argument("--paired", action="store_true",
                   help="train each (pair, seed)'s students together (one stream, one teacher pass) and "
                        "tabulate method minus baseline per seed (paired.md/json)")
    p.add_argument("--baseline", help="the row differences are taken against: results.md's confidence intervals "
                                      "(default: the first distiller row, e.g. KD) and, with --paired, paired.md "
                                      "(default there: the vanilla student, else the first method)")
    add_launch_args(p)
    add_config_arguments(p, "KEY VALUE overrides for every run")
    args = p.parse_args(argv)
    split_seeds(p, args)
    # argparse hands everything after the first override to `opts`; these flags count there too
    args.opts = list(args.opts or [])
    for flag in ("--overwrite", "--quiet", "--dry-run", "--no-chart"):
        if flag in args.opts:
            args.opts.remove(flag)
            setattr(args, flag[2:].replace("-", "_"), True)
    if args.methods and not args.pairs:
        p.error("--methods needs --pairs")
    return args


def add_launch_args(p):
    p.add_argument("--launcher", choices=["local", "slurm"], help="where runs train (default: the spec's, else local)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="with --launcher local: runs at once (default 1: in this process); each gets cores/N "
                        "CPU threads, so CPU results can differ in the last digits from a run with all "
                        "threads (float sums add in another order); each run's start line prints its threads")
    p.add_argument("--no-wait", action="store_true", help="with --launcher slurm: return after submitting")
    p.add_argument("--status", action="store_true", help="list each run: done/running/pending/failed, job id, log")
    slurm = p.add_argument_group("Slurm (--launcher slurm; defaults from the spec's slurm section)")
    for name, kind, text in [("partition", str, "partition"), ("time", int, "minutes per job"),
                             ("gpus-per-run", int, "GPUs per run (DDP inside the job)"),
                             ("tasks-per-run", int, "processes per run (default: one per GPU)"),
                             ("cpus-per-task", int, "CPUs per process"), ("mem", str, "memory per job, e.g. 32G"),
                             ("account", str, "account"), ("qos", str, "quality of service"),
                             ("constraint", str, "node features")]:
        slurm.add_argument(f"--slurm-{name}", type=kind, metavar="V", help=text)


def launch_settings(args, matrix):
    """(launcher, jobs, SlurmOptions): the flags over the spec's launcher/slurm sections."""
    from ..benchmark.launch_slurm import slurm_options

    launcher = args.launcher or matrix.launcher.get("type", "local")
    jobs = args.jobs if args.jobs is not None else matrix.launcher.get("jobs", 1)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: pass a whole number >= 1")
    section = dict(matrix.slurm)
    for key, value in vars(args).items():
        if key.startswith("slurm_") and value is not None:
            section[key[len("slurm_"):]] = value
    return launcher, jobs, slurm_options(section)


def split_seeds(parser, args):
    """`--seeds 0 1 SOLVER.EPOCHS 5`: argparse hands the overrides to --seeds too; the numbers
    are the seeds and the rest goes back to the overrides."""
    if not args.seeds:
        return
    items = list(args.seeds)
    count = next((i for i, item in enumerate(items) if not item.lstrip("-").isdigit()), len(items))
    if count == 0:
        parser.error(f"--seeds expects whole numbers, got {items[0]!r}")
    args.seeds = [int(item) for item in items[:count]]
    args.opts = items[count:] + list(args.opts or [])


def build_matrix(args):
    from ..benchmark import load_matrix, matrix_from_configs, matrix_from_names

    opts = plugin_opts(args) + list(args.opts or []) + (["LOG.QUIET", "True"] if args.quiet else [])
    if args.spec:
        matrix = load_matrix(args.spec)
        matrix.opts += opts
        matrix.project = args.project or matrix.project
        matrix.seeds = args.seeds or matrix.seeds
        return matrix
    seeds, project = args.seeds or [0], args.project or "benchmark"
    if args.cfg:
        return matrix_from_configs(args.cfg, seeds, project, opts)
    return matrix_from_names(args.methods, args.pairs, seeds, project, args.dataset, args.configs_dir, opts)


def discovered_results(dirs):
    from ..benchmark import find_run_folders, read_run

    results = []
    for root in dirs:
        if not os.path.isdir(root):
            raise ConfigError(f"--runs-dir {root} is not a folder; pass the output folder of a project or of a run")
        folders = find_run_folders(root)
        if not folders:
            raise ConfigError(f"--runs-dir {root} holds no run folders (none has worklog.txt or checkpoints)")
        results += [read_run(f) for f in folders]
    return results


def report(results, out_dir, methods=None, pairs=None, chart=True, replace=False, baseline=None):
    from ..benchmark import accuracy_table, write_report
    from ..benchmark.differences import cell_differences, markdown_section

    for r in results:  # first: a refusal to replace older results refers to them
        if r.problems:
            print(f"problem: {r.folder}: {'; '.join(r.problems)}")
    summary, paths = write_report(results, out_dir, methods, pairs, chart=chart, replace=replace, baseline=baseline)
    print()
    print(accuracy_table(summary))
    print()
    print(markdown_section(summary, *cell_differences(results, summary, baseline)))
    if "replaced" in paths:
        print(f"moved the previous results.* to {paths['replaced']}")
    print("results: " + ", ".join(paths[k] for k in ("md", "csv", "json", "differences", "chart") if k in paths))
    if "chart_skipped" in paths:
        print(paths["chart_skipped"])
    return summary


def paired_report(results, out_dir, baseline=None, methods=None, pairs=None, replace=False):
    from ..benchmark.paired_runs import paired_table, write_paired_report

    diffs, paths = write_paired_report(results, out_dir, baseline, methods, pairs, replace=replace)
    print()
    print(paired_table(diffs))
    if "replaced" in paths:
        print(f"moved the previous paired.* to {paths['replaced']}")
    print("paired: " + ", ".join(paths[k] for k in ("md", "json")))


def print_status(runs, caches=()):
    """Each run's state, then each teacher cache's (benchmark/cache_jobs.py)."""
    from ..benchmark.cache_jobs import cache_state_line
    from ..benchmark.launch import format_state
    from ..benchmark.launch_slurm import slurm_states

    states = slurm_states(runs)
    for state in states:
        print(format_state(state))
    for unit in caches:
        print(cache_state_line(unit))
    tally = {}
    for state in states:
        tally[state.state] = tally.get(state.state, 0) + 1
    print(", ".join(f"{n} {name}" for name, n in tally.items()))
    return 0


def paper_report(results, out_dir, summary, baseline=None):
    from ..benchmark.differences import choose_baseline
    from ..benchmark.paper import write_paper_report

    text, path = write_paper_report(results, out_dir, baseline=choose_baseline(summary, baseline))
    print()
    print(text)
    print(f"paper: {path}")


def refused_note(counts):
    """The summary's note on runs refused for a changed config or teacher (runner.decide)."""
    refused = counts.get("refused")
    return f", {refused} refused (config or teacher changed; see --overwrite)" if refused else ""


INTERRUPTED = ("interrupted; rerun the same command to continue: complete runs are skipped and an interrupted run "
               "resumes after its last committed epoch")


def main(argv=None):
    args = parse_args(argv)
    try:
        return from_folders(args) if args.runs_dir else from_matrix(args)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except UserError as err:
        for line in getattr(err, "problems", None) or [str(err)]:  # preflight.MatrixProblems: one line each
            print(f"error: {line}", file=sys.stderr)
        return 2


def from_folders(args):
    """--runs-dir: tables of the folders as they are."""
    from ..benchmark.paired_runs import choose_baseline
    from ..benchmark.report_checks import output_problem

    results = discovered_results(args.runs_dir)
    out = args.out or args.runs_dir[0]
    problem = output_problem(out)
    if problem:
        raise OutputError(problem)
    if args.paired:  # before any table is written
        choose_baseline(list(dict.fromkeys(r.method for r in results if r.role != "teacher")), args.baseline)
    summary = report(results, out, chart=not args.no_chart, replace=args.overwrite, baseline=args.baseline)
    if args.paired:
        paired_report(results, out, args.baseline, replace=args.overwrite)
    if args.paper:
        paper_report(results, out, summary, args.baseline)
    return 0


def from_matrix(args):
    """A matrix (--spec, --cfg, --methods): checked before anything runs (benchmark/matrix_checks.py),
    then trained (or listed, or only tabulated) and reported."""
    from ..benchmark import collect_matrix
    from ..benchmark.matrix_checks import check_matrix, tables_folder
    from ..benchmark.report_checks import report_only_refusal

    matrix = build_matrix(args)
    paired = args.paired or matrix.paired  # the flag or the spec's `paired: true`
    baseline = args.baseline or matrix.baseline
    if args.status:
        from ..benchmark.cache_jobs import cache_units_of
        from ..benchmark.launch import plan_units

        runs, stages = plan_units(matrix, paired)
        return print_status(runs, cache_units_of(stages))
    launcher, jobs, slurm = launch_settings(args, matrix)
    training = not args.report_only and not args.dry_run  # a dry run also plans where data or teachers are not
    runs = check_matrix(matrix, args.out, paired, baseline, training=training, data=launcher != "slurm")
    out = tables_folder(runs, args.out)
    failures = []
    if args.dry_run and not args.report_only:
        return dry_run(matrix, paired, args.overwrite)
    if training:
        failures = train_matrix(args, matrix, paired, launcher, jobs, slurm)
        if failures is None:  # submitted to Slurm without waiting
            return 0
    results = collect_matrix(runs)
    if args.report_only:
        refusal = report_only_refusal(results, os.path.dirname(os.path.normpath(runs[0].folder)))
        if refusal:
            raise ConfigError(refusal)
    summary = report(results, out, matrix.methods, matrix.pairs, chart=not args.no_chart, replace=args.overwrite,
                     baseline=baseline)
    if paired:
        paired_report(results, out, baseline, matrix.methods, matrix.pairs, replace=args.overwrite)
    if args.paper:
        paper_report(results, out, summary, baseline)
    return 1 if failures else 0


def dry_run(matrix, paired, overwrite):
    from ..benchmark import run_matrix
    from ..benchmark.paired_runs import run_paired_matrix

    _, counts, _ = (run_paired_matrix if paired else run_matrix)(matrix, dry_run=True, overwrite=overwrite)
    print(f"{counts['start']} to start, {counts['resume']} to resume, {counts['skip']} complete{refused_note(counts)}")
    return 0


def train_matrix(args, matrix, paired, launcher, jobs, slurm):
    """Train with the chosen launcher and print the tally; the [(run, message)] of failed runs,
    or None when the runs were submitted to Slurm without waiting."""
    from ..benchmark.dispatch import launch_matrix

    _, counts, failures = launch_matrix(matrix, paired, launcher, jobs, slurm, wait=not args.no_wait,
                                        overwrite=args.overwrite)
    if launcher == "slurm" and args.no_wait:
        return None
    busy = f", {counts['busy']} left to other launchers" if counts.get("busy") else ""
    refused = counts.get("refused", 0)  # in `failures` too, but never started
    print(f"ran {counts['start'] + counts['resume'] - len(failures) + refused}, skipped {counts['skip']} "
          f"complete{busy}, {len(failures)} failed{refused_note(counts)}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
