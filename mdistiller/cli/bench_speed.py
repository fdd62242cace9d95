"""Speed of our SLD training path against the official code's structure, in one run.

    python tools/bench_speed.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml \
        [--root DIR_WITH_CIFAR100 | --synthetic 50000] [--device cpu|cuda] [--batches 20] \
        [--warmup 3] [--workers 2] [--threads N] [--amp bf16] [--[no-]channels-last] [--compile] \
        [--[no-]teacher-compile] \
        [--cuda-graph] [--epoch] [--profile] [--json OUT] [--plugin MODULE] [KEY VALUE ...]

Prints a table (two-view data pipeline images/s, train-step images/s, peak device memory,
optionally one full epoch) and writes the numbers as JSON. Without flags ours runs with what
a user gets: the config's defaults, `auto` settings resolved for the device (printed above the
table, marked "(auto)"); flags and KEY VALUE config overrides change them. `--profile` prints
where the fast data pipeline spends its time. See mdistiller/benchmark/speed.py;
`mdistiller-bench-speed` is the same program installed as a console script.
"""
import argparse
import json
import sys

import torch

from ..benchmark.speed import benchmark_settings, format_table, run_benchmark, synthetic_cifar
from ..config import MAX_NUM_WORKERS, load_cfg
from ..data import load_cifar100_arrays
from ..data.fast.bench import profile_fast_pipeline
from ..engine.device import configure_backends, resolve_device
from ..errors import UserError
from . import MAX_THREADS, add_config_arguments, new_parser, plugin_opts

MAX_SYNTHETIC = 200_000  # --synthetic: 4x CIFAR-100's training set, 600 MB of uint8 images


def parse_args(argv=None):
    p = new_parser("bench_speed", "speed of the SLD training path (reference vs ours)")
    p.add_argument("--cfg", default="configs/cifar100/sld/res32x4_res8x4.yaml", help="YAML config")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--root", help="CIFAR-100 folder (image-folder or cifar-100-python layout)")
    src.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random CIFAR-sized images instead")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--workers", type=int, default=2, help="PIL DataLoader workers = fast-path CPU threads")
    p.add_argument("--subset", type=int, default=0, help="use the first N training images (0 = all)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), help="mixed precision for ours (default: SOLVER.AMP)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last for ours (default: SOLVER.CHANNELS_LAST, auto resolved)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile student and teacher for ours (default: SOLVER.COMPILE)")
    p.add_argument("--teacher-compile", action=argparse.BooleanOptionalAction,
                   help="ours: the teacher compiled with freezing (default: DISTILLER.TEACHER_COMPILE, auto resolved)")
    p.add_argument("--cuda-graph", action="store_true", default=None,
                   help="ours: one CUDA graph replay per step (default: SOLVER.CUDA_GRAPH)")
    p.add_argument("--profile", action="store_true", help="also print where the fast data pipeline spends its time")
    p.add_argument("--epoch", action="store_true", help="also time one full training epoch of ours")
    p.add_argument("--only", choices=("data", "step"), help="run one section only")
    p.add_argument("--json", help="write the results here")
    add_config_arguments(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if min(args.batches - 1, args.warmup, args.workers, args.synthetic, args.subset, args.threads) < 0:
            raise UserError("--batches must be >= 1 and --warmup/--workers/--synthetic/--subset/--threads >= 0")
        if args.workers > MAX_NUM_WORKERS or args.threads > MAX_THREADS or args.synthetic > MAX_SYNTHETIC:
            raise UserError(f"--workers is at most {MAX_NUM_WORKERS}, --threads at most {MAX_THREADS} and --synthetic "
                            f"at most {MAX_SYNTHETIC} (random images held in memory)")
        plugins = plugin_opts(args)  # first: it takes a trailing --plugin out of args.opts
        cfg = load_cfg(args.cfg, plugins + args.opts)
        device = resolve_device(args.device)
        settings, auto = benchmark_settings(cfg, device, args.amp, args.channels_last, args.compile, args.cuda_graph,
                                            args.teacher_compile)
        if settings["cuda_graph"] and (device.type != "cuda" or settings["amp"] == "fp16" or settings["compile_"]):
            raise UserError(f"--cuda-graph needs --device cuda (got {device}) and neither --amp fp16 nor --compile")
        if args.threads:
            torch.set_num_threads(args.threads)
        configure_backends(device)
        if args.synthetic:
            images, labels = synthetic_cifar(args.synthetic, seed=cfg.SEED)
            source = f"synthetic ({args.synthetic} random images)"
        else:
            root = args.root or cfg.DATASET.ROOT
            images, labels, _ = load_cifar100_arrays(root, "train", cfg.DATASET.CACHE_DIR)
            source = f"CIFAR-100 train at {root}"
        if args.subset:
            images, labels = images[:args.subset], labels[:args.subset]
        sections = (args.only,) if args.only else ("data", "step")
        result = run_benchmark(cfg, images, labels, device, args.batches, args.warmup, args.workers,
                               full_epoch=args.epoch, sections=sections, **settings)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["source"], result["auto"] = source, auto
    print(f"data: {source}")
    for line in format_table(result):
        print(line)
    if args.profile:
        # The same pipeline as the data row (NCHW batches; a layout change is the step's).
        result["profile"] = profile_fast_pipeline(images, labels, cfg.SOLVER.BATCH_SIZE, device=str(device),
                                                  seed=cfg.SEED)
        for line in result["profile"]["lines"]:
            print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
