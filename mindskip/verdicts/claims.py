"""The paper's six claims as data, and the comparisons of a run that test them.

Each claim (``resources/paper/CLAIMS.md``, numbered as there) is tested by one or
more :class:`Comparison` rows: method A against method B, each paired on a reference
run (dense unless said), on one metric, in one direction. Which metric decides:

- "A better than B" (claims 2, 4, 5's earlier steps) uses ``kl``, KL(dense || method)
  of the length-normalised choice distribution, lower is better: it is the powered
  metric (on the committed run its smallest detectable effect is a few thousandths,
  where accuracy's is several points);
- "about free" against dense or a fixed quality (claims 1, 5's last step, 6's "quality
  kept") needs a tolerance, and the paper states tolerances only in accuracy points (a
  drop of 0.3 to 0.5 points), with no defensible conversion into KL, so they use
  ``acc_diff`` with a tolerance of 0.5 points (the larger of the paper's drops);
- "at least as good" between two methods (claim 3, sequence vs token routing) is
  decided on the powered metric: KL, holds when sequence routing is resolved closer to
  dense, contradicted when token routing is; accuracy beside it;
- "LoRA's gain kept" (claim 6 vs routers alone) uses ``gold_logprob``: the gain over
  dense is the point there, so closeness to dense (KL) would measure the wrong thing.
  Its premise, LoRA above dense on the same metric, is tested first: without a
  resolved gain there is none to keep, and the verdict says "premise not met".

Two methods are compared at the same realised skip ratio: when their realised ratios
differ by more than :data:`RATIO_MATCH`, B is replaced by B at A's ratio, the
per-sequence mixture of B's two neighbouring points (:class:`~mindskip.verdicts.
compare.Mixture`, dense counting as B at ratio 0); where B has no point on the far
side of A's ratio the comparison is shown as "unmatched ratio" and decides nothing.

The other metric is always shown beside the deciding one (accuracy next to KL). Runs
are described by :class:`MethodInfo` (:func:`method_info` reads it from an evaluation
record); :func:`resolve_comparisons` picks the rows each claim needs and, where the
config has none, returns a "not run" comparison naming the config edit that adds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..method import Method, stored_method
from ..roles import Roles
from .compare import Baseline, Mixture
from .metrics import HIGHER_IS_BETTER

TOLERANCE_ACC = 0.005  # 0.5 accuracy points: the larger of the paper's "about free" drops
RATIO_MATCH = 0.02  # realised skip ratios further apart than this are matched by a mixture
DIRECTIONS = ("better", "noninferior", "equivalent")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, its evidence, its test, how its main
    comparisons are decided (``direction``, ``metric``, ``tolerance``; see
    :class:`Comparison`) and the edit that adds the test to a config that lacks it.
    Claims 5 and 6 have a second kind of comparison, named in ``test``."""

    number: int
    title: str
    paper: str
    test: str
    edit: str
    direction: str = "better"
    metric: str = "kl"
    tolerance: float | None = None
    speedup: float | None = None  # the speedup over dense the paper reports for it

    def rule(self) -> dict[str, Any]:
        """``direction``, ``metric`` and ``tolerance``, as :class:`Comparison` takes them."""
        return {"direction": self.direction, "metric": self.metric, "tolerance": self.tolerance}


CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        "Attention can be skipped almost for free",
        "Llama-3-8B 69.7 -> 69.4 at 1.21x; Instruct 69.3 -> 69.1 (attention, sequence, "
        "50% capacity on the last 16 of 32 layers)",
        "MindSkip (attention, sequence) vs dense at ~0.25: accuracy drop within 0.5 points",
        "add a `routers:` entry with `unit: attn, routing: sequence` (and `sweep: true` "
        "with 0.25 in `sweep.skip_ratios`)",
        "noninferior",
        "acc_diff",
        TOLERANCE_ACC,
        speedup=1.21,
    ),
    Claim(
        2,
        "Attention is the unit to skip",
        "sequence routing: attention 69.4 vs MLP 61.8 and block 61.3",
        "attention vs MLP and vs block, same routing, same realised ratio",
        "add `routers:` entries with `unit: mlp` and `unit: block` (same routing, "
        "num_routed and capacity_target, `sweep: true`)",
    ),
    Claim(
        3,
        "Sequence routing is at least as good as token routing",
        "attention 69.4 (sequence) vs 68.7 (token); block and MLP within 0.2",
        "attention: sequence vs token routing at the same realised ratio, sequence at "
        "least as close to dense (KL; accuracy beside it)",
        "add a `routers:` entry with `unit: attn, routing: token` (`sweep: true`)",
    ),
    Claim(
        4,
        "Learned routing beats static drop at the same ratio",
        "one task (probably GSM8K, read off a bar chart): MindSkip 48.8 vs Attention Drop "
        "43.4 at 0.125, 44.6 vs 38.1 at 0.25, dense 50.5",
        "MindSkip vs static attention drop at 0.125 and 0.25, over the routed layers "
        "(fair) and over all layers (the paper's); vs the router's own static pattern "
        "(learned inputs, not only layers)",
        "`baselines.static_units: [attn]`, `baselines.static_candidates: [routed, all]`, "
        "`baselines.router_pattern: true`, 0.125 and 0.25 in `sweep.skip_ratios`",
    ),
    Claim(
        5,
        "About 5K training samples saturate",
        "Instruct, 4 tasks: 0 / 1K / 2K / 5K / 10K samples give 65.8 / 63.8 / 64.9 / 65.6 / 65.1",
        "quality vs train_samples at a fixed ratio: each earlier step better, the last "
        "step within 0.5 points",
        "add `routers:` entries that differ only in `train_samples` (e.g. 1000, 2000, "
        "5000, 10000), each with `sweep: true`",
    ),
    Claim(
        6,
        "Routers on a LoRA-tuned model keep both gains",
        "Llama-3-8B: dense 69.6, routers 69.5 (1.21x), LoRA 71.0, LoRA + routers 70.9 "
        "(1.21x); Mistral-7B likewise",
        "LoRA + routers vs LoRA (quality kept, within 0.5 points) and vs routers (LoRA's "
        "gain kept); the speedup of LoRA + routers vs LoRA from the speed table",
        "add a `lora:` entry (e.g. `{name: a, r: 8}`, a LoRA-only fine-tune) and a "
        "`routers:` entry with `lora: a` (routers tuned on it, `sweep: true`)",
        "noninferior",
        "acc_diff",
        TOLERANCE_ACC,
        speedup=1.21,
    ),
)
CLAIM_BY_NUMBER = {c.number: c for c in CLAIMS}


