"""Reproduction report: published numbers (paper_results.json) beside ours, with the differences.

`paper_comparison(results)` takes the collected `RunResult`s of a benchmark and returns a
Markdown section with one row per (dataset, teacher -> student, method):

  Paper     the published top-1 (— when the paper has none for this setting)
  Ours      mean ± sample std of the best top-1 over the complete runs (— when none)
  Δ         ours - paper, in points
  Seeds     complete runs (n of the cell's runs)
  vs B      with a baseline method B (tools/benchmark.py passes its --baseline, default the first
            distiller row): the paper's method − B, and ours with its 95% confidence interval
            (benchmark/differences.py: paired by seed, else Welch; * where it excludes zero)
  Notes     why a cell is not comparable as is: not run, incomplete runs, a shortened schedule
            (fewer epochs than the paper's recipe), training or test subsets; such a cell's
            value carries a ‡

`write_paper_report(results, out_dir)` writes it to <out_dir>/paper.md (tools/benchmark.py --paper).

Rows: every published setting for the teacher/student pairs that were run (so missing methods
show as "not run"), then the runs without a published counterpart. A run's dataset, networks,
epochs and subsets come from its config.yaml; without one, from its "teacher -> student"
label. Teacher-role runs (the trained teachers) are not compared.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Optional

from .collect import read_config
from .differences import format_interval, seed_values
from .stats import difference
from .summary import mean_std

PAPER_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_results.json")
METHOD_ALIASES = {"KD_OURS": "MLKD"}  # the MLKD authors' registry name
NOT_COMPARABLE = "‡"
DASH = "—"


def load_paper_results(path=PAPER_RESULTS):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def method_key(method):
    name = str(method).upper()
    return METHOD_ALIASES.get(name, name)


@dataclass
class Setting:
    """What a run is, as far as comparing it with a paper goes."""
    dataset: Optional[str]
    teacher: str
    student: str
    method: str
    epochs: Optional[int] = None
    train_subset: int = 0
    test_subset: int = 0


def run_setting(result):
    config = read_config(result.folder)
    data, distiller, solver = (config.get(k) or {} for k in ("DATASET", "DISTILLER", "SOLVER"))
    if distiller.get("TEACHER") and distiller.get("STUDENT"):
        teacher, student = distiller["TEACHER"], distiller["STUDENT"]
    else:
        teacher, _, student = (p.strip() for p in result.pair.partition("->"))
    return Setting(data.get("TYPE"), teacher, student, result.method, result.planned_epochs or solver.get("EPOCHS"),
                   int(data.get("TRAIN_SUBSET") or 0), int(data.get("TEST_SUBSET") or 0))


@dataclass
class Row:
    dataset: Optional[str]
    teacher: str
    student: str
    method: str
    paper: Optional[float] = None
    source: str = ""
    runs: list = field(default_factory=list)  # (RunResult, Setting)

    @property
    def key(self):
        return self.dataset, self.teacher, self.student, method_key(self.method)


def _find_row(rows, setting):
    """The row of a run's setting; a run with no known dataset matches on the networks alone."""
    for row in rows:
        same = (row.teacher, row.student, method_key(row.method)) == (setting.teacher, setting.student,
                                                                      method_key(setting.method))
        if same and (setting.dataset is None or row.dataset == setting.dataset):
            return row
    return None


def build_rows(results, paper):
    published = [Row(e["dataset"], e["teacher"], e["student"], e["method"], e["top1"], e.get("source", ""))
                 for e in paper["results"]]
    extra = []
    for result in results:
        if result.role == "teacher":
            continue
        setting = run_setting(result)
        row = _find_row(published, setting) or _find_row(extra, setting)
        if row is None:
            row = Row(setting.dataset, setting.teacher, setting.student, setting.method)
            extra.append(row)
        row.runs.append((result, setting))
    ran_pairs = {(r.dataset, r.teacher, r.student) for r in published + extra if r.runs}
    shown = [r for r in published if (r.dataset, r.teacher, r.student) in ran_pairs]
    return shown + extra, published


