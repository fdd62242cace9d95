"""A side channel for what a distiller wants logged that is not a loss term.

The trainer sums every entry of a distiller's loss dict into the loss, so statistics (swap rates,
teacher errors) cannot travel there. Instead a distiller, or any `Distiller` module inside it
(the components of a stack), sets `self.last_stats = {name: (numerator, denominator)}` during
its forward; numerator and denominator are device tensors of the same shape, a scalar or a
vector (per class). After each step the trainer takes (and clears) those dicts and adds them
into a `StatSums`; at the epoch end one read returns `sum(numerators) / sum(denominators)` per
name, exact over the epoch and over DDP ranks. Two sources reporting the same name are pooled.

Scalar statistics go to the worklog (`name: value` lines inside the epoch block, after
mdistiller's keys) and to tensorboard (tag: the name with "." -> "/"); vector statistics are
kept for the end-of-training summary (`worst_entries_line`).
"""
import math

import torch

from ..distillers.base import Distiller
from .distributed import DistInfo, all_reduce_sum


def stat_sources(distiller):
    """The modules that may report statistics: the distiller itself and every Distiller below it.
    Found once per run (the module tree does not change), so a step only reads attributes."""
    sources = [distiller]
    sources += [m for m in distiller.modules() if m is not distiller and isinstance(m, Distiller)]
    return sources


def collect_stats(sources):
    """Take every source's `last_stats` (clearing it, so a step that reports nothing adds nothing)."""
    stats = {}
    for module in sources:
        found = getattr(module, "last_stats", None)
        if not found:
            continue
        module.last_stats = None
        for name, (num, den) in found.items():
            if name in stats:
                num, den = stats[name][0] + num, stats[name][1] + den
            stats[name] = (num, den)
    return stats


class StatSums:
    """Running sums of numerator/denominator pairs, on the device until `read`."""

    def __init__(self):
        self.sums = {}

    def add(self, stats):
        for name, (num, den) in stats.items():
            num, den = num.detach().double(), den.detach().double()
            if name in self.sums:
                self.sums[name][0].add_(num)
                self.sums[name][1].add_(den)
            else:
                self.sums[name] = [num.clone(), den.clone()]

    def read(self, info=DistInfo()):
        """{name: float (scalar stat) or list of floats (vector stat)}: sum(num) / sum(den), NaN
        where the denominator is 0. One transfer (and one all-reduce under DDP, a collective:
        every rank calls it at the same point, with the same names)."""
        if not self.sums:
            return {}
        names = sorted(self.sums)
        flat = torch.cat([t.reshape(-1) for name in names for t in self.sums[name]])
        values = all_reduce_sum(flat, info).tolist()
        out, pos = {}, 0
        for name in names:
            size = self.sums[name][0].numel()
            num, den = values[pos:pos + size], values[pos + size:pos + 2 * size]
            pos += 2 * size
            ratios = [n / d if d else float("nan") for n, d in zip(num, den)]
            out[name] = ratios if self.sums[name][0].dim() else ratios[0]
        return out


def scalar_stats(values):
    """The finite scalar statistics, in name order (what the worklog and tensorboard get)."""
    return {k: v for k, v in sorted(values.items()) if not isinstance(v, list) and math.isfinite(v)}


def worst_entries_line(name, values, top=5, labels=None):
    """One line naming the `top` largest entries of a per-class statistic, e.g.
    "teacher.class_error on the training views (%, last epoch), highest: class 3 41.2, class 8 20.0"."""
    labelled = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    worst = sorted(labelled, key=lambda x: (-x[0], x[1]))[:top]
    shown = ", ".join(f"{labels[i] if labels else f'class {i}'} {v:.1f}" for v, i in worst)
    return f"{name} on the training views (%, last epoch), highest: {shown or 'no data'}"
