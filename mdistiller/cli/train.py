"""Train a student with a distiller, or a teacher/baseline with DISTILLER.TYPE NONE.

    python tools/train.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 4 tools/train.py --cfg ...        (DistributedDataParallel)
    # logit standardization with the LS repository's flags (mdistiller/distillers/logit_stand.py)
    python tools/train.py --cfg configs/cifar100/kd/res32x4_res8x4.yaml --logit-stand --base-temp 2 --kd-weight 9

Outputs go to <LOG.PREFIX>/<EXPERIMENT.PROJECT>/<EXPERIMENT.NAME or TAG>/. A folder that already
holds checkpoints is only reused with --resume (continue, same config) or --overwrite (start
over; the old outputs are moved into <run folder>/replaced/N/, never deleted). Another process
training the same folder (a lock `<run folder>.lock` names it) stops this one at start-up.
Bad input (config, paths, checkpoints) prints one `error: ...` line and exits with code 2.
Ctrl-C (exit 130) and SIGTERM (exit 143: Slurm's time limit, most schedulers' stop) print the
last committed epoch and the command that resumes the run.
"""
import os
import shlex
import signal
import sys
import threading

from ..config import load_cfg, validate_cfg
from ..errors import ConfigError, UserError
from . import add_config_arguments, new_parser, plugin_opts, print_error

FLAGS = ("--resume", "--overwrite", "--quiet", "--logit-stand")
VALUE_FLAGS = ("--base-temp", "--kd-weight")
LS_DEFAULTS = {"base_temp": 2.0, "kd_weight": 9.0}  # the LS repository's defaults


def load_train_cfg(args):
    """The run's config: file, then overrides, then (with --logit-stand) the LS mapping."""
    given = [name for name in LS_DEFAULTS if getattr(args, name) is not None]
    if given and not args.logit_stand:
        raise ConfigError(f"--{given[0].replace('_', '-')} only applies with --logit-stand; add --logit-stand "
                          "or drop it")
    opts = plugin_opts(args) + args.opts + (["LOG.QUIET", "True"] if args.quiet else [])
    cfg = load_cfg(args.cfg or None, opts, freeze=False)
    if args.logit_stand:
        from ..distillers.logit_stand import apply_logit_stand_flags  # torch only when needed

        values = {name: LS_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
                  for name in LS_DEFAULTS}
        apply_logit_stand_flags(cfg, values["base_temp"], values["kd_weight"])
        validate_cfg(cfg)
    cfg.freeze()
    return cfg


def parse_args(argv=None):
    parser = new_parser("train", "Train a student by knowledge distillation (or a teacher/baseline).")
    parser.add_argument("--cfg", type=str, default="", help="YAML config (mdistiller format)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its `latest` checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="start over: move the run folder's old outputs into replaced/N/ first")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, one line per epoch (LOG.QUIET)")
    parser.add_argument("--logit-stand", action="store_true",
                        help="logit standardization (EXPERIMENT.LOGIT_STAND) with --base-temp and --kd-weight")
    parser.add_argument("--base-temp", type=float, default=None, help="with --logit-stand: temperature (default 2)")
    parser.add_argument("--kd-weight", type=float, default=None, help="with --logit-stand: KD weight (default 9)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    # argparse hands everything after the first override to `opts`; flags written there count too.
    opts, items = [], iter(args.opts or [])
    for item in items:
        if item in FLAGS:
            setattr(args, item[2:].replace("-", "_"), True)
        elif item in VALUE_FLAGS:
            value = next(items, None)
            try:
                setattr(args, item[2:].replace("-", "_"), float(value))
            except (TypeError, ValueError):
                parser.error(f"argument {item}: expected a number, got {value!r}")
        else:
            opts.append(item)
    args.opts = opts
    return args


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C (an epoch being committed is finished first)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def resume_command(argv):
    """The command line that continues this run: the same arguments, --resume instead of
    --overwrite."""
    prog = sys.argv[0] if sys.argv and sys.argv[0] else "tools/train.py"
    if os.path.normpath(prog).endswith(os.path.join("mdistiller", "cli", "train.py")):
        head = ["python", "-m", "mdistiller.cli.train"]  # started with -m: the file alone cannot run
    else:
        head = ["python", prog] if prog.endswith(".py") else [os.path.basename(prog)]
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(head + args + ["--resume"])


def stop_message(how, folder, argv):
    """What an interrupted run prints: the last committed epoch and how to continue."""
    from ..engine.run_folder import RunFiles

    if folder is None:
        return f"stopped by {how} before the run started; run the same command again"
    epoch = RunFiles(folder).committed_epoch()
    kept = f"epoch {epoch} is committed in {folder}" if epoch else "no epoch was committed yet"
    return f"stopped by {how}: {kept}; continue with: {resume_command(argv)}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    folder = None
    main_thread = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        cfg = load_train_cfg(args)
        from ..engine.build import train  # after the config: bad input fails fast
        from ..engine.run_folder import run_folder
        from ..engine.wandb_log import command_line

        folder = run_folder(cfg)
        with command_line(args.opts):  # mdistiller named its wandb runs after them (LOG.WANDB)
            train(cfg, resume=args.resume, overwrite=args.overwrite)
    except UserError as err:
        print_error(err)  # one line per problem (several when the preflight finds several)
        return 2
    except KeyboardInterrupt as err:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the message short
        how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
        if os.environ.get("RANK", "0") == "0":
            print(stop_message(how, folder, argv), file=sys.stderr)
        return 143 if how == "SIGTERM" else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