def _notes(row, recipes):
    """(notes, whether the runs deviate from the published recipe: fewer epochs or subsets)."""
    missing = sum(r.status == "missing" for r, _ in row.runs)  # planned (a spec's) but no folder yet
    if missing == len(row.runs):
        return ["not run"], False
    notes, deviations = [], []
    incomplete = sum(not r.complete for r, _ in row.runs) - missing
    for count, what in ((incomplete, "incomplete"), (missing, "not run")):
        if count:
            notes.append(f"{count} of {len(row.runs)} runs {what}")
    full = (recipes.get(row.dataset) or {}).get("epochs")
    epochs = sorted({s.epochs for _, s in row.runs if s.epochs})
    if full and any(e < full for e in epochs):
        deviations.append(f"shortened schedule: {'/'.join(map(str, epochs))} of {full} epochs")
    for attr, what in (("train_subset", "train"), ("test_subset", "test")):
        sizes = sorted({getattr(s, attr) for _, s in row.runs if getattr(s, attr)})
        if sizes:
            deviations.append(f"{what} subset of {'/'.join(map(str, sizes))} images")
    return notes + deviations, bool(deviations)


def _row_cells(row, recipes):
    notes, deviates = _notes(row, recipes)
    tops = [r.best_top1 for r, _ in row.runs if r.complete and r.best_top1 is not None]
    ours = delta = DASH
    if tops:
        mean, std = mean_std(tops)
        ours = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
        if deviates:
            ours += NOT_COMPARABLE
        if row.paper is not None:
            delta = f"{mean - row.paper:+.2f}"
    paper = DASH if row.paper is None else f"{row.paper:.2f}"
    return [row.dataset or "?", f"{row.teacher} → {row.student}", row.method, paper, ours, delta,
            f"{len(tops)}/{len(row.runs)}" if row.runs else "0", "; ".join(notes)]


def _versus_baseline(row, rows, baseline):
    """[paper's row − baseline, ours − baseline [95% CI]] against the baseline row of the same setting."""
    base = next((r for r in rows if (r.dataset, r.teacher, r.student) == (row.dataset, row.teacher, row.student)
                 and method_key(r.method) == method_key(baseline)), None)
    if base is None or base is row:
        return [DASH, DASH]
    paper = DASH if row.paper is None or base.paper is None else f"{row.paper - base.paper:+.2f}"
    mine, theirs = (seed_values([r for r, _ in x.runs]) for x in (row, base))
    if not (mine and theirs):
        return [paper, DASH]
    mean = sum(mine.values()) / len(mine) - sum(theirs.values()) / len(theirs)
    return [paper, format_interval(mean, difference(mine, theirs))]


def _line(cells):
    return "| " + " | ".join(cells) + " |"


def paper_comparison(results, paper=None, title="Reproduction: published numbers vs ours", baseline=None):
    """The Markdown section described in the module docstring; `baseline`: the method of the
    "vs" columns (none without it)."""
    paper = paper or load_paper_results()
    rows, published = build_rows(results, paper)
    recipes = paper.get("recipes", {})
    header = ["Dataset", "Teacher → Student", "Method", "Paper", "Ours", "Δ", "Seeds", "Notes"]
    versus = [f"Paper − {baseline}", f"Ours − {baseline} [95% CI]"] if baseline else []
    lines = [f"## {title}", "", _line(header + versus),
             _line(["---", "---", "---", "---:", "---:", "---:", "---:", "---"] + ["---:"] * len(versus))]
    lines += [_line(_row_cells(row, recipes) + (_versus_baseline(row, rows, baseline) if baseline else []))
              for row in rows]
    lines += ["", f"Best test top-1 (%). Ours: mean ± sample std over complete runs; Seeds: complete/all runs; "
                  f"Δ = ours − paper. {NOT_COMPARABLE}: trained on a shortened schedule or a subset, not comparable "
                  "with the published number as is."]
    if baseline:
        lines[-1] += (f" Ours − {baseline}: mean difference over complete runs of the same setting with its 95% "
                      "confidence interval (paired by seed where both ran the same seeds, Welch otherwise; * where "
                      "it excludes zero).")
    if not any(row.paper is not None and row.runs for row in rows):
        pairs = sorted({f"{r.dataset} {r.teacher} → {r.student}" for r in published})
        lines += ["", "No run matches a published setting; those are: " + ", ".join(pairs) + "."]
    sources = sorted({row.source for row in rows if row.source and row.paper is not None})
    if sources:
        lines += ["", "Published numbers: " + "; ".join(sources) + " (see mdistiller/benchmark/paper_results.json)."]
    return "\n".join(lines) + "\n"


def write_paper_report(results, out_dir, paper=None, baseline=None):
    """paper.md in out_dir; returns (Markdown text, path)."""
    text = paper_comparison(results, paper, baseline=baseline)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "paper.md")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return text, path
