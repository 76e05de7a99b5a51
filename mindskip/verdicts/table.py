"""Everything a report needs in one call (:func:`analyse`), the claims table, its rendering.

The DataFrames hold numbers in numeric columns (value, stderr, ci_low, ci_high, n, mde
each a column, NaN where not run); the ``x [lo, hi]`` strings exist only in
:func:`format_claims`, :func:`claims_markdown` and :func:`claims_latex`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..roles import Roles
from .claims import CLAIM_BY_NUMBER, CLAIMS, Comparison, MethodInfo, not_run
from .compare import compute_pairs, pair_names
from .metrics import CI_METHOD, N_BOOT, POOLED, Estimate, PairedMetrics, Rows
from .resolve import frontier_comparisons, resolve_comparisons
from .rules import (
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    POWER_Z,
    PREMISE_NOT_MET,
    UNDECIDABLE,
    UNMATCHED,
    combine_verdicts,
    items_to_decide,
    verdict,
)

ACCURACY = "acc_diff"
_NUMBERS = ("value", "stderr", "ci_low", "ci_high", "n", "mde")


def verdict_for(
    comparison: Comparison,
    estimate: Estimate | None,
    available: int | None = None,
    premise: Estimate | None = None,
) -> str:
    """:func:`~mindskip.verdicts.rules.verdict` of one comparison's pooled estimate, with
    the direction turned into the metric's sign (lower KL is better); then:

    - **unmatched ratio** for a comparison whose ratios could not be matched;
    - **premise not met** when the comparison has a premise (an effect that must be
      resolved above 0 first) and ``premise``'s CI does not lie above 0;
    - **not decidable at this n** for an inconclusive comparison that would need more
      items (:func:`~mindskip.verdicts.rules.items_to_decide`) than ``available``, the
      items the scored tasks hold (None: unknown, stays inconclusive).
    """
    if estimate is None or not comparison.ran:
        return NOT_RUN
    if not comparison.matched:
        return UNMATCHED
    if comparison.premise is not None:
        up = premise is not None and verdict(
            premise.value, premise.ci_low, premise.ci_high, "greater"
        )
        if up != HOLDS:
            return PREMISE_NOT_MET
    direction, band = comparison.rule()
    v = verdict(estimate.value, estimate.ci_low, estimate.ci_high, direction, band)
    if v == INCONCLUSIVE and available is not None:
        need = items_to_decide(estimate.value, estimate.stderr, estimate.n, direction, band)
        if need > available:
            return UNDECIDABLE
    return v


def items_needed(comparison: Comparison, estimate: Estimate | None) -> float:
    """Items that would decide this comparison at its observed effect and spread."""
    if estimate is None or not comparison.ran:
        return math.nan
    direction, band = comparison.rule()
    return items_to_decide(estimate.value, estimate.stderr, estimate.n, direction, band)


def _numbers(e: Estimate | None, prefix: str = "") -> dict[str, Any]:
    if e is None:
        return {f"{prefix}{k}": math.nan for k in _NUMBERS}
    return {f"{prefix}{k}": v for k, v in e.to_row().items() if k in _NUMBERS}


def _note(
    c: Comparison, e: Estimate | None, v: str, need: float, available: int | None,
    premise: Estimate | None,
) -> str:  # fmt: skip
    parts = [c.note] if c.note else []
    if v in (INCONCLUSIVE, UNDECIDABLE) and e is not None:
        mde = format_number(c.metric, e.mde()).lstrip("+")
        unit = " points" if c.metric in _POINTS else ""
        parts.append(f"the CI spans the test's bound; smallest detectable effect {mde}{unit}")
        held = "" if available is None else f" (the scored tasks hold {available:,})"
        if math.isfinite(need):
            parts.append(f"about {round_up(need):,} items would decide it{held}")
        else:
            parts.append(f"the effect sits on the bound: no n decides it{held}")
    if v == PREMISE_NOT_MET and c.premise is not None:
        got = (
            ""
            if premise is None
            else format_effect(c.metric, premise.value, premise.ci_low, premise.ci_high)
        )
        parts.append(f"{c.premise[0]} vs {c.premise[1]} on {c.metric}: {got or 'not run'}, "
                     "not resolved above 0: no gain to keep")  # fmt: skip
    return "; ".join(parts)


def round_up(n: float) -> int:
    """Two significant figures, rounded up."""
    if n < 100:
        return int(math.ceil(n))
    scale = 10 ** (int(math.floor(math.log10(n))) - 1)
    return int(math.ceil(n / scale) * scale)


def format_rule(c: Comparison) -> str:
    """The test as a formula on the effect (A - B): ``< 0``, ``> -0.5``, ``|x| < 0.5``."""
    direction, band = c.rule()
    if direction == "greater":
        return "> 0"
    if direction == "less":
        return "< 0"
    lo, hi = band  # type: ignore[misc]
    t = format_number(c.metric, hi if math.isfinite(hi) else -lo).lstrip("+")
    if math.isfinite(lo) and math.isfinite(hi):
        return f"|x| < {t}"
    return f"> -{t}" if math.isfinite(lo) else f"< {t}"


def claims_table(
    comparisons: Sequence[Comparison],
    results: Mapping[Comparison, PairedMetrics],
    accuracy: str = ACCURACY,
    available: int | None = None,
    premises: Mapping[tuple[str, str, str], PairedMetrics] | None = None,
) -> pd.DataFrame:
    """One row per comparison: claim, title, the paper's evidence, the comparison, the
    realised ratios of A and B and the mixture weight where B was matched to A's ratio,
    the deciding metric's pooled effect (value, stderr, ci_low, ci_high, n, mde), the
    accuracy effect beside it (``acc_*`` columns), the items that would decide it
    (``n_needed``) and those the scored tasks hold (``available``), the verdict and a
    note (for "not run": the config edit that runs it; for an undecided one: the
    smallest detectable effect and the items it would take)."""
    rows = []
    for c in comparisons:
        pm = results.get(c) if c.ran else None
        e = pm.get(c.metric, POOLED) if pm is not None else None
        acc = pm.get(accuracy, POOLED) if pm is not None else None
        pre = (premises or {}).get(c.premise) if c.premise else None
        pre_e = pre.get(c.metric, POOLED) if pre is not None else None
        v = verdict_for(c, e, available, pre_e)
        need = items_needed(c, e) if v in (INCONCLUSIVE, UNDECIDABLE) else math.nan
        claim = CLAIM_BY_NUMBER.get(c.claim)
        rows.append(
            {
                "claim": c.claim,
                "title": claim.title if claim else "",
                "paper": claim.paper if claim else "",
                "comparison": c.label,
                "a": c.a,
                "b": None if c.b is None else str(c.b),
                "reference": c.reference,
                "decides": c.decides,
                "direction": c.direction,
                "metric": c.metric,
                "tolerance": math.nan if c.tolerance is None else c.tolerance,
                "ratio_a": math.nan if c.ratio_a is None else c.ratio_a,
                "ratio_b": math.nan if c.ratio_b is None else c.ratio_b,
                "weight": math.nan if c.weight is None else c.weight,
                "matched": c.matched,
                **_numbers(e),
                "acc_metric": accuracy,
                **_numbers(acc, "acc_"),
                "n_needed": need,
                "available": math.nan if available is None else available,
                "verdict": v,
                "note": _note(c, e, v, need, available, pre_e),
            }
        )
    df = pd.DataFrame(rows)
    if not df.empty:
        df["n"] = df["n"].astype("Int64")
        df["acc_n"] = df["acc_n"].astype("Int64")
    return df


def claim_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its combined verdict over the rows that decide it
    (:func:`~mindskip.verdicts.rules.combine_verdicts`) and how many ran."""
    rows = []
    for claim in CLAIMS:
        sub = table[(table["claim"] == claim.number) & table["decides"]] if len(table) else table
        verdicts = list(sub["verdict"]) if len(sub) else [NOT_RUN]
        rows.append(
            {
                "claim": claim.number,
                "title": claim.title,
                "verdict": combine_verdicts(verdicts),
                "comparisons": len(sub),
                "run": sum(v != NOT_RUN for v in verdicts),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class Analysis:
    """Every method vs dense, every claim comparison, the claims table and its summary."""

    dense: str
    vs_dense: dict[str, PairedMetrics]
    comparisons: tuple[Comparison, ...]
    results: dict[Comparison, PairedMetrics]
    claims: pd.DataFrame
    summary: pd.DataFrame
    # every routed row (standard or not) against the best static mixture at its ratio
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)

    def metrics_frame(self) -> pd.DataFrame:
        """Long format: every (method vs dense | comparison) x task x metric."""
        rows = [
            r | {"claim": None, "comparison": pm.label}
            for pm in self.vs_dense.values()
            for r in pm.to_rows()
        ]
        for c, pm in self.results.items():
            rows += [r | {"claim": c.claim, "comparison": c.label} for r in pm.to_rows()]
        return pd.DataFrame(rows)


def analyse(
    runs: Mapping[str, Rows],
    dense: str,
    *,
    info: Mapping[str, MethodInfo] | None = None,
    roles: Roles | None = None,
    comparisons: Sequence[Comparison] | None = None,
    available: int | None = None,
    **options: Any,
) -> Analysis:
    """Everything the report needs from ``{method name: item rows}`` and the dense name.

    Every method is paired against dense; the claim comparisons are ``comparisons`` if
    given, else resolved from ``info`` and the plan's ``roles`` (:func:`~mindskip.
    verdicts.resolve.resolve_comparisons`, with every method's pooled KL to dense for the
    best static mixture); with neither, every claim is "not run". A comparison naming a run without
    rows becomes "not run". ``available``: the items the scored tasks hold, for "not
    decidable at this n". Every :func:`~mindskip.verdicts.compare.compute_pairs` call
    uses the same items and seed, so every row shares one bootstrap resample.
    ``options`` go to it (score, normalise, weights, tasks, filters, n_boot, seed,
    confidence).
    """
    if dense not in runs:
        raise KeyError(f"no rows for the dense run {dense!r} (have {sorted(runs)})")
    pairs = [(m, dense, dense) for m in runs if m != dense]
    computed = dict(zip(pairs, compute_pairs(runs, pairs, **options), strict=True))
    kl = {m: computed[m, dense, dense].get("kl").value for m in runs if m != dense}
    if comparisons is None:
        comparisons = (
            resolve_comparisons(info, dense, kl, roles)
            if info is not None
            else [not_run(c.number, c.test, "no method descriptions given") for c in CLAIMS]
        )
    checked = []
    for c in comparisons:
        lacking = [n for n in (pair_names(c.pair) if c.ran else []) if n not in runs]
        checked.append(not_run(c.claim, c.label, f"no item rows for {lacking}") if lacking else c)
    frontier = frontier_comparisons(info, dense, kl) if info is not None and kl else []
    more = [c.pair for c in [*checked, *frontier] if c.ran and c.pair not in computed]
    more = list(dict.fromkeys(more))
    computed |= dict(zip(more, compute_pairs(runs, more, **options), strict=True))
    results = {c: computed[c.pair] for c in checked if c.ran}
    premises = {c.premise: computed[c.premise] for c in checked if c.premise in computed}
    table = claims_table(checked, results, available=available, premises=premises)
    front = claims_table(frontier, {c: computed[c.pair] for c in frontier}, available=available)
    return Analysis(
        dense=dense,
        vs_dense={m: computed[m, dense, dense] for m in runs if m != dense},
        comparisons=tuple(checked),
        results=results,
        claims=table,
        summary=claim_summary(table),
        frontier=front,
    )


def bootstrap_caption(n_boot: int = N_BOOT, seed: int = 0, confidence: float = 0.95) -> str:
    """How every interval of a claims or metrics table was computed, for its caption."""
    return (
        f"{confidence:.0%} CIs: percentile {CI_METHOD}, {n_boot:,} resamples, seed {seed}; "
        f"verdicts and MDEs from the {POWER_Z.replace('95%', f'{confidence:.0%}')}"
    )


# ----------------------------------------------------------------------------- rendering
_POINTS = {"acc_diff", "flip", "flip_gain", "flip_loss"}


def format_number(metric: str, x: float) -> str:
    """Accuracy and flip metrics in points (x 100, one decimal), others to 3 decimals."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{100 * x:+.1f}" if metric in _POINTS else f"{x:+.3f}"


def format_effect(metric: str, value: float, lo: float, hi: float) -> str:
    """``value [lo, hi]`` (empty when not run)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    f = lambda x: format_number(metric, x)  # noqa: E731
    return f"{f(value)} [{f(lo)}, {f(hi)}]"


def format_rule_text(r: Any) -> str:
    """The test of a claims-table row as a formula (:func:`format_rule`)."""
    tol = None if pd.isna(r.tolerance) else float(r.tolerance)
    c = Comparison(r.claim, r.comparison, None, None, None, r.direction, r.metric, tol)
    return format_rule(c)


def _ratio_text(r: Any) -> str:
    """A's realised ratio / B's, and the mixture weight where B was matched to A's."""
    if pd.isna(r.ratio_a):
        return ""
    b = "" if pd.isna(r.ratio_b) else f" / {r.ratio_b:.3f}"
    w = "" if pd.isna(r.weight) else f" (w {r.weight:.2f})"
    return f"{r.ratio_a:.3f}{b}{w}"


def _items_text(n: float) -> str:
    return "never" if not math.isfinite(n) else f"{round_up(n):,}"


def format_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as display strings (accuracy in points)."""
    rows = []
    for r in table.itertuples(index=False):
        n = "" if pd.isna(r.n) else str(int(r.n))
        rows.append(
            {
                "Claim": str(r.claim),
                "Comparison": r.comparison + ("" if r.decides else " (context)"),
                "Metric": r.metric,
                "Test": format_rule_text(r),
                "Effect [95% CI]": format_effect(r.metric, r.value, r.ci_low, r.ci_high),
                "MDE": format_number(r.metric, r.mde).lstrip("+"),
                "Accuracy, points [95% CI]": format_effect(
                    r.acc_metric, r.acc_value, r.acc_ci_low, r.acc_ci_high
                ),
                "Accuracy MDE": format_number(r.acc_metric, r.acc_mde).lstrip("+"),
                "Ratios A / B (weight)": _ratio_text(r),
                "n": n,
                "Items to decide": "" if pd.isna(r.n_needed) else _items_text(r.n_needed),
                "Verdict": r.verdict,
                "Note": r.note,
            }
        )
    return pd.DataFrame(rows)


def claims_markdown(table: pd.DataFrame, caption: str = "") -> str:
    """Markdown of :func:`format_claims` under ``caption`` (say which run it is about)."""
    body = format_claims(table).to_markdown(index=False) if len(table) else "(no claims)"
    return f"{caption}\n\n{body}\n" if caption else f"{body}\n"


def claims_latex(table: pd.DataFrame, caption: str = "", label: str = "tab:claims") -> str:
    """LaTeX of :func:`format_claims`."""
    return format_claims(table).to_latex(index=False, escape=True, caption=caption, label=label)
