"""Which runs test which claim: :func:`resolve_comparisons` from :class:`MethodInfo` rows.

Rows are paired on their requested skip ratio; where the realised ratios differ by more
than 0.02, B is replaced by B's mixture at A's realised ratio (``claims._cmp``). Claim 4
also compares MindSkip with the best static mixture at its realised ratio: among every
pair of static points of the unit (every ranking and candidate set, the router's own
pattern, dense at 0) that brackets it, the one with the lowest pooled KL to dense by
point estimate (chosen for the baseline, so the comparison errs against MindSkip).
Nothing here reads files or folder names: the caller describes each run
(:func:`~mindskip.verdicts.claims.method_info` reads an evaluation record).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..method import Method
from ..roles import Roles
from .claims import (
    CLAIM_BY_NUMBER,
    TOLERANCE_ACC,
    Comparison,
    MethodInfo,
    _cmp,
    _fmt_ratio,
    _near,
    _primary,
    not_run,
    rows_of,
)
from .compare import Mixture

Info = Mapping[str, MethodInfo]
Points = Mapping[str, float]  # pooled KL(dense || run) per run, for the best static mixture
STATIC_KINDS = ("static", "pattern")
MINDSKIP = "MindSkip (attn, sequence)"
ROUTED_EDIT = "`baselines.static_units: [attn]` with `routed` in `baselines.static_candidates`"
ALL_EDIT = "`baselines.static_units: [attn]` with `all` in `baselines.static_candidates`"
PATTERN_EDIT = "`baselines.router_pattern: true` (the router's own static pattern)"
RESUME = "resume the workflow (`snakemake --configfile <config>`; it runs what is missing)"


def _claim1(info: Info, dense: str, roles: Roles) -> list[Comparison]:
    primary = _primary(info, roles)
    if primary is None:
        why, rule = "no attention/sequence router run", CLAIM_BY_NUMBER[1].rule()
        return [_absent(1, f"{MINDSKIP} vs dense", roles.mindskip, why, **rule)]
    _, variants = primary
    r = _near(variants)
    label = f"{MINDSKIP} at {_fmt_ratio(r)} vs dense"
    return [_cmp(info, 1, label, variants[r], dense, dense, **CLAIM_BY_NUMBER[1].rule())]


def _unfinished(runs: str) -> str:
    return f"planned ({runs}) but not finished: no evaluation record of it yet"


def _absent(claim: int, what: str, planned: str | None, why: str, **kw: object) -> Comparison:
    """A comparison without records: ``planned`` names the run the plan gave the role (its
    records have not been written yet: the workflow has not finished), else ``why`` says
    what the config lacks and the note names the edit."""
    if planned is not None:
        return not_run(claim, what, _unfinished(planned), edit=RESUME, **kw)
    return not_run(claim, what, why, **kw)


def _matched(
    info: Info,
    claim: int,
    a: dict[float | None, str] | None,
    b: dict[float | None, str],
    what: str,
    dense: str,
    planned: tuple[str | None, str | None] = (None, None),
    **kw: object,
) -> list[Comparison]:
    """A (MindSkip's rows) vs B (the run the plan chose) at every swept ratio both have;
    ``planned``: the runs the plan gave A's and B's roles."""
    if not a:
        return [_absent(claim, what, planned[0], "no attention/sequence router run", **kw)]
    if not b:
        return [_absent(claim, what, planned[1], "no such router run", **kw)]
    common = sorted(r for r in set(a) & set(b) if r is not None)
    if not common:
        why = "no swept ratio in common (set `sweep: true` on both entries)"
        return [not_run(claim, what, why, edit="", **kw)]
    return [_cmp(info, claim, f"{what} at {r:g}", a[r], b[r], dense, **kw) for r in common]


def _claim2(info: Info, dense: str, roles: Roles) -> list[Comparison]:
    primary = _primary(info, roles)
    rule = CLAIM_BY_NUMBER[2].rule()
    out: list[Comparison] = []
    for unit in ("mlp", "block"):
        others = rows_of(info, roles.units.get(unit))
        what = f"attention vs {unit} (sequence routing)"
        planned = (roles.mindskip, roles.units.get(unit))
        out += _matched(info, 2, primary and primary[1], others, what, dense, planned, **rule)
    return out


def _claim3(info: Info, dense: str, roles: Roles) -> list[Comparison]:
    kw = CLAIM_BY_NUMBER[3].rule()
    token = rows_of(info, roles.token)
    primary = _primary(info, roles)
    what = "attention: sequence vs token routing"
    planned = (roles.mindskip, roles.token)
    return _matched(info, 3, primary and primary[1], token, what, dense, planned, **kw)


def _or_resume(edit: str) -> str:
    """The edit that adds a row the roles cannot name (a swept ratio, a static drop): the
    config may already plan it, and then only the workflow has not finished it."""
    return f"{edit}; or, where the config has it already, {RESUME}"


def _static(info: Info, kind: str, ratio: float, family: tuple | None, run: str | None):
    """The row of ``kind`` at the requested ``ratio`` (static: of that family)."""
    for name in sorted(info):
        i, m = info[name], info[name].method
        if m.kind != kind or i.ratio is None or abs(i.ratio - ratio) > 1e-9:
            continue
        if kind == "static" and (m.unit, m.pool, m.how) != family:
            continue
        if kind == "pattern" and run is not None and m.run not in (None, run):
            continue
        return name
    return None


def _static_label(candidates: str, ranking: str) -> str:
    how = "last k layers" if ranking == "last" else "similarity ranking"
    where = "the routed layers" if candidates == "routed" else "all layers (the paper's)"
    return f"Attention Drop ({how}) over {where}"


def best_static_mixture(
    info: Info, ratio: float, unit: str, dense: str, kl: Points
) -> tuple[Mixture, str] | None:
    """The lowest-KL mixture of two static points of ``unit`` (or one static point and
    dense) whose skip ratio is ``ratio``, by the pooled KL point estimates ``kl``; with
    a description of the two points. None: no static point at or above ``ratio``."""
    pts = [(0.0, dense, 0.0)]
    for name in sorted(info):
        i, m = info[name], info[name].method
        if m.kind in STATIC_KINDS and m.unit == unit and i.realised is not None and name in kl:
            pts.append((float(i.realised), name, float(kl[name])))
    best: tuple[float, Mixture] | None = None
    for rl, lo, kl_lo in pts:
        for rh, hi, kl_hi in pts:
            if not rl <= ratio <= rh or (rh == rl and lo != hi) or (rh == rl and rl != ratio):
                continue
            mix = Mixture(lo, hi, 1.0, rl, rh) if rh == rl else Mixture.at(ratio, lo, rl, hi, rh)
            value = mix.weight * kl_hi + (1 - mix.weight) * kl_lo
            if best is None or value < best[0] - 1e-12:
                best = (value, mix)
    if best is None:
        return None
    mix = best[1]
    desc = f"{mix.weight:.2f} x {mix.hi} (realised {mix.ratio_hi:.3f}) + "
    desc += f"{1 - mix.weight:.2f} x {mix.lo} (realised {mix.ratio_lo:.3f})"
    return mix, desc


def _claim4(info: Info, dense: str, roles: Roles, kl: Points | None) -> list[Comparison]:
    primary = _primary(info, roles)
    if primary is None:
        why = "no attention/sequence router run"
        return [_absent(4, f"{MINDSKIP} vs Attention Drop", roles.mindskip, why)]
    run, variants = primary
    rule = CLAIM_BY_NUMBER[4].rule()
    families = {("attn", "routed", "similarity"), ("attn", "all", "similarity")}
    families |= {
        (i.method.unit, i.method.pool, i.method.how)
        for i in info.values()
        if i.method.kind == "static" and i.method.unit == "attn"
    }
    rows = [
        ("static", fam, _static_label(fam[1], fam[2]), True,
         ROUTED_EDIT if fam[1] == "routed" else ALL_EDIT)
        for fam in sorted(families, key=lambda f: (f[2] != "similarity", f[2], f[1] != "routed"))
    ]  # fmt: skip
    rows.append(("pattern", None, "the router's own static pattern", False, PATTERN_EDIT))
    out: list[Comparison] = []
    for r in (0.125, 0.25):
        a = variants.get(r)
        for kind, fam, what, decides, edit in rows:
            label = f"{MINDSKIP} vs {what} at {r:g}"
            b = _static(info, kind, r, fam, run)
            if a is None:
                why = f"no MindSkip row at {r:g}"
                edit = _or_resume(f"add {r:g} to `sweep.skip_ratios`")
                out.append(not_run(4, label, why, edit, decides=decides, **rule))
            elif b is None:
                why = f"no such row at {r:g}"
                out.append(not_run(4, label, why, _or_resume(edit), decides=decides, **rule))
            else:
                out.append(_cmp(info, 4, label, a, b, dense, decides=decides, **rule))
        if a is None:
            continue
        label = f"{MINDSKIP} vs the best static mixture at its ratio ({r:g} requested)"
        ra = info[a].realised
        found = None
        if ra is not None and kl is not None:
            found = best_static_mixture(info, ra, "attn", dense, kl)
        if found is None:
            why = "no static attention drop at or above MindSkip's realised ratio"
            out.append(not_run(4, label, why, ALL_EDIT, **rule))
            continue
        mix, desc = found
        note = f"realised skip ratio {ra:.3f}; B = {desc} (lowest KL by point estimate)"
        out.append(Comparison(4, label, a, mix, dense, note=note, ratio_a=ra,
                              ratio_b=mix.ratio, **rule))  # fmt: skip
    return out


def _claim5(info: Info, dense: str, roles: Roles) -> list[Comparison]:
    runs = {count: rows_of(info, run) for count, run in roles.samples.items()}
    by_count = {count: rows for count, rows in runs.items() if rows}
    counts = sorted(by_count)
    if len(counts) < 2 and len(roles.samples) >= 2:
        waiting = ", ".join(run for c, run in sorted(roles.samples.items()) if c not in by_count)
        why = _unfinished(waiting)
        return [not_run(5, "quality vs train_samples", why, edit=RESUME)]
    if len(counts) < 2:
        names = [n for v in by_count.values() for n in v.values()]
        unknown = sum(info[n].method.train_samples is None for n in names)
        why = f"fewer than two train_samples counts ({unknown} router rows with none given)"
        return [not_run(5, "quality vs train_samples", why)]
    common = set.intersection(*(set(by_count[c]) for c in counts))
    r = _near(common)
    if r is None:
        why = "no swept ratio scored for every count yet"
        edit = f"set `sweep: true` on each; where it is set, {RESUME}"
        return [not_run(5, "quality vs train_samples", why, edit=edit)]
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


def _claim6(info: Info, dense: str, roles: Roles) -> list[Comparison]:
    variants = rows_of(info, roles.lora_routers)
    lora_only = sorted(n for n, i in info.items() if i.method.name == roles.lora)
    primary = _primary(info, roles)
    kept = CLAIM_BY_NUMBER[6].rule()
    if not variants:
        why, run = "no LoRA + routers rows", roles.lora_routers
        return [
            _absent(6, "LoRA + routers vs LoRA", run, why, **kept),
            _absent(6, "LoRA + routers vs routers", run, why, metric="gold_logprob"),
        ]
    r = _near(variants)
    a = variants[r]
    out = []
    if lora_only:
        label = f"LoRA + routers at {_fmt_ratio(r)} vs LoRA"
        out.append(_cmp(info, 6, label, a, lora_only[0], lora_only[0], **kept))
    else:
        out.append(_absent(6, "LoRA + routers vs LoRA", roles.lora, "no LoRA-only row", **kept))
    if primary is None or r not in primary[1]:
        why = "no MindSkip row at the same ratio"
        out.append(not_run(6, "LoRA + routers vs routers", why, metric="gold_logprob"))
    else:
        label = f"LoRA + routers vs routers at {_fmt_ratio(r)}"
        premise = (lora_only[0], dense, dense) if lora_only else None
        out.append(
            _cmp(info, 6, label, a, primary[1][r], dense, metric="gold_logprob", premise=premise)
        )
    return out


def resolve_comparisons(
    info: Info, dense: str, kl: Points | None = None, roles: Roles | None = None
) -> list[Comparison]:
    """Every claim's comparisons among the described runs, "not run" rows included.

    ``info`` maps each method name to its :class:`MethodInfo`; ``dense`` names the
    dense run; ``roles`` the runs each claim compares, as the plan chose them
    (:mod:`mindskip.roles`; None: no run has a role, every claim is "not run").
    ``roles.mindskip`` is "MindSkip"; claim 1 uses its swept ratio nearest 0.25, claim 4
    its rows at 0.125 and 0.25 against static attention drop (routed layers, all layers)
    and against the router's own static pattern (shown, ``decides=False``), and against
    the best static mixture at its realised ratio when ``kl`` (pooled KL to dense per
    run) is given.
    Every comparison between two methods is made at A's realised ratio (see
    :func:`~mindskip.verdicts.claims._cmp`, tolerance 0.02).
    """
    if dense not in info:
        info = {**info, dense: MethodInfo(Method(dense, "dense"), realised=0.0)}
    roles = roles or Roles()
    out: list[Comparison] = []
    for build in (_claim1, _claim2, _claim3, _claim5, _claim6):
        out += build(info, dense, roles)
    out += _claim4(info, dense, roles, kl)
    return sorted(out, key=lambda c: c.claim)


def frontier_comparisons(info: Info, dense: str, kl: Points) -> list[Comparison]:
    """Every routed row at a calibrated ratio (standard runs and variants alike: other
    recipes, data, units) against the best static mixture of its unit at its realised
    ratio, on KL (claim 4's test, for every run: how a recipe compares, not a verdict
    on the paper). A row that skips nothing, or has no static point at or above its
    ratio, is kept, unmatched, with a note saying so."""
    out = []
    rule = CLAIM_BY_NUMBER[4].rule()
    for name in sorted(info):
        i, m = info[name], info[name].method
        if m.kind != "router" or i.ratio is None or i.realised is None or name not in kl:
            continue
        label = f"{m.label or name} vs the best static mixture at its ratio"
        if i.realised <= 0.0:  # nothing skipped: there is nothing to match it with
            why = "skips nothing at its calibrated threshold (realised ratio 0)"
            out.append(Comparison(4, label, name, dense, dense, note=why, ratio_a=0.0,
                                  decides=False, matched=False, **rule))  # fmt: skip
            continue
        found = best_static_mixture(info, i.realised, m.unit or "attn", dense, kl)
        if found is None:
            why = (
                f"no static drop at or above its realised ratio {i.realised:.3f} (add a ratio "
                "to `baselines.static_ratios`)"
            )
            out.append(Comparison(4, label, name, dense, dense, note=why, ratio_a=i.realised,
                                  decides=False, matched=False, **rule))  # fmt: skip
            continue
        mix, desc = found
        note = f"realised skip ratio {i.realised:.3f}; B = {desc} (lowest KL by point estimate)"
        out.append(Comparison(4, label, name, mix, dense, note=note, ratio_a=i.realised,
                              ratio_b=mix.ratio, **rule))  # fmt: skip
    return out
