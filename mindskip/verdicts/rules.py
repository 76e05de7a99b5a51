"""The verdict rule and the smallest detectable effect (dynamic share: mindskip.capacity).

Written once here, so that the claims table, the README and the tests all use the same
rule. Pure Python (the standard library's ``statistics.NormalDist`` for z quantiles).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist

HOLDS = "holds"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
UNDECIDABLE = "not decidable at this n"
PREMISE_NOT_MET = "premise not met"
UNMATCHED = "unmatched ratio"
NOT_RUN = "not run"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, UNDECIDABLE, PREMISE_NOT_MET, UNMATCHED, NOT_RUN)
POWER_Z = "two-sided 95% CI (each end a one-sided 2.5% test), power 0.8"
DIRECTIONS = ("greater", "less", "equivalent")

Band = tuple[float, float]


def minimum_detectable_effect(stderr: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true effect that a two-sided test at level ``alpha`` detects with ``power``.

    ``mde = (z_{1 - alpha/2} + z_{power}) * stderr``; with alpha = 0.05 and power = 0.8 the
    factor is 1.960 + 0.842 = 2.80. ``stderr`` is the paired standard error of the
    effect at the comparison's n (the same items, stratified by task), so the MDE says
    how large a difference the run could have resolved: an "inconclusive" verdict with
    an MDE of 5 points means the run cannot tell effects smaller than about 5 points
    from none, not that there is none.
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    z = NormalDist()
    return (z.inv_cdf(1.0 - alpha / 2.0) + z.inv_cdf(power)) * float(stderr)


def items_to_decide(
    effect: float,
    stderr: float,
    n: int,
    direction: str,
    tolerance: float | Sequence[float] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Items a run would need for this comparison to be decided, if the true effect were
    the observed one and the per-item spread stayed as observed (stderr ~ 1/sqrt(n)).

    The comparison is decided when the two-sided ``1 - alpha`` CI clears the nearest
    bound the verdict turns on (0 for a direction, the band's ends for a tolerance); the
    CI's half-width at n items is ``z_{1-alpha/2} stderr_n`` and a power of ``power`` adds
    ``z_power stderr_n``, so ``n_needed = n * ((z_{1-alpha/2} + z_power) stderr / margin)^2``
    with ``margin`` the distance from the effect to that bound (the MDE formula of
    :func:`minimum_detectable_effect` solved for n). For a band, the bound is whichever
    end decides: inside the band, the nearer end (to hold); outside, the end it lies
    beyond (to be contradicted). Infinite when the effect sits on a bound; NaN without a
    stderr.
    """
    if _missing(effect) or _missing(stderr) or n <= 0:
        return math.nan
    if direction in ("greater", "less"):
        margin = abs(float(effect))
    elif direction == "equivalent":
        if tolerance is None:
            raise ValueError("direction 'equivalent' needs a tolerance")
        lo, hi = tolerance_band(tolerance)
        e = float(effect)
        margin = min(e - lo, hi - e) if lo < e < hi else max(lo - e, e - hi)
    else:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if margin <= 0:
        return math.inf
    return n * (minimum_detectable_effect(stderr, alpha, power) / margin) ** 2


def tolerance_band(tolerance: float | Sequence[float]) -> Band:
    """``t`` -> ``(-t, t)``; a pair ``(lo, hi)`` is kept (either end may be infinite)."""
    if isinstance(tolerance, int | float):
        t = abs(float(tolerance))
        return (-t, t)
    lo, hi = (float(x) for x in tolerance)
    if not lo < hi:
        raise ValueError(f"a tolerance band needs lo < hi, got ({lo}, {hi})")
    return (lo, hi)


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def verdict(
    effect: float | None,
    ci_low: float | None,
    ci_high: float | None,
    direction: str,
    tolerance: float | Sequence[float] | None = None,
) -> str:
    """The verdict on one claim from one paired effect and its confidence interval.

    - **not run**: there is no effect (``effect`` is None): the run has no such
      comparison.
    - ``direction="greater"`` (the claim says the effect is above 0): **holds** if the
      CI lies above 0 (``ci_low > 0``), **contradicted** if it lies below 0
      (``ci_high < 0``), **inconclusive** otherwise.
    - ``direction="less"``: the mirror image (holds if ``ci_high < 0``).
    - ``direction="equivalent"`` (an "about free" claim) with ``tolerance``, a number
      ``t`` for the band ``(-t, t)`` or a band ``(lo, hi)``; a one-sided band such as
      ``(-t, inf)`` states non-inferiority ("no worse than t"): **holds** if the whole
      CI lies inside the band, **contradicted** if the whole CI lies outside it,
      **inconclusive** otherwise.

    A CI that spans 0 never makes a direction claim hold or fail: that is
    "inconclusive", never a finding (report the smallest detectable effect beside it).
    A CI with a missing end (no bootstrap, or one item) is inconclusive. The verdict is
    about the model and the items of the run that produced the CI, nothing wider.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if _missing(effect):
        return NOT_RUN
    if _missing(ci_low) or _missing(ci_high):
        return INCONCLUSIVE
    lo, hi = float(ci_low), float(ci_high)  # type: ignore[arg-type]
    if lo > hi:
        raise ValueError(f"ci_low {lo} is above ci_high {hi}")
    if direction == "greater":
        return HOLDS if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE
    if direction == "less":
        return HOLDS if hi < 0 else CONTRADICTED if lo > 0 else INCONCLUSIVE
    if tolerance is None:
        raise ValueError("direction 'equivalent' needs a tolerance")
    band_lo, band_hi = tolerance_band(tolerance)
    if band_lo < lo and hi < band_hi:
        return HOLDS
    if hi < band_lo or lo > band_hi:
        return CONTRADICTED
    return INCONCLUSIVE


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """One verdict for a claim tested by several comparisons (e.g. claim 4 at two ratios).

    **not run** if none ran (an unmatched comparison does not count as run: it decides
    nothing); **contradicted** if any comparison is contradicted; **holds** if every
    comparison that ran holds; else **inconclusive** if any is inconclusive (more items
    could decide it), else **not decidable at this n** if any is, else **premise not
    met**. A claim with some comparisons not run can still hold on the ones that ran
    (the table says which did not).
    """
    vs = list(verdicts)
    for v in vs:
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}")
    ran = [v for v in vs if v not in (NOT_RUN, UNMATCHED)]
    if not ran:
        return NOT_RUN
    if CONTRADICTED in ran:
        return CONTRADICTED
    if all(v == HOLDS for v in ran):
        return HOLDS
    for v in (INCONCLUSIVE, UNDECIDABLE):
        if v in ran:
            return v
    return PREMISE_NOT_MET
