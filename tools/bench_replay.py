"""Wall time of a table of logit methods: solo runs, one paired group, and teacher-output replay.

The program is mdistiller/cli/bench_replay.py (usage: its docstring, or --help); `mdistiller-bench-replay` is the
same program installed as a console script.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("mdistiller") is None:  # a clone that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mdistiller.cli.bench_replay import main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
