"""Wall time of K students trained as one paired group (one data stream, one teacher pass per
batch) against the same K students trained one after another, in one invocation.

    python tools/bench_paired.py --root /tmp/c100 [--methods NONE KD DKD SLD] [--pair res32x4_res8x4] \\
        [--train-subset 1000] [--test-subset 500] [--epochs 1] [--workers 0] [--threads N] \\
        [--teacher-weights FILE] [--device cpu] [--out DIR] [--json FILE] [--overlap] [KEY VALUE ...]

Each method's config is the config tree's configs/<dataset>/<method>/<pair>.yaml (NONE: the
vanilla student, see benchmark/spec.py `config_for`), with the data, subset, epochs and teacher
overridden alike for both modes. Without --teacher-weights a randomly initialised teacher is
saved to the output folder and used (timing does not depend on the teacher's accuracy). The
dataset is loaded once before timing starts (its decode cache), and an untimed paired run on
two batches warms up imports and kernels, so that neither mode pays for one-time costs.
Prints a table (solo seconds per run and of its teacher's forwards, best top-1 in both modes,
whether each student's final weights are bit-identical in both modes, and the ratio the group
would reach if sharing the teacher pass were all it saved) and writes the numbers, with the
machine, as JSON.
Exit codes: 0 done, 2 bad input (one `error: ...` line).
"""
import json
import os
import platform
import sys

from ..errors import UserError
from . import MAX_THREADS, add_config_arguments, new_parser, plugin_opts, print_error


def parse_args(argv=None, name="bench_paired", description="paired vs solo training wall time", **defaults):
    """The bench's arguments; `defaults` replace some (tools/bench_replay.py shares them, as `name`)."""
    p = new_parser(name, description)
    p.add_argument("--root", required=True, help="dataset folder (DATASET.ROOT), e.g. one holding cifar100/")
    p.add_argument("--methods", nargs="+", default=["NONE", "KD", "DKD", "SLD"], help="registered method names")
    p.add_argument("--pair", default="res32x4_res8x4", help="config name of the teacher/student pair")
    p.add_argument("--dataset", default="cifar100", help="the config tree's dataset folder")
    p.add_argument("--configs-dir", default="configs", help="root of the config tree")
    p.add_argument("--train-subset", type=int, default=1000, help="training images (stratified; 0 = all)")
    p.add_argument("--test-subset", type=int, default=500, help="test images (stratified; 0 = all)")
    p.add_argument("--epochs", type=int, default=1, help="SOLVER.EPOCHS of every run")
    p.add_argument("--workers", type=int, default=0, help="DATASET.NUM_WORKERS")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="DEVICE: auto, cpu, cuda or cuda:N")
    p.add_argument("--teacher-weights", help="teacher checkpoint (default: a random teacher, saved to --out)")
    p.add_argument("--out", default="output/bench_paired", help="LOG.PREFIX of the runs")
    p.add_argument("--json", help="write the results here (default: <out>/bench_paired.json)")
    p.add_argument("--overlap", action="store_true", help="paired: one CUDA stream per student")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure N times, alternating which mode goes first; the ratio of the minima is reported")
    add_config_arguments(p, "KEY VALUE overrides for every run")
    p.set_defaults(**defaults)
    args = p.parse_args(argv)
    if min(args.train_subset, args.test_subset, args.workers, args.threads) < 0 or min(args.epochs, args.repeat) < 1:
        p.error("--train-subset/--test-subset/--workers/--threads must be >= 0, --epochs and --repeat >= 1")
    if args.threads > MAX_THREADS:
        p.error(f"--threads is {args.threads}; use at most {MAX_THREADS}")
    try:
        args.opts = plugin_opts(args) + args.opts  # every run's config lists them (PLUGINS)
    except UserError as err:
        p.error(str(err))
    return args


def random_teacher(cfg, num_classes, out):
    """Save a seeded random teacher of cfg's architecture as {"model": state dict}; return its path."""
    import torch

    from ..distillers.shapes import input_size_for
    from ..models import create_model, model_settings

    path = os.path.join(out, f"random_{cfg.DISTILLER.TEACHER.replace(':', '_')}.pth")
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    settings = model_settings(cfg, "TEACHER", input_size_for(cfg) or (32, 32))
    torch.save({"model": create_model(cfg.DISTILLER.TEACHER, num_classes, cfg.DATASET.TYPE, **settings).state_dict()},
               path)
    return path


