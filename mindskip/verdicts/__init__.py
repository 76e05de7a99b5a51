"""Verdicts on the paper's claims from per-item logs: paired metrics, CIs, the rule.

Pure numpy and pandas (no torch, no lm-eval). Input: the rows of
:func:`mindskip.evaluate.items.read_items`, one mapping ``{method name: rows}``.

- :mod:`.metrics` / :mod:`.compare`: paired metrics of a method vs dense (accuracy
  difference, KL(dense || method) of the length-normalised choice distribution, the
  gold choice's log-probability change, flips in each direction), per task and pooled,
  with a seeded cluster bootstrap CI (items sharing a prompt drawn together) stratified
  by task; method A vs method B (or B's mixture at A's skip ratio), each paired on
  dense, on the same resample.
- :mod:`.rules`: the verdict rule (holds / contradicted / inconclusive / not decidable at
  this n / premise not met / unmatched ratio / not run), the smallest detectable effect
  ``2.80 x stderr``, the items a comparison needs, and the dynamic share of routing.
- :mod:`.claims` / :mod:`.resolve`: the six claims as data, and the comparisons of a
  run that test them.
- :mod:`.table`: :func:`analyse`, everything in one call, and the claims table with its
  Markdown and LaTeX rendering.
"""

from ..capacity import DynamicShare, dynamic_share
from .claims import (
    CLAIMS,
    TOLERANCE_ACC,
    Claim,
    Comparison,
    MethodInfo,
    method_info,
    not_run,
)
from .compare import Mixture, compare_methods, compute_pairs, item_values, paired_metrics
from .metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    POOLED,
    Estimate,
    ItemMismatchError,
    ItemTable,
    PairedMetrics,
    align_runs,
    stratified_counts,
    summarise,
)
from .resolve import resolve_comparisons
from .rules import (
    VERDICTS,
    combine_verdicts,
    items_to_decide,
    minimum_detectable_effect,
    verdict,
)
from .table import (
    Analysis,
    analyse,
    bootstrap_caption,
    claim_summary,
    claims_latex,
    claims_markdown,
    claims_table,
    format_claims,
    verdict_for,
)

__all__ = [
    "CLAIMS",
    "HIGHER_IS_BETTER",
    "METRICS",
    "POOLED",
    "TOLERANCE_ACC",
    "VERDICTS",
    "Analysis",
    "Claim",
    "Comparison",
    "DynamicShare",
    "Estimate",
    "ItemMismatchError",
    "ItemTable",
    "MethodInfo",
    "Mixture",
    "PairedMetrics",
    "align_runs",
    "analyse",
    "bootstrap_caption",
    "claim_summary",
    "claims_latex",
    "claims_markdown",
    "claims_table",
    "combine_verdicts",
    "compare_methods",
    "compute_pairs",
    "dynamic_share",
    "format_claims",
    "item_values",
    "items_to_decide",
    "method_info",
    "minimum_detectable_effect",
    "not_run",
    "paired_metrics",
    "resolve_comparisons",
    "stratified_counts",
    "summarise",
    "verdict",
    "verdict_for",
]
