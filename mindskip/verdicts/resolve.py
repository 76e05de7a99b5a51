"""Which runs test which claim: :func:`resolve_comparisons` from :class:`MethodInfo` rows.

Rows are matched on their requested skip ratio (calibrated sweeps hit it to within a few
hundredths); the realised ratios of both sides are in the note, flagged when they differ
by more than 0.02. Nothing here reads files or folder names: the caller describes each
run (:func:`~mindskip.verdicts.claims.method_info` reads an evaluation record).
"""

from __future__ import annotations

from collections.abc import Mapping

from .claims import (
    CLAIM_BY_NUMBER,
    TOLERANCE_ACC,
    Comparison,
    MethodInfo,
    _cmp,
    _fmt_ratio,
    _near,
    _primary,
    _routers,
    not_run,
)

Info = Mapping[str, MethodInfo]
MINDSKIP = "MindSkip (attn, sequence)"
ROUTED_EDIT = "`baselines.static_units: [attn]` with `routed` in `baselines.static_candidates`"
ALL_EDIT = "`baselines.static_units: [attn]` with `all` in `baselines.static_candidates`"
PATTERN_EDIT = "`baselines.router_pattern: true` (the router's own static pattern)"


def _claim1(info: Info, dense: str) -> list[Comparison]:
    primary = _primary(info)
    if primary is None:
        why = "no attention/sequence router run"
        return [not_run(1, f"{MINDSKIP} vs dense", why, **CLAIM_BY_NUMBER[1].rule())]
    _, variants = primary
    r = _near(variants)
    label = f"{MINDSKIP} at {_fmt_ratio(r)} vs dense"
    return [_cmp(info, 1, label, variants[r], dense, dense, **CLAIM_BY_NUMBER[1].rule())]


def _matched(
    info: Info,
    claim: int,
    a: dict[float | None, str] | None,
    b_runs: dict[str, dict[float | None, str]],
    what: str,
    dense: str,
    **kw: object,
) -> list[Comparison]:
    """A (MindSkip's rows) vs B (the first matching run) at every swept ratio both have."""
    if not a:
        return [not_run(claim, what, "no attention/sequence router run", **kw)]
    if not b_runs:
        return [not_run(claim, what, "no such router run", **kw)]
    b = b_runs[sorted(b_runs)[0]]
    common = sorted(r for r in set(a) & set(b) if r is not None)
    if not common:
        why = "no swept ratio in common (set `sweep: true` on both entries)"
        return [not_run(claim, what, why, edit="", **kw)]
    return [_cmp(info, claim, f"{what} at {r:g}", a[r], b[r], dense, **kw) for r in common]


def _claim2(info: Info, dense: str) -> list[Comparison]:
    primary = _primary(info)
    rule = CLAIM_BY_NUMBER[2].rule()
    out: list[Comparison] = []
    for unit in ("mlp", "block"):
        others = _routers(info, unit, "sequence")
        what = f"attention vs {unit} (sequence routing)"
        out += _matched(info, 2, primary and primary[1], others, what, dense, **rule)
    return out


def _claim3(info: Info, dense: str) -> list[Comparison]:
    kw = CLAIM_BY_NUMBER[3].rule()
    token = _routers(info, "attn", "token")
    primary = _primary(info)
    what = "attention: sequence vs token routing"
    return _matched(info, 3, primary and primary[1], token, what, dense, **kw)


def _static(info: Info, kind: str, ratio: float, candidates: str | None, run: str | None):
    for name in sorted(info):
        i = info[name]
        if i.kind != kind or i.ratio is None or abs(i.ratio - ratio) > 1e-9:
            continue
        if kind == "static" and (i.unit != "attn" or (i.candidates or "all") != candidates):
            continue
        if kind == "router_static" and run is not None and i.run not in (None, run):
            continue
        return name
    return None


