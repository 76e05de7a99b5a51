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
from ..verdicts.table import format_effect, format_rule_text, round_up

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


def findings(claims: pd.DataFrame) -> list[str]:
    """Markdown lines: per claim, its combined verdict and every comparison that ran."""
    if claims.empty:
        return []
    claims = claims.copy()
    claims["decides"] = claims["decides"].astype(bool)
    summary = claim_summary(claims).set_index("claim")
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
        lines.append("")
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
