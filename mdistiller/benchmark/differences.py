"""Each table cell minus the baseline row's cell, with a 95% confidence interval (stats.py).

For every method (trained teachers excluded) and pair, over the complete runs: the difference of
mean "best" top-1 and of mean "last" top-1 to the baseline method in the same column, paired by
seed when both cells ran the same seeds, Welch otherwise, marked where the interval excludes
zero. Cells with fewer than two complete seeds (in either cell) get the difference without an
interval. Baseline: the one named (tools/benchmark.py --baseline, the spec's `baseline`), else
the first distiller row (the first row that is neither a reference nor the vanilla student).

Written as a section of results.md, differences.csv (one row per cell and metric) and the
"differences" entry of results.json (report.py).
"""
from dataclasses import asdict, dataclass
from typing import Optional

from ..errors import ConfigError
from .spec import find_method
from .stats import LEVEL, Interval, difference
from .summary import BASELINES

METRICS = (("best", "best_top1"), ("last", "last_top1"))
SIGNIFICANT = "*"
DASH = "—"
BEST_AND_LAST = ("“Best” is a run's highest test top-1 over its epochs (what KD papers print); it is selected "
                 "on the test set, so it is optimistic. “Last” is the test top-1 after the final epoch.")
CSV_FIELDS = ["method", "pair", "baseline", "metric", "difference", "ci_low", "ci_high", "test", "n", "df",
              "significant"]


@dataclass
class CellDifference:
    method: str
    pair: str
    baseline: str
    metric: str  # "best" or "last"
    mean: Optional[float]  # mean(method) - mean(baseline); None when a cell has no complete run
    interval: Optional[Interval]  # None with fewer than two seeds in a cell


def default_baseline(summary):
    """The first distiller row: not a reference (trained teacher), not the vanilla student."""
    rows = [m for m in summary.methods if m not in summary.reference_methods]
    return next((m for m in rows if m.lower() not in BASELINES), rows[0] if rows else None)


def choose_baseline(summary, baseline=None):
    if baseline is None:
        return default_baseline(summary)
    found = find_method(summary.methods, baseline)  # Vanilla and NONE name the same row
    if found is None:
        raise ConfigError(f"--baseline {baseline} is not a row of this benchmark ({', '.join(summary.methods)}); "
                          "name one of them")
    return found


def values_by_seed(results, field):
    """{(method, pair): {seed: value}} over complete runs."""
    groups = {}
    for r in results:
        groups.setdefault((r.method, r.pair), []).append(r)
    return {key: values for key, group in groups.items() for values in [seed_values(group, field)] if values}


def _mean(values):
    return sum(values) / len(values)


def cell_differences(results, summary, baseline=None):
    """(baseline, [CellDifference]) for every non-reference row but the baseline, both metrics."""
    base = choose_baseline(summary, baseline)
    found = []
    for metric, field in METRICS:
        values = values_by_seed(results, field)
        for method in summary.methods:
            if method == base or method in summary.reference_methods:
                continue
            for pair in summary.pairs:
                mine, theirs = values.get((method, pair)), values.get((base, pair))
                if summary.cell(method, pair) is None or summary.cell(base, pair) is None:
                    continue
                mean = _mean(list(mine.values())) - _mean(list(theirs.values())) if mine and theirs else None
                interval = difference(mine, theirs) if mine and theirs else None
                found.append(CellDifference(method, pair, base, metric, mean, interval))
    return base, found


def format_difference(diff):
    """`+1.23 [+0.45, +2.01]*` (the mark: the interval excludes zero); `+1.23` without an interval."""
    return format_interval(diff.mean, diff.interval)


def format_interval(mean, interval):
    if mean is None:
        return DASH
    if interval is None:
        return f"{mean:+.2f}"
    return (f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"
            + (SIGNIFICANT if interval.significant else ""))


def seed_values(results, field="best_top1"):
    """{seed: value} of the complete runs among `results` (a run without a seed counts by folder)."""
    return {r.folder if r.seed is None else r.seed: getattr(r, field) for r in results
            if r.complete and getattr(r, field) is not None}


def difference_table(summary, diffs, metric):
    """Markdown: one row per method, one column per pair, for metric "best" or "last"."""
    cells = {(d.method, d.pair): d for d in diffs if d.metric == metric}
    methods = list(dict.fromkeys(d.method for d in diffs))
    lines = ["| " + " | ".join([f"{metric.capitalize()} top-1 − {diffs[0].baseline}"] + summary.pairs) + " |",
             "| " + " | ".join([":--"] + [":-:"] * len(summary.pairs)) + " |"]
    for method in methods:
        row = [method] + [format_difference(cells[(method, p)]) if (method, p) in cells else "" for p in summary.pairs]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def caption(baseline):
    return (f"Difference to {baseline} in points: mean over complete runs [{LEVEL:.0%} confidence interval]; paired "
            "by seed (Student's t on the per-seed differences) where both cells ran the same seeds, Welch's t "
            f"otherwise; {SIGNIFICANT}: the interval excludes zero. Cells with one seed show the difference alone. "
            + BEST_AND_LAST)


def markdown_section(summary, baseline, diffs):
    """The `## Difference to <baseline>` section of results.md ('' when there is nothing to compare)."""
    if not diffs:
        return ""
    return "\n".join([f"## Difference to {baseline}", "", difference_table(summary, diffs, "best"), "",
                      difference_table(summary, diffs, "last"), "", caption(baseline), ""])


def csv_rows(diffs):
    for d in diffs:
        iv = d.interval
        yield {"method": d.method, "pair": d.pair, "baseline": d.baseline, "metric": d.metric,
               "difference": "" if d.mean is None else round(d.mean, 6),
               "ci_low": "" if iv is None else round(iv.low, 6), "ci_high": "" if iv is None else round(iv.high, 6),
               "test": "" if iv is None else iv.test, "n": "" if iv is None else iv.n,
               "df": "" if iv is None or iv.df is None else round(iv.df, 4),
               "significant": "" if iv is None else iv.significant}


def as_json(baseline, diffs):
    entries = []
    for d in diffs:
        entry = asdict(d)
        if d.interval is not None:
            entry["interval"]["significant"] = d.interval.significant
        entries.append(entry)
    return {"baseline": baseline, "level": LEVEL, "note": BEST_AND_LAST, "differences": entries}
