"""The findings of a run, written from its claims table (``tables/claims.csv``).

Every number in the text is read from the table and formatted by the same code that
formats the table, and every sentence's wording follows from the verdict: a comparison
whose CI spans its bound is "not resolved" (with the items that would decide it), never
a finding; "not decidable at this n" says how many items it would take and how many the
tasks hold; an unmatched ratio decides nothing. Nothing here is typed by hand.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..verdicts import CLAIMS, claim_summary
from ..verdicts.rules import CONTRADICTED, HOLDS, NOT_RUN
from ..verdicts.table import format_effect, format_rule_text, round_up
from .tables import NO_TIME, speed_cell

_UNITS = {
    "acc_diff": "accuracy, points",
    "kl": "KL(dense ‖ method)",
    "gold_logprob": "gold log-prob",
}


def _effect(r: Any) -> str:
    return format_effect(r.metric, r.value, r.ci_low, r.ci_high)


def _accuracy(r: Any) -> str:
    if r.metric == r.acc_metric or pd.isna(r.acc_value):
        return ""
    return f"; accuracy {format_effect(r.acc_metric, r.acc_value, r.acc_ci_low, r.acc_ci_high)}"


def _ratios(r: Any) -> str:
    if pd.isna(r.ratio_a):
        return ""
    if pd.isna(r.weight):
        other = "" if pd.isna(r.ratio_b) else f" vs {r.ratio_b:.3f}"
        return f" (realised skip ratio {r.ratio_a:.3f}{other})"
    return f" (B matched to A's realised ratio {r.ratio_a:.3f}, weight {r.weight:.2f})"


def _items(x: float) -> str:
    return "no finite number of" if not math.isfinite(x) else f"about {round_up(x):,}"


def sentence(r: Any) -> str:
    """One comparison of the claims table as a sentence that says no more than its CI."""
    unit = _UNITS.get(r.metric, r.metric)
    test = format_rule_text(r)
    head = f"{r.comparison}{_ratios(r)}: {unit} {_effect(r)}, test {test}{_accuracy(r)}"
    v = r.verdict
    if v == "holds":
        return f"{head}. The CI lies on the claim's side of the bound: **holds**."
    if v == "contradicted":
        return f"{head}. The CI lies on the wrong side of the bound: **contradicted**."
    if v == "inconclusive":
        return (
            f"{head}. The CI spans the bound: **not resolved**; {_items(r.n_needed)} items "
            f"would decide it at this spread (n = {int(r.n)})."
        )
    if v == "not decidable at this n":
        held = "" if pd.isna(r.available) else f", more than the {int(r.available):,} held"
        return (
            f"{head}. **Not decidable at this n**: {_items(r.n_needed)} items would decide "
            f"it{held}."
        )
    if v == "premise not met":
        return f"{head}. **Premise not met**: {r.note.split('; ')[-1]}."
    if v == "unmatched ratio":
        return f"{r.comparison}: **decides nothing**: {r.note}."
    return f"{r.comparison}: not run ({r.note})."


def speed_sentence(claim: Any, rows: pd.DataFrame, speed: pd.DataFrame | None) -> str:
    """The measured speed of the claim's first deciding method beside the paper's speedup:
    per regime, its speedup over dense in the same process and the ceiling's (the same
    sublayers removed by hand), each "not resolved" when its CI spans 1.0."""
    deciding = rows[rows["decides"] & (rows["verdict"] != NOT_RUN)]
    if claim.speedup is None or deciding.empty:
        return ""
    method, _, ratio = str(deciding.iloc[0]["a"]).partition("@")
    head = f"Speed (the paper: {claim.speedup:.2f}x over dense) of `{method}`" + (
        f" at {ratio}" if ratio else ""
    )
    mine = (
        speed[(speed["method"] == method) & (speed["ratio"] == ratio)]
        if speed is not None
        else pd.DataFrame()
    )
    if mine.empty:
        return (
            f"{head}: no speed profile of it (profiled only where `profile.ratios` names "
            "its ratio, or `native`, and once its profile job has run)."
        )
    parts = []
    for r in mine.itertuples(index=False):
        if r.time_not_positive:
            parts.append(f"{r.regime} {NO_TIME}")
            continue
        own = speed_cell(r.speedup, r.speedup_ci_low, r.speedup_ci_high)
        ceiling = speed_cell(r.ceiling_speedup, r.ceiling_ci_low, r.ceiling_ci_high)
        parts.append(f"{r.regime} {own} (removed by hand: {ceiling or 'not measured'})")
    first = mine.iloc[0]
    where = f"{first['device']}, {first['threads']} threads, {first['repeats']} repeats"
    return f"{head}, against dense in the same process ({where}): " + "; ".join(parts) + "."


def _summary(claims: pd.DataFrame | None) -> pd.DataFrame:
    """Each claim's combined verdict over a claims table read from CSV (None or empty:
    every claim "not run"), indexed by claim number."""
    claims = pd.DataFrame() if claims is None else claims.copy()
    if not claims.empty:
        claims["decides"] = claims["decides"].astype(bool)
    return claim_summary(claims).set_index("claim")


def findings(claims: pd.DataFrame, speed: pd.DataFrame | None = None) -> list[str]:
    """Markdown lines: per claim, its combined verdict and every comparison that ran;
    for a claim the paper gives a speedup, the speed table's row beside it."""
    if claims.empty:
        return []
    claims = claims.copy()
    claims["decides"] = claims["decides"].astype(bool)
    summary = _summary(claims)
    lines = [
        "## Findings",
        "",
        "Written by `mindskip.report.findings` from `tables/claims.csv`; each sentence says",
        "no more than its interval (95% CIs, paired against dense on the same items).",
        "",
    ]
    for claim in CLAIMS:
        rows = claims[claims["claim"] == claim.number]
        ran = rows[rows["verdict"] != "not run"]
        verdict = summary.loc[claim.number, "verdict"]
        lines.append(
            f"**Claim {claim.number}: {claim.title}** (the paper: {claim.paper}). "
            f"Verdict: **{verdict}**."
        )
        if ran.empty:
            lines += ["", f"- Not run: {rows.iloc[0]['note']}" if len(rows) else "- Not run.", ""]
            continue
        lines.append("")
        for r in ran.itertuples(index=False):
            context = "" if r.decides else " (context, does not decide the claim)"
            lines.append(f"- {sentence(r)}{context}")
        fast = speed_sentence(claim, rows, speed)
        lines += [f"- {fast}", ""] if fast else [""]
    return lines


