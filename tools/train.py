"""Train a student with a distiller, or a teacher/baseline with DISTILLER.TYPE NONE.

    python tools/train.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 4 tools/train.py --cfg ...        (DistributedDataParallel)

Outputs go to <LOG.PREFIX>/<EXPERIMENT.PROJECT>/<EXPERIMENT.NAME or TAG>/. A folder that already
holds checkpoints is only reused with --resume (continue, same config) or --overwrite (start
over; the old outputs are moved into <run folder>/replaced/N/, never deleted).
Bad input (config, paths, checkpoints) prints one `error: ...` line and exits with code 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from mdistiller.config import load_cfg  # noqa: E402
from mdistiller.errors import UserError  # noqa: E402

FLAGS = ("--resume", "--overwrite", "--quiet")


def parse_args(argv=None):
    parser = argparse.ArgumentParser("training for knowledge distillation.")
    parser.add_argument("--cfg", type=str, default="", help="YAML config (mdistiller format)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its `latest` checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start over: move the run folder's old outputs into replaced/N/ first")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, one line per epoch (LOG.QUIET)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    # argparse hands everything after the first override to `opts`; flags written there count too.
    opts = []
    for item in args.opts or []:
        if item in FLAGS:
            setattr(args, item[2:], True)
        else:
            opts.append(item)
    args.opts = opts
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_cfg(args.cfg or None, args.opts + (["LOG.QUIET", "True"] if args.quiet else []))
        from mdistiller.engine.build import train  # after the config: bad input fails fast

        train(cfg, resume=args.resume, overwrite=args.overwrite)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue the run with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
