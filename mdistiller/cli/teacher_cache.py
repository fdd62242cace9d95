"""Write the teacher cache of a run's batch stream, for runs that replay their teacher's logits.

    python tools/teacher_cache.py --cfg configs/cifar100/kd/res32x4_res8x4.yaml DISTILLER.TEACHER_CACHE on
    python tools/teacher_cache.py --cfg <cfg> --views 2 ...    (a paired group's two-view stream)

The cache goes to DISTILLER.TEACHER_CACHE (`on`: <LOG.PREFIX>/teacher_cache/<stream key>/), one
file per epoch; its size on disk is printed before the first one is written. Run it again after
a kill and it goes on after the last complete epoch. Runs of the same stream (same teacher
weights, data, SEED, batches, views and numerics) with DISTILLER.TEACHER_CACHE set read it
instead of running their teacher, and may start while it is being written.
Bad input prints one `error: ...` line and exits with code 2.
"""
import sys

from ..config import load_cfg
from ..errors import UserError
from . import add_config_arguments, new_parser, plugin_opts


def parse_args(argv=None):
    parser = new_parser("teacher_cache", "Write the teacher-output cache of a run's data stream.")
    parser.add_argument("--cfg", type=str, default="", help="YAML config of a run that distils (mdistiller format)")
    parser.add_argument("--views", type=int, choices=(1, 2), default=None,
                        help="views per image of the stream (default: what the config's run gets)")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        opts = plugin_opts(args) + args.opts
        cfg = load_cfg(args.cfg or None, opts)
        from ..engine.teacher_cache_job import write_teacher_cache  # after the config: bad input fails fast

        write_teacher_cache(cfg, views=args.views)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue the cache", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