def build_cfgs(args, extra_opts=()):
    """(labels, solo configs, paired configs): the same runs in projects `solo` and `paired`."""
    from ..benchmark.spec import config_for
    from ..config import load_cfg

    common = ["DATASET.ROOT", args.root, "DATASET.TRAIN_SUBSET", args.train_subset,
              "DATASET.TEST_SUBSET", args.test_subset, "DATASET.NUM_WORKERS", args.workers,
              "SOLVER.EPOCHS", args.epochs, "DEVICE", args.device, "LOG.PREFIX", args.out, "LOG.QUIET", True]
    found = [config_for(args.configs_dir, args.dataset, m, args.pair) for m in args.methods]
    labels = ["Vanilla" if m.upper() in ("NONE", "VANILLA") else m for m in args.methods]
    modes = {}
    for mode in ("solo", "paired"):
        modes[mode] = [load_cfg(path, extra + common + ["EXPERIMENT.PROJECT", mode, "EXPERIMENT.NAME", label]
                                + list(extra_opts) + list(args.opts or []))
                       for (path, extra), label in zip(found, labels)]
    return labels, modes["solo"], modes["paired"]


def machine(device):
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "device": str(device)}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch

        from ..benchmark.paired_runs import format_speed, time_paired_vs_solo
        from ..data.sources import build_sources
        from ..engine.build import train_paired
        from ..engine.device import resolve_device

        if args.threads:
            torch.set_num_threads(args.threads)
        _, probe, _ = build_cfgs(args)
        classes = build_sources(probe[0])[2]  # also decodes/caches the dataset before any clock starts
        weights = args.teacher_weights or random_teacher(probe[0], len(classes), args.out)
        labels, solo, paired = build_cfgs(args, ["DISTILLER.TEACHER_WEIGHTS", weights])
        batch = solo[0].SOLVER.BATCH_SIZE
        _, warm, _ = build_cfgs(args, ["DISTILLER.TEACHER_WEIGHTS", weights, "EXPERIMENT.PROJECT", "warmup",
                                       "DATASET.TRAIN_SUBSET", 2 * batch, "DATASET.TEST_SUBSET", batch,
                                       "SOLVER.EPOCHS", 1])
        train_paired(warm, overwrite=True, overlap=args.overlap)
        device = resolve_device(solo[0].DEVICE)
        repeats = []
        for i in range(args.repeat):
            repeats.append(time_paired_vs_solo(
                solo, paired, labels, paired_first=i % 2 == 1,
                train_group=lambda cfgs, **kw: train_paired(cfgs, overlap=args.overlap, **kw)))
            print()
            for line in format_speed(repeats[-1]):
                print(line)
    except UserError as err:
        print_error(err)
        return 2
    best_solo, best_paired = min(r["solo_total_s"] for r in repeats), min(r["paired_s"] for r in repeats)
    result = {"repeats": repeats, "solo_total_min_s": best_solo, "paired_min_s": best_paired,
              "ratio_of_minima": best_solo / best_paired,
              "teacher_only_ratios": [r["teacher_only_ratio"] for r in repeats], "machine": machine(device), "teacher_weights": weights,
              "pair": args.pair, "methods": labels, "train_subset": args.train_subset,
              "test_subset": args.test_subset, "epochs": args.epochs, "workers": args.workers,
              "overlap": args.overlap, "opts": list(args.opts or [])}
    print(f"\nover {args.repeat} measurement(s): solo {best_solo:.1f} s, paired {best_paired:.1f} s (minima) -> "
          f"solo / paired = {result['ratio_of_minima']:.2f}x; saving only the repeated teacher passes would give "
          + "/".join(f"{r:.2f}x" for r in result["teacher_only_ratios"]))
    write_result(result, args.json or os.path.join(args.out, "bench_paired.json"))
    return 0


def write_result(result, path):
    """Print the machine line and write the result as JSON to `path`."""
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['threads']} torch threads, {m['device']}"
          + (f" ({m['gpu']})" if "gpu" in m else ""))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"json: {path}")


if __name__ == "__main__":
    sys.exit(main())