@dataclass(frozen=True)
class MethodInfo:
    """A scored method, as far as the claims need: the planned :class:`~mindskip.method.
    Method` its record stores (kinds as there: ``dense``, ``lora``, ``router``,
    ``static``, ``random``, ``pattern``), the requested skip ratio (None: native) and
    the realised one on the scored items."""

    method: Method
    ratio: float | None = None
    realised: float | None = None


def method_info(record: Mapping[str, Any]) -> MethodInfo:
    """:class:`MethodInfo` from an evaluation record (``<suite>.json``): its stored
    method (``method.spec``, read by :meth:`Method.from_dict`) and ratios."""
    method, _ = stored_method(record, "an evaluation record")
    realised = ((record.get("routing") or {}).get("realised") or {}).get("skip_ratio")
    ratio = (record.get("method") or {}).get("requested_skip_ratio")
    return MethodInfo(
        method,
        ratio=None if ratio is None else float(ratio),
        realised=None if realised is None else float(realised),
    )


@dataclass(frozen=True)
class Comparison:
    """Method ``a`` minus method ``b``, each paired against ``reference``, on ``metric``.

    ``direction``: ``better`` (A better than B), ``noninferior`` (A not worse than B by
    more than ``tolerance``, in the metric's units) or ``equivalent`` (A within
    ``tolerance`` of B either way). ``a is None``: not run (``note`` names the edit).
    ``decides=False``: shown, but not part of the claim's combined verdict. ``b`` may be
    a :class:`~mindskip.verdicts.compare.Mixture` (B at A's realised ratio);
    ``ratio_a``/``ratio_b`` are the realised ratios of A and of the row B stands for,
    ``matched=False`` marks realised ratios that differ by more than
    :data:`RATIO_MATCH` with no mixture to match them (shown, never deciding).
    ``premise``: a ``(method, baseline, reference)`` whose effect on ``metric`` must be
    resolved above 0 (better) for the comparison to mean anything (claim 6: LoRA's
    gain over dense, before asking whether it is kept).
    """

    claim: int
    label: str
    a: str | None
    b: Baseline | None
    reference: str | None
    direction: str = "better"
    metric: str = "kl"
    tolerance: float | None = None
    decides: bool = True
    note: str = ""
    ratio_a: float | None = None
    ratio_b: float | None = None
    matched: bool = True
    premise: tuple[str, str, str] | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {self.metric!r}")
        if self.direction != "better" and self.tolerance is None:
            raise ValueError(f"direction {self.direction!r} needs a tolerance")

    @property
    def ran(self) -> bool:
        return self.a is not None and self.b is not None and self.reference is not None

    @property
    def pair(self) -> tuple[str, Baseline, str]:
        if not self.ran:
            raise ValueError(f"comparison {self.label!r} was not run")
        return (self.a, self.b, self.reference)  # type: ignore[return-value]

    @property
    def weight(self) -> float | None:
        """The mixture's share of B's upper point (None: B itself)."""
        return self.b.weight if isinstance(self.b, Mixture) else None

    def rule(self) -> tuple[str, tuple[float, float] | None]:
        """The :func:`~mindskip.verdicts.rules.verdict` direction and tolerance band."""
        up = HIGHER_IS_BETTER[self.metric]
        if self.direction == "better":
            return ("greater" if up else "less"), None
        t = abs(float(self.tolerance))  # type: ignore[arg-type]
        if self.direction == "equivalent":
            return "equivalent", (-t, t)
        return "equivalent", ((-t, float("inf")) if up else (float("-inf"), t))


