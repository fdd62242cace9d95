"""Download mdistiller's CIFAR-100 teacher checkpoints and install them into download_ckpts/.

The program is mdistiller/cli/fetch_teachers.py (usage: its docstring, or --help);
`mdistiller-fetch-teachers` is the same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.fetch_teachers import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
