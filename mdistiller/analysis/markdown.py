"""analysis.md: the numbers behind tools/analyze.py's figures, short enough to read at a glance."""
import os

import numpy as np

from .comparison import ECE_BINS, off_diagonal

TOP = 5  # classes / pairs listed per section
FIGURE_TITLES = {
    "correlation_gap": "Logit correlation gap (teacher vs student, DKD-style)",
    "per_class_accuracy": "Per-class accuracy",
    "reliability": "Reliability diagrams",
    "rescued_pairs": "Teacher errors the student gets right",
    "tsne": "t-SNE of pooled features",
    "swap_rates": "Swap statistics per epoch",
}


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def _class_changes(a):
    diff = a.per_class["student"] - a.per_class["teacher"]
    order = [i for i in np.argsort(-np.nan_to_num(diff, nan=-np.inf), kind="stable") if np.isfinite(diff[i])]
    fmt = lambda idx: ", ".join(f"{a.class_names[i]} ({diff[i]:+.1f})" for i in idx) or "none"  # noqa: E731
    gains = [i for i in order if diff[i] > 0][:TOP]
    losses = [i for i in reversed(order) if diff[i] < 0][:TOP]
    better = int(np.sum(diff > 0))
    return [f"Student above the teacher on {better} of {len(diff)} classes. "
            f"Largest gains (points): {fmt(gains)}. Largest losses: {fmt(losses)}."]


def _rescued(a):
    fixed, broken = a.disagreement
    lines = [f"The teacher is wrong and the student right on {fixed} test images "
             f"(the reverse: {broken})."]
    if a.rescued:
        lines += ["", _row(["true class", "teacher's prediction", "images"]), _row(["---", "---", "---:"])]
        lines += [_row([a.class_names[p.true], a.class_names[p.teacher_pred], str(p.count)]) for p in a.rescued[:TOP]]
    return lines


def _swap(a):
    if not a.swap_last:
        return []
    rates = ", ".join(f"{k} {v:.2f}%" for k, v in a.swap_last.items() if not k.startswith("rank_"))
    ranks = ", ".join(f"{k[len('rank_'):]} {v:.2f}" for k, v in a.swap_last.items() if k.startswith("rank_"))
    lines = ["## Swap statistics (training run, last epoch)", "", f"Rows swapped: {rates}."]
    if ranks:
        lines.append(f"Mean rank of the target in swapped rows: {ranks}.")
    return lines + [""]


def summary_markdown(a, out_dir="."):
    rel = a.reliability
    gap = off_diagonal(a.gap)
    lines = [f"# Analysis: {a.student} vs teacher {a.teacher}", "",
             f"Student: `{a.student_ckpt}`. Teacher: {a.teacher_source}. Data: the {a.dataset} test split "
             f"({len(a.targets)} images, {len(a.class_names)} classes).", "",
             _row(["", "Teacher", "Student"]), _row(["---", "---:", "---:"]),
             _row(["top-1 (%)", f"{a.top1['teacher']:.2f}", f"{a.top1['student']:.2f}"]),
             _row([f"ECE ({ECE_BINS} bins, %)", f"{rel['teacher'].ece:.2f}", f"{rel['student'].ece:.2f}"]), "",
             "## Logit correlation gap", "",
             f"Gap between the teacher's and the student's class-mean logits (absolute, off the diagonal): "
             f"mean {np.nanmean(gap):.3f}, max {np.nanmax(gap):.3f}. Lower: the student reproduces the "
             "teacher's relations between classes more closely.",
             "", "## Per-class accuracy", ""] + _class_changes(a) + ["", "## Teacher errors the student fixes", ""]
    lines += _rescued(a) + [""] + _swap(a)
    if a.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in a.notes] + [""]
    lines += ["## Figures", ""]
    lines += [f"- [{FIGURE_TITLES.get(k, k)}]({os.path.relpath(p, out_dir)})" for k, p in a.files.items()
              if k in FIGURE_TITLES]
    return "\n".join(lines) + "\n"


def write_summary(analysis, path):
    text = summary_markdown(analysis, os.path.dirname(os.path.abspath(path)))
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
