"""A benchmark is checked before its first run: every input any run needs, all problems at once.

`check_matrix` looks at
  - each cell's config: it loads (its keys and values, the plug-ins it imports);
  - with `training`, each planned run: its distiller settings, its data folder, its teacher's
    weights (a teacher-role run of the same benchmark that will write them counts as there)
    and the folder its runs go to;
  - the paired baseline: a student method (Vanilla and NONE both name the vanilla row);
  - the folder the tables go to (--out, or the project's folder).
It raises `MatrixProblems` (spec.py), which lists each distinct problem once: the same missing
teacher of five runs is one line. So nothing trains, and no table is written, until all are fixed;
problems that only training can reveal (a checkpoint that is there but damaged, a diverging
loss) still fail their run alone while the others go on (runner.py).
"""
import os

from ..config import load_cfg
from ..errors import OutputError, UserError
from ..runtime.safe_write import unwritable_folder
from .paired_runs import choose_baseline
from .report_checks import output_problem
from .spec import TEACHER_ROLE, MatrixProblems, plan_runs


def _catch(found, check, *args):
    """Run one check; the message of each UserError it raises is recorded once."""
    try:
        return check(*args)
    except MatrixProblems as err:
        found.update(dict.fromkeys(err.problems))
    except UserError as err:
        found[str(err)] = None
    return None


def check_matrix(matrix, out, paired=False, baseline=None, training=True, data=True):
    """The planned runs of `matrix`, or MatrixProblems (module docstring). `out`: --out (None: the
    project's folder); `data`: also look for each run's dataset (off where runs train elsewhere,
    e.g. on Slurm nodes with their own scratch disks)."""
    found = {}
    for cell in matrix.cells:
        _catch(found, load_cfg, cell.config, list(matrix.opts) + list(cell.opts))
    runs = _catch(found, plan_runs, matrix) if not found else None
    if runs is None:  # runs cannot be planned from configs that do not load
        raise MatrixProblems(found)
    if paired or baseline is not None:  # results.md's differences take a baseline too
        students = [c.method for c in matrix.cells if c.role != TEACHER_ROLE]
        _catch(found, choose_baseline, list(dict.fromkeys(students)), baseline)
    if training:
        produced = {os.path.abspath(os.path.join(r.folder, "student_best")) for r in runs if r.role == TEACHER_ROLE}
        for run in runs:
            for problem in run_problems(run, produced, data):
                found[problem] = None
    problem = output_problem(tables_folder(runs, out))
    if problem:
        found[problem] = None
    if found:
        raise MatrixProblems(found)
    return runs


def run_problems(run, produced, data=True):
    """The problems that would stop `run` before its first epoch (one line each)."""
    from ..data import locate_data
    from ..distillers import check_distiller_cfg, teacher_required
    from ..distillers.inputs import input_views
    from ..models.teacher import teacher_checkpoint

    cfg, found = run.cfg(), {}
    _catch(found, check_distiller_cfg, cfg)
    _catch(found, input_views, cfg)
    if data:
        _catch(found, locate_data, cfg)
    d = cfg.DISTILLER
    teacher_made_here = d.TEACHER_WEIGHTS and os.path.abspath(d.TEACHER_WEIGHTS) in produced
    if not teacher_made_here and _catch(found, teacher_required, cfg):
        _catch(found, teacher_checkpoint, d.TEACHER, cfg.DATASET.TYPE, d.TEACHER_WEIGHTS, d.TEACHER_KWARGS)
    _catch(found, _check_folder, run.folder)
    return list(found)


def _check_folder(folder):
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise OutputError(f"run folder {folder} is a file; move it away, or choose another project")
    reason = unwritable_folder(os.path.dirname(os.path.normpath(folder)))
    if reason:
        raise OutputError(f"cannot write the runs into {os.path.dirname(os.path.normpath(folder))}: {reason}; set "
                          "LOG.PREFIX to a writable folder")


def tables_folder(runs, out=None):
    """Where results.* go: `out`, else the project folder of the runs."""
    return out or os.path.dirname(os.path.normpath(runs[0].folder))
