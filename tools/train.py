"""Train a student with a distiller, or a teacher/baseline with DISTILLER.TYPE NONE.

The program is mdistiller/cli/train.py (usage: its docstring, or --help); `mdistiller-train` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.train import load_train_cfg, main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
