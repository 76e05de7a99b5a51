"""Speed CIs from constructed timings: pure functions, no clock. The order-statistic CI of
the median paired ratio, the ``resolved`` flag, and "not resolved" in the Markdown."""

from __future__ import annotations

import math

import pytest

from mindskip.profile import ProfileResult, median_ci, ratio_ci, to_markdown
from mindskip.profile.stats import median_ci_rank, min_repeats


def _coverage(n: int, k: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


@pytest.mark.parametrize(("n", "k"), [(5, None), (6, 1), (8, 1), (9, 2), (11, 2), (12, 3)])
def test_median_ci_rank_is_the_widest_rank_with_95_percent_coverage(n, k):
    assert median_ci_rank(n, 0.95) == k
    if k is not None:
        assert _coverage(n, k) >= 0.95 > _coverage(n, k + 1)
    assert min_repeats(0.95) == 6 and min_repeats(0.5) == 2


def test_median_ci_on_known_values():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0]  # n = 9: [x_(2), x_(8)]
    assert median_ci(xs) == (2.0, 8.0)
    assert median_ci(xs[:5]) is None  # 5 values cannot reach 95%
    assert median_ci(xs[:5], level=0.9) == (1.0, 5.0)


def test_paired_ratio_ci_and_resolved():
    dense = [1.0, 1.2, 0.9, 1.1, 1.0, 1.3, 1.0, 0.95, 1.05, 1.1]
    # twice as fast in every paired repeat, whatever the machine did: resolved
    fast = ratio_ci(dense, [t / 2 for t in dense])
    assert fast is not None and fast.n == 10
    assert fast.median == pytest.approx(2.0) and fast.ci_low == pytest.approx(2.0)
    assert fast.resolved
    # slower in every repeat: resolved too (the CI is below 1)
    assert ratio_ci(dense, [t * 1.25 for t in dense]).resolved
    # 5% faster in half the repeats, 5% slower in the others: the CI spans 1.0
    mixed = ratio_ci(dense, [t / (1.05 if i % 2 else 0.95) for i, t in enumerate(dense)])
    assert mixed.ci_low < 1.0 < mixed.ci_high and not mixed.resolved
    # too few repeats for a 95% CI: no interval, never resolved
    few = ratio_ci(dense[:5], [t / 2 for t in dense[:5]])
    assert few.ci_low is None and few.ci_high is None and not few.resolved
    assert few.median == pytest.approx(2.0) and few.low == pytest.approx(2.0)
    # not paired: nothing
    assert ratio_ci(dense, dense[:3]) is None and ratio_ci([], []) is None
    # a CI that touches 1.0 is not resolved
    touching = ratio_ci([1.0] * 6, [1.0, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert touching.ci_low == 1.0 and not touching.resolved


def _env() -> dict:
    keys = ("model", "weights", "dtype", "date", "cpu", "torch", "transformers", "mindskip")
    return {k: k for k in keys} | {"gpu": None, "torch_threads": 1}


def _row(variant: str, method: str, **kw) -> dict:
    base = dict(
        phase="prefill", cache="dynamic", batch=1, prompt_len=8, new_tokens=0, variant=variant,
        method=method, routers="r", skip_ratio=0.0, prompt_tokens=8, peak_mem_bytes=1,
        work_mem_bytes=1, kv_cache_bytes=1, aten_ops=1, check="", status="ok", repeats=10,
        time_s=1.0, tokens_per_s=8.0, latency_ms=1000.0,
    )  # fmt: skip
    return base | kw


def test_markdown_says_not_resolved_instead_of_a_ratio():
    ci = dict(speedup_min=0.5, speedup_max=2.0)
    rows = [
        _row("dense", "dense", speedup=1.0, speedup_ci_low=1.0, speedup_ci_high=1.0),
        _row("mindskip", "fast", speedup=1.5, speedup_ci_low=1.4, speedup_ci_high=1.6,
             resolved=True, **ci),
        _row("mindskip", "maybe", speedup=1.0123, speedup_ci_low=0.9, speedup_ci_high=1.1,
             resolved=False, **ci),
        _row("mindskip", "few", speedup=1.0456, resolved=False, repeats=3, **ci),
    ]  # fmt: skip
    md = to_markdown(ProfileResult(rows, _env(), {"ci_level": 0.95}))
    assert "| fast mindskip | 1.50x [1.40, 1.60] |" in md
    assert "| maybe mindskip | not resolved [0.90, 1.10] |" in md
    assert "| few mindskip | not resolved (3 repeats < 6) |" in md
    assert "1.01x" not in md and "1.05x" not in md  # no ratio for an unresolved cell
