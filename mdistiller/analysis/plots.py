"""The analysis figures. Each function returns a matplotlib `Figure` (tests count its axes);
`save_figure` renders it to PNG with the Agg canvas. pyplot is never imported: no global figure
state, no GUI backend, so this works on headless machines and in threads.

matplotlib is an optional extra (`pip install -e '.[plot]'`); without it `require_matplotlib`
raises a one-line `MissingPackage` error saying how to install it.
"""
import importlib

import numpy as np

from ..errors import UserError
from .comparison import off_diagonal

CORRELATION_VMAX = 3.0  # mdistiller's notebook fixes the colour scale so that methods compare
MAX_TICK_LABELS = 30  # above this many classes, axes show indices, not names
TEACHER_COLOUR, STUDENT_COLOUR = "tab:blue", "tab:orange"


class MissingPackage(UserError):
    """An optional package the requested output needs is not installed."""


def require_matplotlib(what="the analysis plots"):
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise MissingPackage(f"{what} need matplotlib, which is not installed; install it with: "
                             "pip install matplotlib (or pip install -e '.[plot]')") from None


def new_figure(ncols=1, width=6.0, height=4.5):
    """(Figure, [axes...]) with an Agg canvas attached."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def save_figure(fig, path, dpi=100):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _class_ticks(ax, names, axis="x", order=None):
    order = np.arange(len(names)) if order is None else order
    if len(names) > MAX_TICK_LABELS:
        return
    labels = [names[i] for i in order]
    if axis in ("x", "both"):
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(labels, rotation=90 if max(map(len, labels)) > 3 else 0, fontsize="small")
    if axis in ("y", "both"):
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(labels, fontsize="small")


def correlation_gap_figure(gap, class_names, vmax=CORRELATION_VMAX):
    """Heat map of `metrics.logit_correlation_gap` (true class x logit class), colour scale
    fixed at [0, vmax] so that heat maps of different students compare."""
    fig, (ax,) = new_figure(width=6.5, height=5.5)
    image = ax.imshow(gap, vmin=0.0, vmax=vmax, cmap="PuBuGn", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="|teacher - student| mean logit")
    rest = off_diagonal(gap)
    ax.set_title(f"Teacher-student logit correlation gap\n(off-diagonal mean {np.nanmean(rest):.3f}, "
                 f"max {np.nanmax(rest):.3f})")
    ax.set_xlabel("logit of class")
    ax.set_ylabel("true class")
    _class_ticks(ax, class_names, "both")
    return fig


def per_class_accuracy_figure(teacher_acc, student_acc, class_names):
    """Per-class top-1 of both models, classes sorted by the teacher's accuracy (best first)."""
    order = np.argsort(-np.nan_to_num(teacher_acc, nan=-1.0), kind="stable")
    fig, (ax,) = new_figure(width=max(6.0, min(14.0, 0.35 * len(order))))
    x = np.arange(len(order))
    if len(order) <= MAX_TICK_LABELS:
        ax.bar(x - 0.2, teacher_acc[order], 0.4, color=TEACHER_COLOUR, label="teacher")
        ax.bar(x + 0.2, student_acc[order], 0.4, color=STUDENT_COLOUR, label="student")
    else:
        ax.plot(x, teacher_acc[order], color=TEACHER_COLOUR, label="teacher")
        ax.plot(x, student_acc[order], ".", color=STUDENT_COLOUR, markersize=4, label="student")
    _class_ticks(ax, class_names, "x", order)
    ax.set_xlabel("class (sorted by teacher accuracy)")
    ax.set_ylabel("test top-1 (%)")
    lowest = np.nanmin(np.concatenate([teacher_acc, student_acc])) if len(order) else 0.0
    ax.set_ylim(max(0.0, 5.0 * np.floor(np.nan_to_num(lowest) / 5.0) - 5.0), 100.5)  # zoom on the differences
    better = int(np.sum(student_acc > teacher_acc))
    ax.set_title(f"Per-class accuracy: student above teacher on {better} of {len(order)} classes")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def reliability_figure(curves):
    """One reliability diagram per model: `curves` {label: metrics.Reliability}."""
    fig, axes = new_figure(ncols=len(curves), width=4.5, height=4.5)
    for ax, (label, rel), colour in zip(axes, curves.items(), [TEACHER_COLOUR, STUDENT_COLOUR, "tab:green"]):
        width = np.diff(rel.edges)
        filled = rel.counts > 0
        ax.bar(rel.edges[:-1][filled], rel.accuracy[filled], width[filled], align="edge", color=colour,
               edgecolor="black", linewidth=0.5, label="accuracy")
        ax.bar(rel.edges[:-1][filled], (rel.confidence - rel.accuracy)[filled], width[filled],
               bottom=rel.accuracy[filled], align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top softmax probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{label}: ECE {rel.ece:.2f}%")
        ax.legend(loc="upper left", fontsize="small")
    return fig


def rescued_pairs_figure(pairs, class_names, top=15):
    """Horizontal bars: the most frequent (true class -> teacher's wrong guess) confusions on
    samples the student classifies correctly."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = new_figure(width=6.5, height=max(3.0, 0.3 * min(len(pairs), top) + 1.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = pairs[:top][::-1]  # largest at the top
    if shown:
        ax.barh(range(len(shown)), [p.count for p in shown], color=STUDENT_COLOUR)
        ax.set_yticks(range(len(shown)))
        ax.set_yticklabels([f"{class_names[p.true]} -> {class_names[p.teacher_pred]}" for p in shown],
                           fontsize="small")
    else:
        ax.text(0.5, 0.5, "no test image that the teacher misclassifies\nand the student gets right",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("test images")
    ax.set_ylabel("true class -> teacher's prediction")
    ax.set_title("Teacher errors the student gets right")
    return fig


def tsne_figure(embeddings, targets, class_names):
    """One scatter per model of its 2-D t-SNE embedding (`embeddings` {label: (N, 2)}), coloured
    by true class (legend when there are at most 10 classes)."""
    fig, axes = new_figure(ncols=len(embeddings), width=5.0, height=5.0)
    cmap = "tab10" if len(class_names) <= 10 else "tab20" if len(class_names) <= 20 else "nipy_spectral"
    for ax, (label, points) in zip(axes, embeddings.items()):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=targets, cmap=cmap, s=6,
                             vmin=-0.5, vmax=len(class_names) - 0.5)
        ax.set_title(f"t-SNE of the {label}'s pooled features")
        ax.set_xticks([])
        ax.set_yticks([])
        if len(class_names) <= 10:
            handles, _ = scatter.legend_elements(num=len(class_names))
            ax.legend(handles, class_names, fontsize="x-small", markerscale=0.8, loc="best")
    return fig


VIEW_COLOURS = {"weak": "tab:blue", "strong": "tab:red"}


def swap_rates_figure(rates, ranks=None, gamma=None):
    """Swap statistics per epoch from a run's worklog: `rates` {name: [(epoch, percent)]}, `ranks`
    {name: [(epoch, mean rank)]} (second panel when given), names "<who>[_<view>]" (teacher solid,
    student dashed; one colour per view); `gamma` marks where SLD's student swap term switches on
    (after that epoch)."""
    from matplotlib.ticker import MaxNLocator

    panels = [("swap rate (% of training rows)", rates, "Swapped rows per epoch")]
    if ranks:
        panels.append(("mean rank of the target in swapped rows", ranks, "How wrong the swapped rows are"))
    fig, axes = new_figure(ncols=len(panels), width=5.5, height=4.0)
    for ax, (ylabel, series, title) in zip(axes, panels):
        for name, points in series.items():
            who, _, view = name.partition("_")
            ax.plot([e for e, _ in points], [v for _, v in points], "--" if who == "student" else "-", marker=".",
                    color=VIEW_COLOURS.get(view, "tab:green"), label=name)
        if gamma is not None:
            ax.axvline(gamma + 0.5, color="grey", linestyle=":", label=f"student swap term on (epoch > {gamma})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize="small")
    return fig
