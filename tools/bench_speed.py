"""Speed of our SLD training path against the official code's structure, in one run.

The program is mdistiller/cli/bench_speed.py (usage: its docstring, or --help);
`mdistiller-bench-speed` is the same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.bench_speed import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
