"""The paired significance tests: McNemar's exact test against scipy's binomial test and
hand-computed values, the paired bootstrap's determinism, its interval and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from mtp_core.errors import InputError
from trainer.significance import SignificanceMethod, mcnemar, paired_bootstrap


def outcomes(only_a: int, only_b: int, both: int = 0, neither: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row correctness of two models with the given discordant and concordant counts,
    rows shuffled (the test must not depend on their order)."""
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    order = np.random.default_rng(3).permutation(len(a))
    return np.asarray(a)[order], np.asarray(b)[order]


def test_mcnemar_12_vs_3_is_scipys_exact_binomial_p_and_significant() -> None:
    a, b = outcomes(12, 3, both=50, neither=10)
    t = mcnemar(a, b)
    assert t.method is SignificanceMethod.MCNEMAR_EXACT
    assert t.discordant == (12, 3) and t.rows == 75 and t.statistic == 3.0
    assert t.p_value == pytest.approx(binomtest(12, 15, 0.5).pvalue, rel=1e-12)
    assert t.p_value == pytest.approx(0.03515625)  # 2 * sum_{k<=3} C(15,k) / 2^15
    assert t.significant and t.interval is None and t.alpha == 0.05
    assert t.describe() == ("McNemar exact test: 12 vs 3 discordant rows (right only in A vs "
                            "only in B), p = 0.0352 < 0.05: significant")
    # swapped models: the same p, the counts reversed
    swapped = mcnemar(b, a)
    assert swapped.discordant == (3, 12) and swapped.p_value == t.p_value


@pytest.mark.parametrize(("only_a", "only_b", "exact"), [
    (0, 6, 2 / 64),           # all six discordant rows one way: 2 * (1/2)^6
    (5, 0, 2 / 32),           # five one way: 0.0625, not significant at 0.05
    (1, 1, 1.0),
    (7, 3, 2 * sum(math.comb(10, k) for k in range(4)) / 2**10),
    (40, 25, None),
    (100, 140, None),
])
def test_mcnemar_p_values_match_the_exact_binomial_test(only_a: int, only_b: int,
                                                        exact: float | None) -> None:
    t = mcnemar(*outcomes(only_a, only_b, both=20, neither=5))
    want = binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert t.p_value == pytest.approx(min(want, 1.0), rel=1e-12)
    if exact is not None:
        assert t.p_value == pytest.approx(exact, rel=1e-12)
    assert t.significant == (want < 0.05)


def test_mcnemar_without_discordant_rows_is_p_1_and_not_significant() -> None:
    a, b = outcomes(0, 0, both=30, neither=9)
    t = mcnemar(a, b)
    assert t.p_value == 1.0 and not t.significant and t.discordant == (0, 0)
    assert t.describe(("old", "new")) == ("McNemar exact test: 0 vs 0 discordant rows (right "
                                          "only in old vs only in new), p = 1 >= 0.05: "
                                          "not significant")
    # 0/1 integers are correctness too; a stricter alpha changes the verdict, not the p
    assert mcnemar([1, 0, 1], [1, 0, 1]).p_value == 1.0
    strict = mcnemar(*outcomes(12, 3), alpha=0.01)
    assert strict.p_value == pytest.approx(0.03515625) and not strict.significant


def test_the_bootstrap_is_deterministic_with_its_seed() -> None:
    rng = np.random.default_rng(0)
    loss_a = rng.exponential(1.0, 300)
    loss_b = loss_a + rng.normal(0.05, 0.5, 300)
    first = paired_bootstrap(loss_a, loss_b, seed=7)
    again = paired_bootstrap(loss_a.copy(), loss_b.copy(), seed=7)
    assert first == again  # frozen values: every field equal, the interval to the bit
    other = paired_bootstrap(loss_a, loss_b, seed=8)
    assert other.interval != first.interval
    assert first.method is SignificanceMethod.PAIRED_BOOTSTRAP
    assert first.p_value is None and first.resamples == 2000 and first.rows == 300
    assert first.statistic == pytest.approx(float(np.mean(loss_b - loss_a)), rel=1e-12)
    assert first.interval is not None
    lo, hi = first.interval
    assert lo < first.statistic < hi


def test_identical_losses_give_the_interval_0_0_and_not_significant() -> None:
    loss = np.random.default_rng(1).gamma(2.0, 3.0, 500)
    t = paired_bootstrap(loss, loss.copy())
    assert t.interval == (0.0, 0.0) and t.statistic == 0.0 and not t.significant
    assert t.describe() == ("Paired bootstrap (2000 resamples of 500 rows): mean loss B - A = "
                            "0, 95% interval [0, 0] includes 0: not significant")


def test_a_clear_difference_is_significant_and_the_interval_is_the_normal_one() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    loss_a = rng.exponential(2.0, n)
    diff = rng.normal(-0.3, 1.0, n)  # B better by 0.3 per row on average
    loss_b = loss_a + diff
    t = paired_bootstrap(loss_a, loss_b, resamples=4000, confidence=0.9)
    assert t.interval is not None and t.significant and t.confidence == 0.9
    lo, hi = t.interval
    assert hi < 0.0
    # the percentile interval of a mean of many rows is close to the normal approximation
    se = float(np.std(diff, ddof=1)) / math.sqrt(n)
    z = 1.6448536269514722  # the 95th percentile of N(0, 1): a two-sided 90% interval
    assert lo == pytest.approx(diff.mean() - z * se, abs=0.15 * se * z)
    assert hi == pytest.approx(diff.mean() + z * se, abs=0.15 * se * z)
    # a loss shifted by a constant: every resample has the same mean
    shifted = paired_bootstrap(loss_a, loss_a + 0.5)
    assert shifted.interval is not None and shifted.significant
    assert shifted.interval == pytest.approx((0.5, 0.5), abs=1e-12)


def test_a_noisy_difference_around_zero_is_not_significant() -> None:
    rng = np.random.default_rng(4)
    loss_a = rng.exponential(1.0, 200)
    diff = rng.normal(0.0, 1.0, 200)
    t = paired_bootstrap(loss_a, loss_a + diff - diff.mean())  # mean difference exactly ~0
    assert t.interval is not None and t.interval[0] < 0.0 < t.interval[1]
    assert not t.significant


@pytest.mark.parametrize(("call", "words"), [
    (lambda: mcnemar([True, False], [True]), "correct_a has 2 rows and correct_b 1"),
    (lambda: mcnemar([], []), "empty"),
    (lambda: mcnemar([0, 2], [1, 1]), "correct_a holds values other than True/False"),
    (lambda: mcnemar([True], [True], alpha=1.0), "alpha=1.0: allowed values are strictly "
                                                  "between 0 and 1"),
    (lambda: paired_bootstrap([1.0, np.nan], [1.0, 2.0]), "loss_a has 1 NaN or infinite "
                                                          "values (first: row 2)"),
    (lambda: paired_bootstrap([1.0], [1.0], resamples=0), "resamples=0"),
    (lambda: paired_bootstrap([1.0], [1.0], confidence=95), "confidence=95"),
    (lambda: paired_bootstrap(np.ones((2, 2)), np.ones((2, 2))), "loss_a has shape (2, 2)"),
])
def test_bad_arguments_are_input_errors_naming_them(call: object, words: str) -> None:
    with pytest.raises(InputError) as err:
        call()  # type: ignore[operator]
    assert words in str(err.value)
