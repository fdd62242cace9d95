"""Benchmark tables: run methods x teacher/student pairs x seeds, then tabulate the output folders.

The program is mdistiller/cli/benchmark.py (usage: its docstring, or --help); `mdistiller-benchmark` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.benchmark import launch_settings, main, parse_args, split_seeds  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
