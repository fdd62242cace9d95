"""Before a report is written: it never says less than what it replaces, silently.

- `report_only_refusal`: `--report-only` asks for a config; when every run folder holding
  results was trained with other settings (typically: the training's overrides were not
  repeated), its table would hold nothing but dashes. It is refused with one line naming the
  settings to repeat, or `--runs-dir`, which tabulates the folders as they are.
- `guard_replace`: the results file already in the output folder has cells that show a number
  and the new report would show none there (a run refused, stale, trained with other
  settings, or left out). It is not replaced (OutputError naming those cells and the way out)
  unless the user asks (`--overwrite`); then its files move into `<out>/replaced/N/` first.
  Nothing is deleted.
- `output_problem`: the output folder cannot be written (a file in the way, read-only).
"""
import glob
import itertools
import json
import os

from ..errors import OutputError
from ..runtime.safe_write import unwritable_folder
from .collect import value_token

REPLACED = "replaced"


def report_only_refusal(results, where):
    """The one-line refusal when every run with results mismatches the asked config, else None."""
    trained = [r for r in results if r.epochs]
    if not trained or any(r.status != "mismatch" for r in trained):
        return None
    had, asked = {}, {}
    for r in trained:
        for key, old, new in r.differences:
            had.setdefault(key, {})[value_token(old)] = None
            asked[key] = value_token(new)
    repeat = " ".join(f"{key} {' or '.join(values)}" for key, values in had.items())
    wanted = " ".join(f"{key} {value}" for key, value in asked.items())
    return (f"the {len(trained)} run folder(s) with results under {where} were trained with {repeat}, but this command "
            f"asks for {wanted}; repeat the training's overrides ({repeat}) to report them, or tabulate the folders "
            f"as they are with --runs-dir {where}")


def shown_cells(path, entries, value):
    """{(method, pair)} of the entries of a results JSON that show a number (empty if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return set()
    rows = data.get(entries) if isinstance(data, dict) else None
    return {(r.get("method"), r.get("pair")) for r in rows if isinstance(r, dict) and r.get(value) is not None} \
        if isinstance(rows, list) else set()


def guard_replace(out_dir, name, old_shown, new_shown, replace=False):
    """Before `<name>.*` are written into `out_dir` (module docstring): OutputError when cells
    that show a number now would show none, unless `replace`, which moves the old files aside;
    returns where they went, or None."""
    lost = sorted(old_shown - new_shown, key=str)
    if not lost:
        return None
    if not replace:
        listed = "; ".join(f"{m} | {p}" for m, p in lost[:3]) + (f" (+{len(lost) - 3} more)" if len(lost) > 3 else "")
        raise OutputError(f"not replacing {os.path.join(out_dir, name + '.md')}: {len(lost)} cell(s) showing a result "
                          f"there would show none in this report ({listed}; see the problems above); pass --overwrite "
                          f"to move the old {name}.* into {os.path.join(out_dir, REPLACED)}/ and write the new ones, "
                          "or --out another folder")
    return move_old(out_dir, name)


def move_old(out_dir, name):
    """Move `<name>.*` of out_dir into the first free `<out_dir>/replaced/N/`; returns it."""
    dest = next(os.path.join(out_dir, REPLACED, str(n)) for n in itertools.count(1)
                if not os.path.exists(os.path.join(out_dir, REPLACED, str(n))))
    os.makedirs(dest)
    for path in glob.glob(os.path.join(glob.escape(out_dir), glob.escape(name) + ".*")):
        os.replace(path, os.path.join(dest, os.path.basename(path)))
    return dest


def output_problem(folder, flag="--out"):
    """One line when files cannot be written into `folder`, else None."""
    reason = unwritable_folder(folder)
    return None if reason is None else f"cannot write the tables into {folder}: {reason}; pass {flag} a writable folder"

