"""Confidence intervals for a difference of mean accuracies over seeds (pure functions).

Two cells (a method and the baseline, same teacher/student pair) each have one accuracy per seed.
- Paired: both cells ran the same seeds. Runs of one seed share the batch sequence (and, in
  `--paired` mode, one teacher pass), so the seed's noise is largely common to both; the
  per-seed differences d_s carry only what differs. Student's t on d_s: mean ± t_{0.975, n-1} *
  s_d / sqrt(n).
- Unpaired (Welch): the seeds differ. Mean difference ± t_{0.975, df} * sqrt(s_a²/n_a + s_b²/n_b),
  df by the Welch–Satterthwaite formula.
A difference is "significant" when its interval excludes zero. An interval needs two or more
seeds in each cell; with zero spread it shrinks to the point itself.

The Student-t quantile is computed here (no scipy): the t CDF through the regularized incomplete
beta function (continued fraction, modified Lentz), inverted by bisection.
"""
import math
from dataclasses import dataclass
from typing import Optional

LEVEL = 0.95
_TINY = 1e-300


def _beta_fraction(a, b, x):
    """The continued fraction of I_x(a, b) (modified Lentz), converged to ~1e-15."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    value = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return value


def incomplete_beta(a, b, x):
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use symmetry on the other
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p, df):
    """The t with P(T <= t) = p, by bisection on the CDF (to ~1e-12)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0 (got p={p}, df={df})")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    while high - low > 1e-12 * max(1.0, high):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


@dataclass
class Interval:
    """A difference (a - b) of means with its confidence interval."""
    mean: float
    low: Optional[float]
    high: Optional[float]
    test: str  # "paired" or "welch"
    n: int  # seeds (paired), or the smaller cell's seeds (welch)
    df: Optional[float]

    @property
    def significant(self):
        """The interval excludes zero."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def _moments(values):
    n = len(values)
    mean = sum(values) / n
    return n, mean, sum((v - mean) ** 2 for v in values) / (n - 1)


def paired_interval(a, b, level=LEVEL):
    """Student's t on the per-seed differences a_s - b_s (same seeds, same order, n >= 2)."""
    n, mean, var = _moments([x - y for x, y in zip(a, b)])
    half = t_quantile(0.5 + level / 2, n - 1) * math.sqrt(var / n)
    return Interval(mean, mean - half, mean + half, "paired", n, n - 1)


def welch_interval(a, b, level=LEVEL):
    """Welch's unequal-variance interval for mean(a) - mean(b) (each with n >= 2)."""
    (na, ma, va), (nb, mb, vb) = _moments(a), _moments(b)
    mean, se2 = ma - mb, va / na + vb / nb
    if se2 == 0.0:  # no spread in either cell: the difference is exact, df is undefined
        return Interval(mean, mean, mean, "welch", min(na, nb), None)
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
    return Interval(mean, mean - half, mean + half, "welch", min(na, nb), df)


def difference(a_by_seed, b_by_seed, level=LEVEL):
    """mean(a) - mean(b) with its interval from two {seed: value} dicts: paired when both have
    the same seeds, Welch otherwise; None when a cell has fewer than two seeds."""
    if len(a_by_seed) < 2 or len(b_by_seed) < 2:
        return None
    if set(a_by_seed) == set(b_by_seed):
        seeds = sorted(a_by_seed, key=str)
        return paired_interval([a_by_seed[s] for s in seeds], [b_by_seed[s] for s in seeds], level)
    return welch_interval(list(a_by_seed.values()), list(b_by_seed.values()), level)
