"""One call per comparison: a method vs dense, or method A vs method B, each paired on dense.

All comparisons in one :func:`compute_pairs` call share the items, the seed and so the
bootstrap resample (``A - B`` is resampled on the same items for both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import (
    METRICS,
    N_BOOT,
    POOLED,
    Estimate,
    ItemTable,
    PairedMetrics,
    Rows,
    align_runs,
    item_metrics,
    run_arrays,
    score_columns,
    summarise,
)


@dataclass(frozen=True)
class Mixture:
    """A baseline one can run at any ratio between two of its points: run ``hi`` on a
    share ``weight`` of the sequences and ``lo`` on the rest (each drawn per sequence).
    Its per-item metric is, in expectation, ``weight * m(hi) + (1 - weight) * m(lo)``,
    and its skip ratio ``weight * r_hi + (1 - weight) * r_lo``; ``lo`` may be the
    reference (dense: ratio 0, metrics 0)."""

    lo: str
    hi: str
    weight: float
    ratio_lo: float
    ratio_hi: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"a mixture weight lies in [0, 1], got {self.weight}")

    @classmethod
    def at(cls, ratio: float, lo: str, ratio_lo: float, hi: str, ratio_hi: float) -> Mixture:
        """The mixture of ``lo`` and ``hi`` whose skip ratio is ``ratio``."""
        if not ratio_lo <= ratio <= ratio_hi or ratio_hi <= ratio_lo:
            raise ValueError(f"ratio {ratio} is not between {ratio_lo} and {ratio_hi}")
        w = (ratio - ratio_lo) / (ratio_hi - ratio_lo)
        return cls(lo, hi, w, ratio_lo, ratio_hi)

    @property
    def ratio(self) -> float:
        return self.weight * self.ratio_hi + (1.0 - self.weight) * self.ratio_lo

    @property
    def name(self) -> str:
        return f"{self.hi} x{self.weight:.3f} + {self.lo} x{1 - self.weight:.3f}"

    def __str__(self) -> str:
        return self.name


Baseline = str | Mixture
Pair = tuple[str, Baseline, str]  # (method, baseline, reference); baseline == reference: vs ref


def _estimates(summary: Any, offset: int, tasks: Sequence[str], **meta: Any) -> list[Estimate]:
    out = []
    for j, metric in enumerate(METRICS):
        col = offset + j
        for t, task in enumerate([*tasks, POOLED]):
            n = int(summary.n[t, col])
            if n == 0:
                continue
            out.append(
                Estimate(
                    metric=metric,
                    task=task,
                    value=float(summary.value[t, col]),
                    stderr=float(summary.stderr[t, col]),
                    ci_low=float(summary.ci_low[t, col]),
                    ci_high=float(summary.ci_high[t, col]),
                    n=n,
                    **meta,
                )
            )
    return out


def item_values(
    runs: Mapping[str, Rows],
    pairs: Sequence[Pair],
    *,
    score: str | Mapping[str, str] | None = None,
    normalise: bool = True,
    tasks: Iterable[str] | None = None,
    filters: Mapping[str, str] | None = None,
) -> tuple[ItemTable, dict[str, str], np.ndarray]:
    """The aligned items, each task's score column and the per-item values behind
    :func:`compute_pairs`: an ``(items, len(pairs) * len(METRICS))`` array, one block of
    :data:`METRICS` columns per pair (NaN where a metric is undefined for an item)."""
    used = list(dict.fromkeys(name for pair in pairs for name in pair_names(pair)))
    missing = [name for name in used if name not in runs]
    if missing:
        raise KeyError(f"no rows for runs {missing} (have {sorted(runs)})")
    if not used:
        raise ValueError("no pairs to compare")
    table = align_runs({name: runs[name] for name in used}, tasks=tasks, filters=filters)
    scores = score_columns(table, score)
    arrays = {name: run_arrays(table, name, scores, normalise) for name in used}
    cache: dict[tuple[str, str], np.ndarray] = {}

    def vs(method: str, ref: str) -> np.ndarray:
        if (method, ref) not in cache:
            cache[method, ref] = item_metrics(arrays[method], arrays[ref])
        return cache[method, ref]

    def base(b: Baseline, ref: str) -> np.ndarray | float:
        if isinstance(b, Mixture):
            return b.weight * base(b.hi, ref) + (1.0 - b.weight) * base(b.lo, ref)
        return 0.0 if b == ref else vs(b, ref)

    blocks = [vs(a, r) - base(b, r) for a, b, r in pairs]
    return table, scores, np.hstack(blocks)


def pair_names(pair: Pair) -> list[str]:
    """Every run a comparison reads: A, B (a mixture's two points) and the reference."""
    a, b, r = pair
    return [a, *([b.lo, b.hi] if isinstance(b, Mixture) else [b]), r]


def compute_pairs(
    runs: Mapping[str, Rows],
    pairs: Sequence[Pair],
    *,
    score: str | Mapping[str, str] | None = None,
    normalise: bool = True,
    weights: str = "items",
    tasks: Iterable[str] | None = None,
    filters: Mapping[str, str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[PairedMetrics]:
    """:class:`PairedMetrics` for each ``(method, baseline, reference)`` in ``pairs``.

    Each metric is ``metric(method vs reference) - metric(baseline vs reference)`` per
    item (with ``baseline == reference`` the second term is 0: the method against the
    reference). Only the runs named in ``pairs`` are aligned; they must hold the same
    items (:class:`~mindskip.verdicts.metrics.ItemMismatchError` otherwise). ``score``:
    one score column for every task or a mapping task -> column (default: each task's
    reported metric, see :func:`~mindskip.verdicts.metrics.score_columns`);
    ``normalise``: length-normalised choice distribution (as acc_norm) for ``kl`` and
    ``gold_logprob``; ``weights``: pool over items or give every task the same weight.
    """
    if not pairs:
        return []
    table, scores, values = item_values(
        runs, pairs, score=score, normalise=normalise, tasks=tasks, filters=filters
    )
    summary = summarise(values, table.strata, n_boot, seed, confidence, weights, table.clusters)
    meta = {"confidence": confidence, "n_boot": n_boot, "seed": seed}
    return [
        PairedMetrics(
            method=a,
            baseline=str(b),
            reference=r,
            scores=tuple(sorted(scores.items())),
            normalised=normalise,
            weights=weights,
            estimates=tuple(_estimates(summary, i * len(METRICS), table.tasks, **meta)),
        )
        for i, (a, b, r) in enumerate(pairs)
    ]


def paired_metrics(
    method_rows: Rows,
    dense_rows: Rows,
    *,
    method: str = "method",
    reference: str = "dense",
    **options: Any,
) -> PairedMetrics:
    """The method against dense on the same items (options as :func:`compute_pairs`)."""
    if method == reference:
        raise ValueError("the method and the reference need different names")
    runs = {method: method_rows, reference: dense_rows}
    return compute_pairs(runs, [(method, reference, reference)], **options)[0]


def compare_methods(
    a_rows: Rows,
    b_rows: Rows,
    dense_rows: Rows,
    *,
    a: str = "A",
    b: str = "B",
    reference: str = "dense",
    **options: Any,
) -> PairedMetrics:
    """Method A minus method B, each paired against dense, on the same items and the same
    resample: ``kl`` is KL(dense || A) - KL(dense || B), ``acc_diff`` acc(A) - acc(B)."""
    if len({a, b, reference}) < 3:
        raise ValueError("A, B and the reference need different names")
    runs = {a: a_rows, b: b_rows, reference: dense_rows}
    return compute_pairs(runs, [(a, b, reference)], **options)[0]
