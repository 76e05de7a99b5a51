"""Spread and confidence from per-repeat timings: pure functions, no torch, no clock.

Speed is compared through *paired* ratios: repeat ``r`` of every variant ran under the same
conditions (interleaved, the same inputs), so ``ref[r] / t[r]`` cancels what the machine
did meanwhile. A speedup is the median of those ratios, with a distribution-free
order-statistic CI of that median: ``[x_(k), x_(n+1-k)]`` of the sorted ratios covers the
true median with probability ``1 - 2 P(Binomial(n, 1/2) <= k - 1)``; ``k`` is the largest
that keeps the coverage at ``level`` or above. With too few repeats no ``k`` does (fewer
than 6 at 95%) and there is no CI. A cell is *resolved* when its CI excludes 1.0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def summary(xs: Sequence[float]) -> tuple[float, float, float, float, float]:
    """median, min, max, q1, q3."""
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return statistics.median(xs), min(xs), max(xs), q1, q3


def _binom_cdf_half(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_ci_rank(n: int, level: float) -> int | None:
    """The largest k with coverage of ``[x_(k), x_(n+1-k)]`` >= ``level``; None if none."""
    best = None
    for k in range(1, (n + 1) // 2 + 1):
        if 1.0 - 2.0 * _binom_cdf_half(n, k - 1) >= level:
            best = k
        else:
            break
    return best


def min_repeats(level: float) -> int:
    """The fewest repeats for which a CI of the median exists at ``level``."""
    n = 1
    while median_ci_rank(n, level) is None:
        n += 1
    return n


def median_ci(xs: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Order-statistic CI of the median of ``xs``; None when ``len(xs)`` is too small."""
    k = median_ci_rank(len(xs), level)
    if k is None:
        return None
    s = sorted(xs)
    return s[k - 1], s[len(s) - k]


@dataclass(frozen=True)
class RatioCI:
    """The median of paired ratios ``ref[r] / t[r]``, their range and the CI of the median.

    ``ci_low``/``ci_high`` are None when there are too few repeats for ``level``;
    ``resolved`` is True only when a CI exists and excludes 1.0.
    """

    median: float
    low: float
    high: float
    ci_low: float | None
    ci_high: float | None
    n: int
    level: float

    @property
    def resolved(self) -> bool:
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 1.0 or self.ci_high < 1.0


def ratio_ci(ref: Sequence[float], times: Sequence[float], level: float = 0.95) -> RatioCI | None:
    """Paired per-repeat ratios ``ref[r] / times[r]`` (a speedup when ``ref`` is the
    baseline's times), summarised; None when the two are not paired (empty or unequal)."""
    if not ref or len(ref) != len(times):
        return None
    rs = [a / b for a, b in zip(ref, times, strict=True)]
    ci = median_ci(rs, level)
    lo, hi = ci if ci is not None else (None, None)
    return RatioCI(statistics.median(rs), min(rs), max(rs), lo, hi, len(rs), level)
