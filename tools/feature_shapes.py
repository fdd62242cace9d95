"""Print the feature shapes of a (teacher, student) pair and which feature distillers fit it.

The program is mdistiller/cli/feature_shapes.py (usage: its docstring, or --help); `mdistiller-feature-shapes` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.feature_shapes import main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