def _cell(summary: Any) -> str:
    """A claim's verdict at one model, with how many of its deciding comparisons ran."""
    if not summary["comparisons"]:
        return str(summary["verdict"])
    return f"{summary['verdict']} ({summary['run']} of {summary['comparisons']})"


def verdicts_per_model(claims: dict[str, pd.DataFrame | None]) -> list[str]:
    """Markdown lines: one row per claim with each model's combined verdict (and how many
    of its deciding comparisons ran) beside the paper's evidence, then which claims every
    model agrees with the paper on, which every model contradicts, and which are neither.
    ``claims`` maps a model to its claims table (None: the model has none yet)."""
    summaries = {model: _summary(table) for model, table in claims.items()}
    models = list(claims)
    lines = [
        "| claim | title | the paper | " + " | ".join(models) + " |",
        "|---:|---|---|" + "---|" * len(models),
    ]
    for c in CLAIMS:
        row = [str(c.number), c.title, c.paper]
        row += [_cell(summaries[m].loc[c.number]) for m in models]
        lines.append("| " + " | ".join(row) + " |")

    def claims_where(keep: Any) -> str:
        found = [
            str(c.number)
            for c in CLAIMS
            if keep([summaries[m].loc[c.number, "verdict"] for m in models])
        ]
        return ", ".join(found) if found else "none"

    lines += [
        "",
        "Each cell: the claim's verdict at that model, and how many of its deciding "
        "comparisons ran of those planned. Agree with the paper (holds at every model): "
        f"claims {claims_where(lambda v: set(v) == {HOLDS})}. Contradicted at every model: "
        f"claims {claims_where(lambda v: set(v) == {CONTRADICTED})}. Neither (undecided, not "
        "run, or the models differ): claims "
        f"{claims_where(lambda v: set(v) not in ({HOLDS}, {CONTRADICTED}))}.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m mindskip.report.findings CLAIMS_CSV [--title T]``: the findings as
    Markdown on stdout (the README generator calls :func:`findings` directly)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mindskip.report.findings", description=__doc__)
    ap.add_argument("claims", help="a claims table (tables/claims.csv)")
    ap.add_argument("--title", default="", help="a heading and lead above the findings")
    args = ap.parse_args(argv)
    head = [args.title, ""] if args.title else []
    sys.stdout.write("\n".join([*head, *findings(pd.read_csv(args.claims))]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