def _claim4(info: Info, dense: str) -> list[Comparison]:
    primary = _primary(info)
    if primary is None:
        return [not_run(4, f"{MINDSKIP} vs Attention Drop", "no attention/sequence router run")]
    run, variants = primary
    rule = CLAIM_BY_NUMBER[4].rule()
    out: list[Comparison] = []
    for r in (0.125, 0.25):
        a = variants.get(r)
        rows = [
            ("static", "routed", "Attention Drop over the routed layers", True, ROUTED_EDIT),
            ("static", "all", "Attention Drop over all layers (the paper's)", True, ALL_EDIT),
            ("router_static", None, "the router's own static pattern", False, PATTERN_EDIT),
        ]
        for kind, cand, what, decides, edit in rows:
            label = f"{MINDSKIP} vs {what} at {r:g}"
            b = _static(info, kind, r, cand, run)
            if a is None:
                why = f"no MindSkip row at {r:g}"
                edit = f"add {r:g} to `sweep.skip_ratios`"
                out.append(not_run(4, label, why, edit, decides=decides, **rule))
            elif b is None:
                why = f"no such row at {r:g}"
                out.append(not_run(4, label, why, edit, decides=decides, **rule))
            else:
                out.append(_cmp(info, 4, label, a, b, dense, decides=decides, **rule))
    return out


def _claim5(info: Info, dense: str) -> list[Comparison]:
    runs = _routers(info, "attn", "sequence")
    by_count: dict[int, dict] = {}
    for run in sorted(runs):
        counts = {info[n].train_samples for n in runs[run].values()} - {None}
        if len(counts) == 1:
            by_count.setdefault(counts.pop(), runs[run])
    counts = sorted(by_count)
    if len(counts) < 2:
        unknown = sum(info[n].train_samples is None for v in runs.values() for n in v.values())
        why = f"fewer than two train_samples counts ({unknown} router rows with none given)"
        return [not_run(5, "quality vs train_samples", why)]
    common = set.intersection(*(set(by_count[c]) for c in counts))
    r = _near(common)
    if r is None:
        why = "no swept ratio common to every count"
        return [not_run(5, "quality vs train_samples", why, edit="set `sweep: true` on each")]
    out = []
    for lo, hi in zip(counts, counts[1:], strict=False):
        last = hi == counts[-1]
        kw = (
            {"direction": "equivalent", "metric": "acc_diff", "tolerance": TOLERANCE_ACC}
            if last
            else CLAIM_BY_NUMBER[5].rule()
        )
        label = f"{hi} vs {lo} samples at {r:g}" + (" (saturation)" if last else "")
        out.append(_cmp(info, 5, label, by_count[hi][r], by_count[lo][r], dense, **kw))
    return out


def _claim6(info: Info, dense: str) -> list[Comparison]:
    lora_routers = _routers(info, "attn", "sequence", lora=True)
    lora_only = sorted(n for n, i in info.items() if i.kind == "lora")
    primary = _primary(info)
    kept = CLAIM_BY_NUMBER[6].rule()
    if not lora_routers:
        why = "no LoRA + routers rows"
        return [
            not_run(6, "LoRA + routers vs LoRA", why, **kept),
            not_run(6, "LoRA + routers vs routers", why, metric="gold_logprob"),
        ]
    variants = lora_routers[sorted(lora_routers)[0]]
    r = _near(variants)
    a = variants[r]
    out = []
    if lora_only:
        label = f"LoRA + routers at {_fmt_ratio(r)} vs LoRA"
        out.append(_cmp(info, 6, label, a, lora_only[0], lora_only[0], **kept))
    else:
        out.append(not_run(6, "LoRA + routers vs LoRA", "no LoRA-only row", **kept))
    if primary is None or r not in primary[1]:
        why = "no MindSkip row at the same ratio"
        out.append(not_run(6, "LoRA + routers vs routers", why, metric="gold_logprob"))
    else:
        label = f"LoRA + routers vs routers at {_fmt_ratio(r)}"
        out.append(_cmp(info, 6, label, a, primary[1][r], dense, metric="gold_logprob"))
    return out


def resolve_comparisons(info: Info, dense: str) -> list[Comparison]:
    """Every claim's comparisons among the described runs, "not run" rows included.

    ``info`` maps each method name to its :class:`MethodInfo`; ``dense`` names the
    dense run. The attention/sequence router run with the most training samples is
    "MindSkip"; claim 1 uses its swept ratio nearest 0.25, claim 4 its rows at 0.125
    and 0.25 against static attention drop (routed layers, all layers) and against the
    router's own static pattern (shown, ``decides=False``).
    """
    if dense not in info:
        info = {**info, dense: MethodInfo(kind="dense")}
    out: list[Comparison] = []
    for build in (_claim1, _claim2, _claim3, _claim4, _claim5, _claim6):
        out += build(info, dense)
    return out
