"""Paired significance tests for two models scored on the same rows (numpy and scipy only).

Two models evaluated on the same held-out rows give paired outcomes, and a paired test is the
fair question "is the difference more than the luck of these rows?":

- :func:`mcnemar`: per-row correctness of two classifiers. Only the discordant rows (one model
  right, the other wrong) carry information; under "no difference" each such row is a fair
  coin, so the exact two-sided binomial test on them gives the p-value.
- :func:`paired_bootstrap`: per-row losses (e.g. squared errors of two regressors). The rows
  are resampled with replacement, ``resamples`` times, from a generator seeded with ``seed``,
  and the percentile interval of ``mean(loss_b - loss_a)`` is reported; the difference is
  significant when the interval excludes 0.

Both return a :class:`SignificanceTest`, a frozen value with a one-line :meth:`describe`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from mtp_core.errors import InputError

__all__ = ["DEFAULT_ALPHA", "SignificanceMethod", "SignificanceTest", "mcnemar",
           "paired_bootstrap"]

#: The significance level when none is given (a 95% interval for the bootstrap).
DEFAULT_ALPHA = 0.05

# Bootstrap indices drawn per chunk (resamples x rows): bounds the memory of a large test set
# at about 32 MB of int64 indices whatever the row count.
_CHUNK_VALUES = 4_000_000


class SignificanceMethod(enum.StrEnum):
    """Which paired test produced a :class:`SignificanceTest`."""

    MCNEMAR_EXACT = "mcnemar_exact"
    PAIRED_BOOTSTRAP = "paired_bootstrap"

    @property
    def display_name(self) -> str:
        return {SignificanceMethod.MCNEMAR_EXACT: "McNemar exact test",
                SignificanceMethod.PAIRED_BOOTSTRAP: "Paired bootstrap"}[self]


@dataclass(frozen=True)
class SignificanceTest:
    """The outcome of one paired test of model B against model A on the same rows.

    ``statistic``: McNemar, the smaller discordant count (the binomial test's statistic);
    bootstrap, the observed ``mean(loss_b - loss_a)``. ``p_value`` is None for the bootstrap,
    ``interval`` (the ``confidence`` percentile interval of that mean) None for McNemar.
    ``discordant`` (McNemar): rows right only in A, rows right only in B.
    """

    method: SignificanceMethod
    statistic: float
    p_value: float | None
    interval: tuple[float, float] | None
    alpha: float
    confidence: float
    significant: bool
    rows: int
    discordant: tuple[int, int] | None = None
    resamples: int | None = None

    def describe(self, labels: tuple[str, str] = ("A", "B")) -> str:
        """One line: the test, its numbers and the verdict."""
        a, b = labels
        name = self.method.display_name
        verdict = "significant" if self.significant else "not significant"
        if self.method is SignificanceMethod.MCNEMAR_EXACT:
            assert self.discordant is not None and self.p_value is not None
            only_a, only_b = self.discordant
            sign = "<" if self.p_value < self.alpha else ">="
            return (f"{name}: {only_a} vs {only_b} discordant rows (right only in "
                    f"{a} vs only in {b}), p = {self.p_value:.3g} {sign} {self.alpha:g}: "
                    f"{verdict}")
        assert self.interval is not None
        lo, hi = self.interval
        where = "excludes 0" if self.significant else "includes 0"
        return (f"{name} ({self.resamples} resamples of {self.rows} rows): mean "
                f"loss {b} - {a} = {self.statistic:.4g}, {self.confidence:.0%} interval "
                f"[{lo:.4g}, {hi:.4g}] {where}: {verdict}")


def _paired(x: object, y: object, names: tuple[str, str], dtype: type) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Two 1-D arrays of the same, non-zero length (InputError naming the argument)."""
    out = []
    for value, name in zip((x, y), names, strict=True):
        arr = np.asarray(value)
        if arr.ndim != 1:
            raise InputError(f"{name} has shape {arr.shape}; expected one value per row (1-D)")
        out.append(arr)
    if len(out[0]) != len(out[1]):
        raise InputError(f"{names[0]} has {len(out[0])} rows and {names[1]} {len(out[1])}; a "
                         "paired test needs both models' values on the same rows")
    if len(out[0]) == 0:
        raise InputError(f"{names[0]} and {names[1]} are empty; a paired test needs at least "
                         "one row")
    if dtype is bool:
        for arr, name in zip(out, names, strict=True):
            if arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all():
                raise InputError(f"{name} holds values other than True/False (or 1/0), e.g. "
                                 f"{arr[~np.isin(arr, (0, 1))][0]!r}; give per-row correctness")
        return out[0].astype(bool), out[1].astype(bool)
    for arr, name in zip(out, names, strict=True):
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{name} has dtype {arr.dtype}; expected numbers (per-row losses)")
    a, b = out[0].astype(np.float64), out[1].astype(np.float64)
    for arr, name in ((a, names[0]), (b, names[1])):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputError(f"{name} has {int(bad.sum())} NaN or infinite values (first: row "
                             f"{int(np.argmax(bad)) + 1}); losses must be finite")
    return a, b


def _check_level(value: float, name: str) -> None:
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise InputError(f"{name}={value!r}: allowed values are strictly between 0 and 1 "
                         "(e.g. 0.05 for alpha, 0.95 for confidence)")


def mcnemar(correct_a: object, correct_b: object, *, alpha: float = DEFAULT_ALPHA
            ) -> SignificanceTest:
    """McNemar's exact test on per-row correctness of models A and B (same rows, same order).

    Two-sided exact binomial test (p = 1/2) on the discordant rows; with none, p = 1.0.
    Significant when p < ``alpha``.
    """
    from scipy.stats import binomtest

    _check_level(alpha, "alpha")
    a, b = _paired(correct_a, correct_b, ("correct_a", "correct_b"), bool)
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(b & ~a))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    p = min(p, 1.0)  # scipy's two-sided sum may round a hair above 1
    return SignificanceTest(SignificanceMethod.MCNEMAR_EXACT, float(min(only_a, only_b)), p,
                            None, alpha, 1.0 - alpha, p < alpha, len(a), (only_a, only_b))


def paired_bootstrap(loss_a: object, loss_b: object, *, resamples: int = 2000, seed: int = 0,
                     confidence: float = 1.0 - DEFAULT_ALPHA) -> SignificanceTest:
    """The percentile bootstrap interval of ``mean(loss_b - loss_a)`` over the rows.

    The same inputs, ``resamples`` and ``seed`` give the same interval. Significant when the
    interval excludes 0 (identical losses give [0, 0]: not significant). A negative mean
    means B's loss is lower.
    """
    _check_level(confidence, "confidence")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise InputError(f"resamples={resamples!r}: allowed values are whole numbers >= 1 "
                         "(e.g. 2000)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed={seed!r}: allowed values are whole numbers >= 0")
    a, b = _paired(loss_a, loss_b, ("loss_a", "loss_b"), float)
    diff = b - a
    n = len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, np.float64)
    step = max(1, _CHUNK_VALUES // n)  # depends only on n: the same draws on every machine
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lo, hi = (float(v) for v in np.quantile(means, [alpha / 2, 1.0 - alpha / 2]))
    if not np.any(diff):  # exactly equal losses: no resample can differ (no rounding noise)
        lo = hi = 0.0
    observed = float(diff.mean())
    significant = lo > 0.0 or hi < 0.0
    assert math.isfinite(lo) and math.isfinite(hi)
    return SignificanceTest(SignificanceMethod.PAIRED_BOOTSTRAP, observed, None, (lo, hi),
                            alpha, confidence, significant, n, None, resamples)
