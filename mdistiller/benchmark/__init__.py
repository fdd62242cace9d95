"""Benchmark tables across distillers: run a matrix of methods x teacher/student pairs x seeds
as normal training runs, then collect the output folders into results.{json,csv,md,png}.

  spec.py     what to run (spec YAML, config files or method/pair names) -> planned runs
  runner.py   run them in order, skipping finished runs and resuming interrupted ones
  launch.py   work units and run states for the launchers: launch_local.py (--jobs N worker
              processes), launch_slurm.py (one Slurm job per unit, through submitit)
  collect.py  one run folder -> RunResult; find run folders under a directory
  summary.py  seeds -> mean ± std per (method, pair) cell
  report.py   results.json / results.csv / results.md (the papers' table)
  chart.py    results.png (accuracy per method, test-accuracy curves)
  paired_runs.py  paired groups (one teacher pass per batch) and their method-minus-baseline table
  dispatch.py `launch_matrix`: the launcher a command line asks for
Run folders are read through the engine's file formats: engine/worklog.py (worklog.txt),
engine/events.py (train.events), engine/run_folder.py (config.yaml, run.json).

tools/benchmark.py is the command line over these.
"""
from .collect import RunResult, find_run_folders, read_run
from .report import accuracy_table, write_report
from .runner import collect_matrix, run_matrix
from .spec import Matrix, load_matrix, matrix_from_configs, matrix_from_names, plan_runs
from .summary import summarize
from ..engine.worklog import parse_worklog, read_worklog

__all__ = ["RunResult", "find_run_folders", "read_run", "accuracy_table", "write_report", "collect_matrix",
           "run_matrix", "Matrix", "load_matrix", "matrix_from_configs", "matrix_from_names", "plan_runs",
           "summarize", "parse_worklog", "read_worklog"]
