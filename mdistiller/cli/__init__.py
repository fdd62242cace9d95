"""The command-line programs: `tools/<name>.py` and the console script `mdistiller-<name>` both
call `mdistiller.cli.<name>.main(argv)` (setup.py `entry_points`). Each module parses its
arguments and hands over to the library; the logic lives in the sub-packages below.

Every program that reads configs takes `--plugin MODULE` (repeatable): the module is imported
before the config is read and added to the config's PLUGINS (mdistiller/plugins.py).
"""

import argparse
import os
import sys

from ..errors import ConfigError

MAX_THREADS = 1024  # --threads: torch CPU threads (more is a typo; torch overflows past 2**63)
PLUGIN_HELP = ("import this module before reading configs (its distillers and config sections; "
               "added to PLUGINS); repeatable")


def new_parser(name, description):
    """The program's argument parser. Its usage line names the program as it was started: the
    file (`train.py`) for tools/<name>.py, else the console script (`mdistiller-train`), which is
    also the name when main(argv) is called from other code."""
    started = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    script = f"mdistiller-{name.replace('_', '-')}"
    prog = started if started in (f"{name}.py", script) else script
    return argparse.ArgumentParser(prog=prog, description=description)


def print_error(err):
    """A UserError on stderr: `error: ` and its line, one such line per problem when it holds
    several (engine/preflight.py's InputProblems)."""
    for line in str(err).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def add_config_arguments(parser, overrides="config overrides: KEY VALUE ..."):
    """`--plugin MODULE` (repeatable) and the trailing KEY VALUE config overrides (`args.opts`)."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help=overrides)


def plugin_opts(args):
    """The config overrides `--plugin` stands for, with any `--plugin X` that argparse left among
    the trailing KEY VALUE overrides moved out of `args.opts`: ["PLUGINS", "[a, b]"] or []."""
    opts, items, plugins = [], iter(args.opts or []), list(args.plugin)
    for item in items:
        if item == "--plugin":
            plugins.append(next(items, None))
            if plugins[-1] is None:
                raise ConfigError("--plugin needs a module path, e.g. --plugin my_pkg.my_kd")
        else:
            opts.append(item)
    args.opts = opts
    return ["PLUGINS", "[" + ", ".join(plugins) + "]"] if plugins else []