def not_run(
    claim: int, label: str, why: str = "", edit: str | None = None, **kw: Any
) -> Comparison:
    """A placeholder row: the config has no such comparison; the note says why and names
    the edit (``edit``, else the claim's own); ``kw`` (metric, direction, tolerance) say
    how it would be decided."""
    if edit is None:
        edit = CLAIM_BY_NUMBER[claim].edit if claim in CLAIM_BY_NUMBER else ""
    note = f"{why}; to run it: {edit}" if why and edit else why or edit
    return Comparison(claim, label, None, None, None, note=note, **kw)


# ----------------------------------------------------------------------------- resolving
def _fmt_ratio(r: float | None) -> str:
    return "native" if r is None else f"{r:g}"


def rows_of(info: Mapping[str, MethodInfo], run: str | None) -> dict[float | None, str]:
    """``{requested ratio: method name}`` of a router run's rows, scored as configured
    (not the ``request-`` rescoring); empty when the run has none or is None."""
    out: dict[float | None, str] = {}
    if run is None:
        return out
    for name in sorted(info):
        i, m = info[name], info[name].method
        if m.kind == "router" and m.run == run and m.route_on is None:
            out.setdefault(i.ratio, name)
    return out


def _primary(
    info: Mapping[str, MethodInfo], roles: Roles
) -> tuple[str, dict[float | None, str]] | None:
    """The MindSkip run (``roles.mindskip``, chosen by the plan) and its rows."""
    rows = rows_of(info, roles.mindskip)
    return (roles.mindskip, rows) if rows else None


def _near(ratios: Any, target: float = 0.25) -> float | None:
    swept = sorted(r for r in ratios if r is not None)
    return min(swept, key=lambda r: (abs(r - target), r)) if swept else None


def _family_points(info: Mapping[str, MethodInfo], b: str, dense: str) -> list[tuple[float, str]]:
    """(realised ratio, run) of every row in B's family, and dense at 0, by ratio."""
    fam = info[b].method.family()
    pts = {0.0: dense}
    for name in sorted(info):
        i = info[name]
        if i.method.family() == fam and i.realised is not None:
            pts.setdefault(float(i.realised), name)
    return sorted(pts.items())


def bracket(ratio: float, points: list[tuple[float, str]]) -> Mixture | None:
    """The mixture of the two neighbouring points around ``ratio`` (None: no point on
    one side). A point at the ratio itself is a mixture of weight 1 on it."""
    below = [(r, n) for r, n in points if r <= ratio]
    above = [(r, n) for r, n in points if r >= ratio]
    if not below or not above:
        return None
    (rl, lo), (rh, hi) = below[-1], above[0]
    if rh == rl:
        return Mixture(lo, hi, 1.0, rl, rh)
    return Mixture.at(ratio, lo, rl, hi, rh)


def _cmp(
    info: Mapping[str, MethodInfo], claim: int, label: str, a: str, b: str, ref: str, **kw
) -> Comparison:
    """A vs B at A's realised ratio: B itself when the ratios match within
    :data:`RATIO_MATCH` (or B is the reference or native), else B's family mixed to A's
    ratio, else an unmatched row that decides nothing."""
    ra, rb = info[a].realised, info[b].realised
    if info[b].method.kind == "dense" or b == ref or ra is None or rb is None:
        note = "" if ra is None else f"realised skip ratio {ra:.3f}"
        return Comparison(claim, label, a, b, ref, note=note, ratio_a=ra, ratio_b=rb, **kw)
    if abs(ra - rb) <= RATIO_MATCH:
        note = f"realised skip ratios {ra:.3f} vs {rb:.3f} (within {RATIO_MATCH})"
        return Comparison(claim, label, a, b, ref, note=note, ratio_a=ra, ratio_b=rb, **kw)
    dense = next((n for n, i in info.items() if i.method.kind == "dense"), ref)
    mix = bracket(ra, _family_points(info, b, dense))
    if mix is None:
        side = "above" if ra > rb else "below"
        note = (
            f"realised skip ratios {ra:.3f} vs {rb:.3f} differ by {abs(ra - rb):.3f} > "
            f"{RATIO_MATCH} and B has no point {side} {ra:.3f} to mix with: not decided "
            "(add a ratio on that side to `sweep.skip_ratios` or `baselines.static_ratios`)"
        )
        kw = {**kw, "decides": False}
        return Comparison(claim, label, a, b, ref, note=note, ratio_a=ra, ratio_b=rb,
                          matched=False, **kw)  # fmt: skip
    note = (
        f"realised skip ratios {ra:.3f} vs {rb:.3f}: B matched to {ra:.3f} as "
        f"{mix.weight:.2f} x B@{mix.ratio_hi:.3f} + {1 - mix.weight:.2f} x "
        f"{'dense' if mix.lo == dense else 'B'}@{mix.ratio_lo:.3f} per sequence"
    )
    return Comparison(claim, f"{label} (matched)", a, mix, ref, note=note, ratio_a=ra,
                      ratio_b=rb, **kw)  # fmt: skip
