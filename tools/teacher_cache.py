"""Write the teacher cache of a run's batch stream (teacher-output replay).

The program is mdistiller/cli/teacher_cache.py (usage: its docstring, or --help); `mdistiller-teacher-cache` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.teacher_cache import main, parse_args  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
