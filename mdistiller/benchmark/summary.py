"""Seeds -> one number per table cell: mean and spread of the complete runs of (method, pair).

Only complete runs count (a run that stopped early would drag a mean down silently); a cell
with fewer complete runs than it has folders is flagged so the table can say so. The spread is
the sample standard deviation (n - 1 in the denominator), the usual "± std over seeds" of KD
papers; it is None for a single run.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

BASELINES = ("vanilla", "none")  # row labels of the student trained without a teacher


def mean_std(values):
    """(mean, sample std or None) of a non-empty list."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@dataclass
class CellSummary:
    method: str
    pair: str
    role: str
    runs: int  # folders (planned runs) of this cell
    complete: int
    top1: Optional[float] = None  # mean best top-1
    top1_std: Optional[float] = None
    last_top1: Optional[float] = None
    last_top1_std: Optional[float] = None
    top5_at_best: Optional[float] = None
    wall_time_s: Optional[float] = None  # mean per run
    images_per_s: Optional[float] = None
    student_params: Optional[int] = None
    teacher_params: Optional[int] = None
    seeds: List = field(default_factory=list)  # of the complete runs
    curve: List[Tuple[int, float]] = field(default_factory=list)  # mean test top-1 per epoch

    @property
    def partial(self):
        return self.complete < self.runs


@dataclass
class Summary:
    methods: List[str]
    pairs: List[str]
    cells: dict  # (method, pair) -> CellSummary
    reference_methods: List[str]  # rows shown but not ranked (trained teachers)

    def cell(self, method, pair):
        return self.cells.get((method, pair))

    def best_in_column(self, pair):
        """Methods with the highest mean best top-1 in this column (ties: all), references excluded."""
        scores = {m: c.top1 for m in self.methods if m not in self.reference_methods
                  for c in [self.cell(m, pair)] if c is not None and c.top1 is not None}
        if not scores:
            return set()
        top = max(scores.values())
        return {m for m, v in scores.items() if round(v, 2) == round(top, 2)}


def _mean_curve(results):
    by_epoch = {}
    for r in results:
        for epoch, value in r.curve:
            by_epoch.setdefault(epoch, []).append(value)
    return [(e, sum(v) / len(v)) for e, v in sorted(by_epoch.items())]


def summarize_cell(method, pair, results):
    done = [r for r in results if r.complete]
    cell = CellSummary(method, pair, results[0].role, runs=len(results), complete=len(done))
    if not done:
        return cell
    cell.top1, cell.top1_std = mean_std([r.best_top1 for r in done])
    cell.last_top1, cell.last_top1_std = mean_std([r.last_top1 for r in done])
    cell.top5_at_best = _mean([r.top5_at_best for r in done])
    cell.wall_time_s = _mean([r.wall_time_s for r in done])
    cell.images_per_s = _mean([r.images_per_s for r in done])
    cell.student_params = next((r.student_params for r in done if r.student_params), None)
    cell.teacher_params = next((r.teacher_params for r in done if r.teacher_params), None)
    cell.seeds = [r.seed for r in done]
    cell.curve = _mean_curve(done)
    return cell


def _ordered(given, found):
    given = list(given or [])
    return given + [x for x in found if x not in given]


def summarize(results, methods=None, pairs=None):
    """A Summary over RunResults; `methods`/`pairs` fix the row/column order. Others follow in
    the order first seen, except that reference rows come first and the vanilla student next,
    as in the papers' tables."""
    groups = {}
    for r in results:
        groups.setdefault((r.method, r.pair), []).append(r)
    found_methods = list(dict.fromkeys(r.method for r in results))
    references = [m for m in found_methods if all(r.role == "teacher" for r in results if r.method == m)]
    students = sorted((m for m in found_methods if m not in references), key=lambda m: m.lower() not in BASELINES)
    methods = _ordered(methods, references + students)
    pairs = _ordered(pairs, list(dict.fromkeys(r.pair for r in results)))
    cells = {key: summarize_cell(*key, group) for key, group in groups.items()}
    return Summary(methods, pairs, cells, references)
