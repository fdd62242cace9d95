"""Writing results: results.json, results.csv, results.md (and results.png via chart.py).

results.md has the papers' layout: one column per teacher/student pair, one row per method,
"mean ± std" of the best top-1 over seeds, the best student of each column in bold, trained
teachers as reference rows on top. Then a per-cell table of the other numbers (last top-1,
top-5, time, throughput, sizes) and the list of problems found in the folders.
results.csv has one row per run; results.json holds runs, cells and problems.
Each cell's difference to a baseline row with its 95% confidence interval (differences.py) is a
section of results.md, differences.csv, and results.json's "differences".
"""
import csv
import io
import json
import os

from ..runtime.safe_write import writing_into
from . import differences
from .report_checks import guard_replace, shown_cells
from .summary import summarize

CSV_FIELDS = ["method", "pair", "seed", "role", "status", "epochs", "planned_epochs", "best_top1", "best_epoch",
              "last_top1", "top5_at_best", "last_top5", "wall_time_s", "images_per_s", "student_params",
              "teacher_params", "folder", "problems"]
DASH = "—"
PARTIAL_MARK = "†"


def fmt(value, digits=2):
    return DASH if value is None else f"{value:.{digits}f}"


def fmt_params(n):
    if not n:
        return DASH
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def mean_pm(mean, std):
    if mean is None:
        return DASH
    return fmt(mean) if std is None else f"{mean:.2f} ± {std:.2f}"


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def accuracy_table(summary):
    """The papers' table (Markdown)."""
    lines = [_row(["Method"] + summary.pairs), _row([":--"] + [":-:"] * len(summary.pairs))]
    best = {p: summary.best_in_column(p) for p in summary.pairs}
    for method in summary.methods:
        row = [f"*{method}*" if method in summary.reference_methods else method]
        for pair in summary.pairs:
            cell = summary.cell(method, pair)
            if cell is None:
                row.append("")
                continue
            text = mean_pm(cell.top1, cell.top1_std)
            if method in best[pair]:
                text = f"**{text}**"
            row.append(text + (PARTIAL_MARK if cell.partial else ""))
        lines.append(_row(row))
    return "\n".join(lines)


def table_caption(summary):
    seeds = sorted({c.complete for c in summary.cells.values() if c.complete})
    n = ", ".join(map(str, seeds)) or "0"
    text = (f"Best test top-1 accuracy (%): mean ± sample std over complete runs (n = {n} per cell); "
            "bold: best student per column")
    if summary.reference_methods:
        text += f"; italic rows ({', '.join(summary.reference_methods)}) are references, not ranked"
    if any(c.partial for c in summary.cells.values()):
        text += (f"; {PARTIAL_MARK}: some runs of the cell are missing, incomplete, stale or trained with other "
                 "settings (see Problems)")
    return text + "."


def details_table(summary):
    header = ["Method", "Pair", "Complete runs", "Best top-1", "Last top-1", "Top-5 at best", "Train time (s)",
              "Images/s", "Student params", "Teacher params"]
    lines = [_row(header), _row(["---"] * len(header))]
    for method in summary.methods:
        for pair in summary.pairs:
            c = summary.cell(method, pair)
            if c is None:
                continue
            lines.append(_row([method, pair, f"{c.complete}/{c.runs}", mean_pm(c.top1, c.top1_std),
                               mean_pm(c.last_top1, c.last_top1_std), fmt(c.top5_at_best), fmt(c.wall_time_s, 1),
                               fmt(c.images_per_s, 0), fmt_params(c.student_params), fmt_params(c.teacher_params)]))
    return "\n".join(lines)


def problem_lines(results):
    return [f"- `{r.folder}`: {'; '.join(r.problems)}" for r in results if r.problems]


def markdown(results, summary, title="Benchmark", difference_section=""):
    parts = [f"# {title}", "", accuracy_table(summary), "", table_caption(summary), ""]
    parts += [difference_section] if difference_section else []
    parts += ["## Per cell", "", details_table(summary), ""]
    problems = problem_lines(results)
    if problems:
        parts += ["## Problems", ""] + problems + [""]
    return "\n".join(parts)


def csv_rows(results):
    for r in results:
        row = r.as_dict()
        row["problems"] = "; ".join(r.problems)
        yield {k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS}


def as_json(results, summary):
    cells = []
    for method in summary.methods:
        for pair in summary.pairs:
            c = summary.cell(method, pair)
            if c is not None:
                d = dict(vars(c))
                d["partial"] = c.partial
                cells.append(d)
    return {"metric": "best test top-1 (%), mean and sample std over complete runs",
            "methods": summary.methods, "pairs": summary.pairs, "reference_methods": summary.reference_methods,
            "cells": cells, "runs": [r.as_dict() for r in results],
            "problems": {r.folder: r.problems for r in results if r.problems}}


def _write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(results, out_dir, methods=None, pairs=None, title="Benchmark", chart=True, replace=False,
                 baseline=None):
    """Write results.{json,csv,md}, differences.csv (+ results.png) into `out_dir`; returns (summary,
    {kind: path}), where "chart" is the PNG's path or, when it could not be drawn, "chart_skipped"
    says why, and "replaced" where older results went (report_checks.guard_replace: a results file
    whose cells would lose their numbers is replaced only with `replace`, else OutputError).
    `baseline`: the row differences are taken against (default: the first distiller row)."""
    summary = summarize(results, methods, pairs)
    base, diffs = differences.cell_differences(results, summary, baseline)
    paths = {kind: os.path.join(out_dir, f"results.{kind}") for kind in ("json", "csv", "md")}
    shown = {key for key, cell in summary.cells.items() if cell.top1 is not None}
    paths["differences"] = os.path.join(out_dir, "differences.csv")
    with writing_into(out_dir, "--out"):
        os.makedirs(out_dir, exist_ok=True)
        moved = guard_replace(out_dir, "results", shown_cells(paths["json"], "cells", "top1"), shown, replace)
        if moved:
            paths["replaced"] = moved
        data = dict(as_json(results, summary), **differences.as_json(base, diffs))
        _write_text(paths["json"], json.dumps(data, indent=2) + "\n")
        _write_text(paths["md"], markdown(results, summary, title, differences.markdown_section(summary, base, diffs)))
        _write_text(paths["csv"], csv_text(CSV_FIELDS, csv_rows(results)))
        _write_text(paths["differences"], csv_text(differences.CSV_FIELDS, differences.csv_rows(diffs)))
        if chart:
            _draw(summary, out_dir, paths)
    return summary, paths


def csv_text(fields, rows):
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _draw(summary, out_dir, paths):
    from .chart import chart_unavailable, draw_chart

    reason = chart_unavailable()
    if reason:
        paths["chart_skipped"] = reason
    else:
        paths["chart"] = os.path.join(out_dir, "results.png")
        draw_chart(summary, paths["chart"])
