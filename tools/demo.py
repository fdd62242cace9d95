"""The out-of-the-box demo (`make demo`): train a teacher, distil a student with Vanilla, KD, DKD,
MLKD and SLD, and print the benchmark table — on a laptop CPU in a few minutes, no download.

The program is mdistiller/cli/demo.py (usage: its docstring, or --help); `mdistiller-demo` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.demo import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
