"""The statistics behind the benchmark's confidence intervals (mdistiller/benchmark/stats.py),
against table values and hand-computed examples."""
import math

import pytest

from mdistiller.benchmark.stats import difference, incomplete_beta, paired_interval, t_cdf, t_quantile, welch_interval


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228),
                                          (30, 2.042), (1000, 1.962)])
def test_t_quantile_matches_the_printed_tables(df, expected):
    assert round(t_quantile(0.975, df), 3) == expected


def test_t_quantile_is_the_inverse_of_the_cdf_and_symmetric():
    assert t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-6)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-9)
    assert t_cdf(t_quantile(0.9, 3.5), 3.5) == pytest.approx(0.9, abs=1e-10)  # Welch's df is fractional
    # df = 1 is the Cauchy distribution: P(T <= 1) = 3/4
    assert t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    # I_x(1, 1) = x; I_x(a, b) = 1 - I_{1-x}(b, a)
    assert incomplete_beta(1, 1, 0.3) == pytest.approx(0.3, abs=1e-12)
    assert incomplete_beta(2.5, 0.5, 0.7) == pytest.approx(1 - incomplete_beta(0.5, 2.5, 0.3), abs=1e-12)


# KD's best top-1 on seeds 0, 1, 2, and a method that beats it by 1, 1 and 1.5 points on the same seeds.
KD = {0: 70.0, 1: 72.0, 2: 74.0}
METHOD = {0: 71.0, 1: 73.0, 2: 75.5}


def test_pairing_by_seed_makes_a_consistent_gain_significant():
    paired = difference(METHOD, KD)
    # d = (1, 1, 1.5): mean 7/6, s_d = sqrt(1/12), half width = t_{0.975,2} * s_d / sqrt(3) = 4.302653 / 6
    assert paired.test == "paired" and paired.n == 3 and paired.df == 2
    assert paired.mean == pytest.approx(7 / 6)
    assert (paired.low, paired.high) == (pytest.approx(7 / 6 - 4.302653 / 6, abs=1e-6),
                                         pytest.approx(7 / 6 + 4.302653 / 6, abs=1e-6))
    assert paired.significant


def test_the_same_numbers_on_different_seeds_are_not_significant_with_welch():
    other_seeds = {s + 3: v for s, v in METHOD.items()}
    welch = difference(other_seeds, KD)
    # s_a² = 61/12, s_b² = 4: se² = 61/36 + 4/3 = 109/36, df = se⁴ / ((61/36)²/2 + (4/3)²/2) = 3.9439
    assert welch.test == "welch" and welch.mean == pytest.approx(7 / 6)
    assert welch.df == pytest.approx((109 / 36) ** 2 / ((61 / 36) ** 2 / 2 + (4 / 3) ** 2 / 2))
    assert welch.df == pytest.approx(3.9439, abs=1e-4)
    half = t_quantile(0.975, welch.df) * math.sqrt(109 / 36)
    assert (welch.low, welch.high) == (pytest.approx(7 / 6 - half), pytest.approx(7 / 6 + half))
    assert welch.low < 0 < welch.high and not welch.significant


def test_too_few_seeds_and_zero_spread():
    assert difference({0: 71.0}, KD) is None and difference(METHOD, {0: 70.0}) is None
    exact = paired_interval([2.0, 3.0], [1.0, 2.0])  # the same gain on every seed: no width
    assert (exact.low, exact.mean, exact.high) == (1.0, 1.0, 1.0) and exact.significant
    flat = welch_interval([5.0, 5.0], [5.0, 5.0])
    assert (flat.low, flat.high, flat.df) == (0.0, 0.0, None) and not flat.significant
