"""Speed of our SLD training path against the official code's structure, in one run.

    python tools/bench_speed.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml \
        [--root DIR_WITH_CIFAR100 | --synthetic 50000] [--device cpu|cuda] [--batches 20] \
        [--warmup 3] [--workers 2] [--amp bf16] [--channels-last] [--compile] [--cuda-graph] [--epoch] [--json OUT]

Prints a table (two-view data pipeline images/s, train-step images/s, peak device memory,
optionally one full epoch) and writes the numbers as JSON. See mdistiller/benchmark/speed.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mdistiller.benchmark.speed import format_table, run_benchmark, synthetic_cifar  # noqa: E402
from mdistiller.config import load_cfg  # noqa: E402
from mdistiller.data import load_cifar100_arrays  # noqa: E402
from mdistiller.engine.device import configure_backends, resolve_device  # noqa: E402
from mdistiller.errors import UserError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="speed of the SLD training path (reference vs ours)")
    p.add_argument("--cfg", default="configs/cifar100/sld/res32x4_res8x4.yaml", help="YAML config")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--root", help="CIFAR-100 folder (image-folder or cifar-100-python layout)")
    src.add_argument("--synthetic", type=int, default=0, metavar="N", help="N random CIFAR-sized images instead")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--workers", type=int, default=2, help="PIL DataLoader workers = fast-path CPU threads")
    p.add_argument("--subset", type=int, default=0, help="use the first N training images (0 = all)")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="mixed precision for ours")
    p.add_argument("--channels-last", action="store_true", help="channels_last for ours")
    p.add_argument("--compile", action="store_true", help="torch.compile student and teacher for ours")
    p.add_argument("--cuda-graph", action="store_true", help="ours: one CUDA graph replay per step (SOLVER.CUDA_GRAPH)")
    p.add_argument("--epoch", action="store_true", help="also time one full training epoch of ours")
    p.add_argument("--only", choices=("data", "step"), help="run one section only")
    p.add_argument("--json", help="write the results here")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.batches < 1 or args.warmup < 0 or args.workers < 0 or args.synthetic < 0 or args.subset < 0:
            raise UserError("--batches must be >= 1 and --warmup/--workers/--synthetic/--subset >= 0")
        cfg = load_cfg(args.cfg, args.opts)
        device = resolve_device(args.device)
        if args.cuda_graph and (device.type != "cuda" or args.amp == "fp16" or args.compile):
            raise UserError(f"--cuda-graph needs --device cuda (got {device}) and neither --amp fp16 nor --compile")
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
                               amp=args.amp, channels_last=args.channels_last, compile_=args.compile,
                               full_epoch=args.epoch, sections=sections, cuda_graph=args.cuda_graph)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["source"] = source
    print(f"data: {source}")
    for line in format_table(result):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
