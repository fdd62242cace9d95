"""`launch_matrix`: train a benchmark matrix with the launcher the command line asks for.

Kept apart from launch.py, which the launchers themselves import (work units, run states).
"""


def launch_matrix(matrix, paired=False, launcher="local", jobs=1, slurm=None, wait=True, say=print,
                  overwrite=False):
    """Train the matrix with the chosen launcher: (runs, counts, [(run, message)] of failures).
    `--jobs 1` locally is the in-process runner (runner.py / paired_runs.py). `overwrite`: a run
    trained with another config has its outputs moved aside and starts over (else it is refused)."""
    if launcher == "slurm":
        from .launch_slurm import run_slurm

        return run_slurm(matrix, paired, slurm, wait, say, overwrite)
    if jobs > 1:
        from .launch_local import run_local

        return run_local(matrix, paired, jobs, say, overwrite)
    from .paired_runs import run_paired_matrix
    from .runner import run_matrix

    return (run_paired_matrix if paired else run_matrix)(matrix, say=say, overwrite=overwrite)
