"""The command-line programs: `tools/<name>.py` and the console script `mdistiller-<name>` both
call `mdistiller.cli.<name>.main(argv)` (setup.py `entry_points`). Each module parses its
arguments and hands over to the library; the logic lives in the sub-packages below.

Every program that reads configs takes `--plugin MODULE` (repeatable): the module is imported
before the config is read and added to the config's PLUGINS (mdistiller/plugins.py).
"""

import argparse

from ..errors import ConfigError

PLUGIN_HELP = ("import this module before reading configs (its distillers and config sections; "
               "added to PLUGINS); repeatable")


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
