"""The command-line programs: `tools/<name>.py` and the console script `mdistiller-<name>` both
call `mdistiller.cli.<name>.main(argv)` (setup.py `entry_points`). Each module parses its
arguments and hands over to the library; the logic lives in the sub-packages below.

Every program that reads configs takes `--plugin MODULE` (repeatable): the module is imported
before the config is read and added to the config's PLUGINS (mdistiller/plugins.py).
"""

from ..errors import ConfigError

PLUGIN_HELP = ("import this module before reading configs (its distillers and config sections; "
               "added to PLUGINS); repeatable")


def add_plugin_argument(parser):
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)


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
