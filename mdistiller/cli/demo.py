"""The out-of-the-box demo (`make demo`): train a teacher, distil a student with Vanilla, KD, DKD,
MLKD and SLD, and print the benchmark table — on a laptop CPU in a few minutes, no download.

    python tools/demo.py                      # embedded digits (configs/demo/benchmark.yaml)
    python tools/demo.py --seeds 0 1 2        # mean ± std over three seeds (about 3x longer)
    python tools/demo.py --cifar [ROOT]       # the same on a CIFAR-100 subset (ROOT: DATASET.ROOT, "data")

It is tools/benchmark.py on a fixed spec: runs go to output/demo/ (output/demo_cifar100/), the
tables to results.{md,csv,json,png} there, and a finished run is reused, so running the demo
again only prints the table (delete the folder to start over). Extra KEY VALUE pairs override
every run's config (e.g. DEVICE cpu, LOG.PREFIX /tmp/out).

--cifar ROOT (configs/demo/cifar100.yaml): resnet56 -> resnet20 with the CIFAR-100 configs'
recipes, shrunk to 5,000 training images (50 per class), 1,000 test images and 5 epochs with a
cosine LR, teacher included. It exercises the real pipeline on real data (about 10 minutes on 2
CPU cores, a minute on a GPU); with so little data and training its accuracies say nothing
about the methods: the configs under configs/cifar100/ reproduce the papers' numbers.
"""
import os
import sys
import time

from ..config import get_cfg_defaults
from ..errors import DataError, UserError
from . import add_config_arguments, benchmark, new_parser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the clone: configs/demo
DIGITS_SPEC = os.path.join(ROOT, "configs", "demo", "benchmark.yaml")
CIFAR_SPEC = os.path.join(ROOT, "configs", "demo", "cifar100.yaml")


def parse_args(argv=None):
    p = new_parser("demo", "Teacher -> Vanilla/KD/DKD/MLKD/SLD students -> benchmark table.")
    p.add_argument("--cifar", nargs="?", const=get_cfg_defaults().DATASET.ROOT, metavar="ROOT",
                   help="run on a CIFAR-100 subset found under ROOT (default: DATASET.ROOT's default, data)")
    p.add_argument("--seeds", nargs="+", metavar="N", help="student seeds (default 0)")
    p.add_argument("--dry-run", action="store_true", help="list the runs; train nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars, one line per epoch")
    add_config_arguments(p, "KEY VALUE overrides for every run")
    args = p.parse_args(argv)
    benchmark.split_seeds(p, args)
    return args


def check_data(args):
    """Fail before any training, in one line, when the data is not there."""
    if args.cifar:
        from ..data import load_cifar100_arrays

        load_cifar100_arrays(args.cifar, "test")  # the small split: fast, and builds its cache
    else:
        from ..data.demo import bundled_path

        bundled_path()


def main(argv=None):
    args = parse_args(argv)
    try:
        check_data(args)
    except (DataError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bench = ["--spec", CIFAR_SPEC if args.cifar else DIGITS_SPEC]
    bench += ["--seeds", *map(str, args.seeds)] if args.seeds else []
    bench += ["--dry-run"] if args.dry_run else []
    bench += ["--quiet"] if args.quiet else []
    bench += [arg for module in args.plugin for arg in ("--plugin", module)]
    opts = list(args.opts or []) + (["DATASET.ROOT", args.cifar] if args.cifar else [])
    start = time.perf_counter()
    code = benchmark.main(bench + opts)
    if not args.dry_run and code != 2:
        print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
