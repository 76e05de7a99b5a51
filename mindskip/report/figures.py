"""Figures: every one as PNG and PDF, written atomically. Each figure function returns
the paths it wrote and the data it drew (so tests can check what is on the figure).

Methods are named in words (:mod:`mindskip.report.names`), never by a run's slug. Each of
the paper's claims 2 to 6 has its own figure with at most :data:`MAX_SERIES` series
(dense included): KL(dense ‖ method) above, Δ accuracy vs dense (points) below, each with
its 95% CI (paired on the same items), against the realised skip ratio. A claim with no
runs draws a "not run" panel, so every figure file is always written.

Every figure function takes ``specs`` (``{method name: method.spec of its records}``): the
settings the eval frame does not carry (``label``, ``variant``, ``ranking``) come from it;
without it the frame's columns are used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import atomic_path
from ..verdicts import POOLED
from .names import describe, distinct, spec_of, unit_name

MAX_SERIES = 8  # a claim's figure (and quality_vs_skip): at most this many, dense included
NATIVE = "native"
UNITS = ("attn", "mlp", "block")
ROUTINGS = ("sequence", "token")
ATTN = ("attn", "sequence")  # MindSkip's standard unit and routing
MARKERS = {"router": "o", "static": "s", "random": "^", "pattern": "D", "dense": "*", "lora": "P"}
ROUTING_STYLE = {"sequence": ("o", "-"), "token": ("s", "--")}
TOKEN = {"attn": "#6baed6", "mlp": "#74c476", "block": "#fb6a4a"}  # lighter: token routing
COLOUR = {  # one colour per role, the same in every figure
    "attn": "tab:blue",
    "mlp": "tab:green",
    "block": "tab:red",
    "router": "tab:blue",
    "random": "tab:gray",
    "pattern": "tab:purple",
    "lora": "tab:brown",
    "lora_router": "tab:pink",
}
STATIC = {"attn": "tab:orange", "mlp": "tab:olive", "block": "tab:cyan"}
XLABEL = "realised skip ratio\n(share of all layers' sublayers)"
KL_LABEL = "KL(dense ‖ method)\nlower is closer to dense"
ACC_LABEL = "Δ accuracy vs dense\n(points)"
KEY = "95% CIs, paired on the same items\nfilled: calibrated to a ratio; hollow: native"


# ----------------------------------------------------------------------------- plumbing
def _save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    # no creation date in the PDF: the same inputs give the same bytes
    pdf = {"metadata": {"CreationDate": None}}
    for path, kw in zip(paths, ({"dpi": 150}, pdf), strict=True):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], bbox_inches="tight", **kw)
    return paths


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(ax: Any, handles: Sequence[Any] | None = None, **kw: Any) -> None:
    """The legend beside ``ax``, not over the data (``_save`` keeps it: bbox_inches="tight")."""
    args = () if handles is None else (handles, [h.get_label() for h in handles])
    kw = {"fontsize": 8, "title_fontsize": 7, "alignment": "left"} | kw
    ax.legend(*args, loc="upper left", bbox_to_anchor=(1.03, 1.0), **kw)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()


def _finish(fig: Any, out_dir: Path, name: str, title: str, legend: Any = None) -> list[Path]:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    if legend is not None:
        legend()
    paths = _save(fig, out_dir, name)
    _plt().close(fig)
    return paths


def _not_run(out_dir: Path, name: str, title: str, why: str) -> list[Path]:
    """A claim's figure when none of its runs is there: one short panel saying so."""
    fig, ax = _plt().subplots(figsize=(7, 1.6))
    _empty(ax, f"not run: {why}")
    return _finish(fig, out_dir, name, title)


def _pooled(evals: pd.DataFrame) -> pd.DataFrame:
    if evals.empty or "task" not in evals:
        return pd.DataFrame(columns=["method", "kind", "ratio", "realised_skip_ratio"])
    return evals[evals["task"] == POOLED]


def _specs(pooled: pd.DataFrame, specs: Mapping[str, Any] | None) -> dict[str, dict]:
    """Each method's spec: its record's (``specs``) where given, else the frame's columns."""
    out: dict[str, dict] = {}
    for _, row in pooled.drop_duplicates("method").iterrows():
        given = (specs or {}).get(row["method"])
        out[row["method"]] = spec_of(row) | (spec_of(given) if given is not None else {})
    return out


def _n_calibrated(pooled: pd.DataFrame, method: str) -> int:
    return int(((pooled["method"] == method) & (pooled["ratio"] != NATIVE)).sum())


def _standard(s: Mapping[str, Any]) -> bool:
    """A standard router run: no LoRA, no recipe change, scored as configured."""
    return s.get("kind") == "router" and not (
        s.get("lora") or s.get("variant") or s.get("route_on")
    )


def _pick(pooled: pd.DataFrame, specs: Mapping[str, dict], methods: Sequence[str], samples=None):
    """The run to show among ``methods``: the given sample count first, then the most
    calibrated ratios, the most samples, the name (the claims' own choice of run)."""

    def key(m: str):
        n = specs[m].get("train_samples") or 0
        return (samples is not None and n != samples, -_n_calibrated(pooled, m), -n, m)

    return sorted(methods, key=key)[0] if methods else None


def _primary(pooled: pd.DataFrame, specs: Mapping[str, dict]) -> str | None:
    """MindSkip: the standard attention/sequence run with the most calibrated ratios."""
    runs = [
        m for m, s in specs.items() if _standard(s) and (s.get("unit"), s.get("routing")) == ATTN
    ]
    return _pick(pooled, specs, runs)


def _ci(g: pd.DataFrame, m: str, scale: float) -> list:
    return [(g[m] - g[f"{m}_ci_low"]) * scale, (g[f"{m}_ci_high"] - g[m]) * scale]


def _draw(axes: tuple[Any, Any], rows: pd.DataFrame, label: str, style: dict) -> dict:
    """One series on the (KL, Δ accuracy) axes: the calibrated ratios joined by a line,
    the native point hollow and unjoined; ``style["dodge"]`` shifts it sideways, for
    series at the same x (the data drawn keeps the true x). Returns what was drawn."""
    rows = rows.sort_values("realised_skip_ratio")
    cal, nat = rows[rows["ratio"] != NATIVE], rows[rows["ratio"] == NATIVE]
    colour, marker, ls = style["color"], style.get("marker", "o"), style.get("ls", "-")
    dodge = style.get("dodge", 0.0)
    for ax, m, scale in ((axes[0], "kl", 1.0), (axes[1], "acc_diff", 100.0)):
        first = True
        for part, hollow in ((cal, False), (nat, True)):
            if part.empty:
                continue
            ax.errorbar(
                part["realised_skip_ratio"] + dodge, part[m] * scale, yerr=_ci(part, m, scale),
                color=colour, marker=marker, ls="none" if hollow else ls, capsize=3, ms=6,
                mfc="white" if hollow else colour, label=label if first else None,
            )  # fmt: skip
            first = False
    return {
        "label": label,
        "x": [float(x) for x in rows["realised_skip_ratio"]],
        "ratio": list(rows["ratio"]),
        "kl": [float(x) for x in rows["kl"]],
        "acc_diff": [float(x) for x in rows["acc_diff"]],
    }


def _draw_random(axes: tuple[Any, Any], rows: pd.DataFrame, names: Mapping[str, str]) -> dict:
    """Random skip: one seed as any series; several as their mean per ratio with a band
    from the lowest CI end to the highest over the seeds."""
    seeds = sorted(rows["method"].unique())
    if len(seeds) == 1:
        return _draw(axes, rows, names[seeds[0]], {"color": COLOUR["random"], "marker": "^"})
    agg = {"realised_skip_ratio": "mean", "kl": "mean", "acc_diff": "mean"}
    agg |= {f"{m}_ci_low": "min" for m in ("kl", "acc_diff")}
    agg |= {f"{m}_ci_high": "max" for m in ("kl", "acc_diff")}
    g = rows[rows["ratio"] != NATIVE].groupby("ratio").agg(agg).reset_index()
    g = g.sort_values("realised_skip_ratio")
    label = f"random, mean of {len(seeds)} seeds (band: their 95% CIs)"
    for ax, m, scale in ((axes[0], "kl", 1.0), (axes[1], "acc_diff", 100.0)):
        x = g["realised_skip_ratio"]
        ax.fill_between(
            x, g[f"{m}_ci_low"] * scale, g[f"{m}_ci_high"] * scale, color=COLOUR["random"],
            alpha=0.25, lw=0,
        )  # fmt: skip
        ax.plot(x, g[m] * scale, color=COLOUR["random"], marker="^", label=label)
    return {
        "label": label,
        "x": [float(x) for x in g["realised_skip_ratio"]],
        "ratio": list(g["ratio"]),
        "kl": [float(x) for x in g["kl"]],
        "acc_diff": [float(x) for x in g["acc_diff"]],
        "seeds": len(seeds),
    }


def _grid(ncols: int, width: float = 4.0):
    plt = _plt()
    fig, axes = plt.subplots(
        2, ncols, figsize=(0.8 + width * ncols, 6.2), squeeze=False, sharey="row", sharex="col"
    )
    return fig, axes


def _dense(ax_pair: Sequence[Any]) -> None:
    for ax in ax_pair:
        ax.scatter([0], [0], marker="*", s=140, color="k", zorder=4, label="dense")
    ax_pair[1].axhline(0, color="grey", lw=0.8)


def _label_axes(axes: Any, xlabel: str = XLABEL) -> None:
    axes[0][0].set_ylabel(KL_LABEL)
    axes[1][0].set_ylabel(ACC_LABEL)
    for ax in axes[1]:
        if ax.axison:
            ax.set_xlabel(xlabel)
    for ax in axes.flat:
        ax.grid(alpha=0.3)


def _shared_legend(axes: Any, drawn: Sequence[Mapping[str, Any]], title: str = KEY):
    """One legend for every panel, right of the top-right one, each series once in the
    order drawn (dense last). Returned as a callable for :func:`_finish` to add after the
    layout, so that the legend widens the saved figure instead of narrowing the panels."""
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_"):
                seen.setdefault(label, h)
    order = [d["label"] for d in drawn if d["label"] in seen]
    order = [x for x in dict.fromkeys(order) if x != "dense"] + ["dense"] * ("dense" in seen)

    def add() -> None:
        if order:
            axes[0][-1].legend(
                [seen[x] for x in order], order, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                fontsize=8, title=title, title_fontsize=7, alignment="left",
            )  # fmt: skip

    return add


def _note(ax: Any, text: str) -> None:
    """A line under a panel's data: what this panel would show but was not run."""
    ax.text(
        0.02, 0.97, text, transform=ax.transAxes, ha="left", va="top", fontsize=7,
        color="dimgray", style="italic",
    )  # fmt: skip


def _colours(plt: Any, n: int) -> list[Any]:
    """``n`` colours for series told apart by colour alone: tab10, or tab20 past ten (tab10
    repeated, so two series drew in one colour)."""
    palette = list(plt.get_cmap("tab10" if n <= 10 else "tab20").colors)
    return [palette[k % len(palette)] for k in range(n)]


def _cap(series: list, limit: int = MAX_SERIES - 1) -> tuple[list, int]:
    """At most ``limit`` series (dense is the last of :data:`MAX_SERIES`)."""
    return series[:limit], max(0, len(series) - limit)


# ----------------------------------------------------------------------------- sweep
def figure_quality_vs_skip(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """The sweep at a glance: MindSkip (the standard attention/sequence run, and any other
    unit's standard run swept at several ratios), static drop of each unit (over all layers,
    the paper's Attention Drop, where it ran), random skip (seeds collapsed) and the
    router's own static pattern, against the realised skip ratio."""
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    primary = _primary(pooled, s)
    routers = [primary] if primary else []
    for unit in UNITS:
        cands = [
            m for m, x in s.items()
            if _standard(x) and x.get("unit") == unit and m != primary
            and _n_calibrated(pooled, m) >= 2
        ]  # fmt: skip
        if cands and (unit != "attn" or not primary):
            routers.append(_pick(pooled, s, cands))
    statics = []
    for unit in UNITS:
        mine = [m for m, x in s.items() if x.get("kind") == "static" and x.get("unit") == unit]
        mine.sort(key=lambda m: (
            (s[m].get("candidates") or "all") != "all",
            (s[m].get("ranking") or "similarity") != "similarity", m,
        ))  # fmt: skip
        statics += mine[:1]
    run = s[primary].get("run", primary) if primary else None
    randoms = [m for m, x in s.items() if x.get("kind") == "random" and x.get("run") == run]
    pattern = [m for m, x in s.items() if x.get("kind") == "pattern" and x.get("run") == run]
    shown = routers + statics + randoms[:1] + pattern[:1]
    shown, dropped = _cap(shown)
    names = distinct({m: s[m] for m in shown + randoms[1:]})
    fig, axes = _grid(1, 5.5)
    pair = (axes[0][0], axes[1][0])
    drawn = []
    for m in shown:
        rows = pooled[(pooled["method"] == m) & (pooled["ratio"] != NATIVE)]
        kind = s[m].get("kind")
        if kind == "random":
            seeds = pooled[pooled["method"].isin(randoms) & (pooled["ratio"] != NATIVE)]
            drawn.append(_draw_random(pair, seeds, names))
            continue
        if rows.empty:
            continue
        colour = {
            "router": COLOUR.get(s[m].get("unit"), "tab:blue"),
            "static": STATIC.get(s[m].get("unit"), "tab:orange"),
        }.get(kind, COLOUR.get(kind, "k"))
        style = {"color": colour, "marker": MARKERS.get(kind, "o"),
                 "ls": "--" if kind == "static" else "-"}  # fmt: skip
        drawn.append(_draw(pair, rows, names[m], style))
    if not drawn:
        for ax in pair:
            _empty(ax, "not run: no method scored at a requested skip ratio")
    else:
        _dense(pair)
        drawn.append({"label": "dense", "x": [0.0], "kl": [0.0], "acc_diff": [0.0]})
    _label_axes(axes)
    key = "95% CIs, paired on the same items" + (
        f"\n{dropped} more in the sweep table" if dropped else ""
    )
    legend = _shared_legend(axes, drawn, key)
    title = f"Quality vs realised skip ratio, every method family ({title})"
    return _finish(fig, out_dir, "quality_vs_skip", title, legend), drawn


# ----------------------------------------------------------------------------- claims
def _claim_grid(
    pooled: pd.DataFrame,
    s: Mapping[str, dict],
    columns: Sequence[tuple[str, list[tuple[str, dict]], str]],
    out_dir: Path,
    name: str,
    title: str,
    empty: str,
) -> tuple[list[Path], list[dict]]:
    """Columns of (panel title, [(method, style)], note on what did not run), the KL row
    above the Δ accuracy row; series named over the whole figure."""
    shown = [m for _, series, _ in columns for m, _ in series]
    names = distinct({m: s[m] for m in dict.fromkeys(shown)})
    if not columns:
        return _not_run(out_dir, name, title, empty), []
    fig, axes = _grid(len(columns))
    drawn: list[dict] = []
    for j, (heading, series, note) in enumerate(columns):
        pair = (axes[0][j], axes[1][j])
        for m, style in series:
            drawn.append(_draw(pair, pooled[pooled["method"] == m], names[m], style))
        _dense(pair)
        axes[0][j].set_title(heading, fontsize=9)
        if note:
            _note(axes[0][j], note)
    drawn.append({"label": "dense", "x": [0.0], "kl": [0.0], "acc_diff": [0.0]})
    _label_axes(axes)
    return _finish(fig, out_dir, name, title, _shared_legend(axes, drawn)), drawn


def _unit_style(unit: str, routing: str) -> dict[str, str]:
    """A unit's colour (a darker set for token routing), the routing's marker and line."""
    colour = (TOKEN if routing == "token" else COLOUR).get(unit, "tab:gray")
    marker, line = ROUTING_STYLE[routing]
    return {"color": colour, "marker": marker, "ls": line}


def _by_settings(evals: pd.DataFrame, specs: Mapping[str, Any] | None):
    """The pooled rows, the specs and {(unit, routing): the standard run shown for it},
    each with the MindSkip run's sample count where there is a choice."""
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    primary = _primary(pooled, s)
    samples = s[primary].get("train_samples") if primary else None
    groups: dict[tuple[str, str], list[str]] = {}
    for m, x in s.items():
        if _standard(x):
            groups.setdefault((x.get("unit", "attn"), x.get("routing", "sequence")), []).append(m)
    runs = {k: _pick(pooled, s, v, samples) for k, v in sorted(groups.items())}
    return pooled, s, runs


def figure_claim_units(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Claim 2, attention is the unit to skip: MindSkip on attention, MLP and block with the
    same routing (one column per routing; standard runs, the MindSkip run's sample count)."""
    pooled, s, runs = _by_settings(evals, specs)
    columns = []
    for routing in [r for r in ROUTINGS if any(k[1] == r for k in runs)]:
        series = [
            (runs[(u, routing)], _unit_style(u, routing)) for u in UNITS if (u, routing) in runs
        ]
        missing = [unit_name(u) for u in UNITS if (u, routing) not in runs]
        note = f"not run: {', '.join(missing)}" if missing else ""
        columns.append((f"{routing} routing", series, note))
    return _claim_grid(
        pooled, s, columns, out_dir, "claim2_units",
        f"Claim 2: attention vs MLP vs block, same routing ({title})",
        "no MindSkip runs (routers entries with unit attn, mlp, block)",
    )  # fmt: skip


def figure_claim_routing(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Claim 3, sequence routing at least as good as token routing: one column per unit."""
    pooled, s, runs = _by_settings(evals, specs)
    columns = []
    for unit in [u for u in UNITS if any(k[0] == u for k in runs)]:
        series = [(runs[(unit, r)], _unit_style(unit, r)) for r in ROUTINGS if (unit, r) in runs]
        missing = [f"{r} routing" for r in ROUTINGS if (unit, r) not in runs]
        note = f"not run: {', '.join(missing)}" if missing else ""
        columns.append((unit_name(unit), series, note))
    return _claim_grid(
        pooled, s, columns, out_dir, "claim3_routing",
        f"Claim 3: sequence vs token routing, per unit ({title})",
        "no MindSkip runs (routers entries with routing sequence and token)",
    )  # fmt: skip


def figure_claim_static(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Claim 4, learned routing beats static drop: MindSkip's sweep against static drop of
    the same unit (each ranking and candidate set), random skip at its per-layer rates
    (seeds collapsed) and the router's own static pattern."""
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    primary = _primary(pooled, s)
    name = "claim4_static"
    title = f"Claim 4: learned vs static vs random skip ({title})"
    if primary is None or _n_calibrated(pooled, primary) == 0:
        why = "no attention/sequence MindSkip run at a requested skip ratio"
        return _not_run(out_dir, name, title, why), []
    fig, axes = _grid(1, 5.5)
    pair = (axes[0][0], axes[1][0])
    drawn: list[dict] = []
    unit, run = s[primary].get("unit", "attn"), s[primary].get("run", primary)
    statics = sorted(
        (m for m, x in s.items() if x.get("kind") == "static" and x.get("unit") == unit),
        key=lambda m: ((s[m].get("ranking") or "similarity") != "similarity",
                       s[m].get("candidates") or "all", m),
    )  # fmt: skip
    randoms = [m for m, x in s.items() if x.get("kind") == "random" and x.get("run") == run]
    patterns = [m for m, x in s.items() if x.get("kind") == "pattern" and x.get("run") == run]
    budget = MAX_SERIES - 2 - bool(randoms) - len(patterns[:1])  # dense and MindSkip
    statics = statics[:budget]
    names = distinct({m: s[m] for m in [primary, *statics, *randoms, *patterns[:1]]})
    cal = pooled["ratio"] != NATIVE
    drawn.append(_draw(pair, pooled[(pooled["method"] == primary) & cal], names[primary],
                       {"color": COLOUR["router"], "marker": "o"}))  # fmt: skip
    tones = ("tab:orange", "tab:olive", "tab:brown", "tab:cyan")
    for i, m in enumerate(statics):
        last = (s[m].get("ranking") or "similarity") == "last"
        style = {"color": tones[i % len(tones)], "marker": "s", "ls": ":" if last else "--"}
        style["dodge"] = 0.003 * (i - (len(statics) - 1) / 2)  # static drops share their x
        drawn.append(_draw(pair, pooled[(pooled["method"] == m) & cal], names[m], style))
    if randoms:
        drawn.append(_draw_random(pair, pooled[pooled["method"].isin(randoms) & cal], names))
    for m in patterns[:1]:
        style = {"color": COLOUR["pattern"], "marker": "D", "ls": "-."}
        drawn.append(_draw(pair, pooled[(pooled["method"] == m) & cal], names[m], style))
    missing = [w for w, have in (("static drop", statics), ("random skip", randoms),
                                 ("the router's pattern", patterns)) if not have]  # fmt: skip
    if missing:
        _note(axes[0][0], f"not run: {', '.join(missing)}")
    _dense(pair)
    drawn.append({"label": "dense", "x": [0.0], "kl": [0.0], "acc_diff": [0.0]})
    _label_axes(axes)
    legend = _shared_legend(axes, drawn, "95% CIs, paired on the same items")
    return _finish(fig, out_dir, name, title, legend), drawn


def figure_claim_samples(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Claim 5, about 5K samples saturate: the standard attention/sequence runs' quality
    against their training samples, one series per requested ratio they share."""
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    by_count: dict[int, str] = {}
    runs = [m for m, x in s.items() if _standard(x) and (x.get("unit"), x.get("routing")) == ATTN]
    for m in sorted(runs):
        n = s[m].get("train_samples")
        if n is not None:
            by_count.setdefault(int(n), m)
    counts = sorted(by_count)
    name = "claim5_samples"
    title = f"Claim 5: quality vs training samples ({title})"
    if len(counts) < 2:
        have = f" (one count: {counts[0]} samples)" if counts else ""
        why = f"attention/sequence MindSkip runs that differ only in train_samples{have}"
        return _not_run(out_dir, name, title, why), []
    fig, axes = _grid(1, 5.5)
    drawn: list[dict] = []
    rows = pooled[pooled["method"].isin(by_count.values()) & (pooled["ratio"] != NATIVE)]
    ratios = sorted(rows.groupby("ratio")["method"].nunique().loc[lambda c: c >= 2].index,
                    key=lambda r: (abs(float(r) - 0.25), float(r)))[: MAX_SERIES - 1]  # fmt: skip
    base = describe({"kind": "router", "unit": "attn", "routing": "sequence"})
    tones = ("tab:blue", "tab:cyan", "tab:purple", "tab:green", "tab:olive", "tab:brown", "k")
    count_of = {m: n for n, m in by_count.items()}
    for i, ratio in enumerate(sorted(ratios, key=float)):
        g = rows[rows["ratio"] == ratio].assign(n=lambda d: d["method"].map(count_of))
        g = g.sort_values("n")
        label = f"{base}, calibrated to {float(ratio):g}"
        for ax, m, scale in ((axes[0][0], "kl", 1.0), (axes[1][0], "acc_diff", 100.0)):
            ax.errorbar(g["n"], g[m] * scale, yerr=_ci(g, m, scale), color=tones[i % 7],
                        marker="o", capsize=3, label=label)  # fmt: skip
        for n, y, r in zip(g["n"], g["kl"], g["realised_skip_ratio"], strict=True):
            first = n == g["n"].min()  # left of the first point the label would meet the axis
            axes[0][0].annotate(
                f"realised {r:.3f}", (n, y), textcoords="offset points",
                xytext=(5 if first else -5, -12), fontsize=7, color="dimgray",
                ha="left" if first else "right",
            )  # fmt: skip
        drawn.append({"label": label, "x": list(map(int, g["n"])), "kl": list(g["kl"]),
                      "acc_diff": list(g["acc_diff"]),
                      "realised": list(g["realised_skip_ratio"])})  # fmt: skip
    missing = sorted(set(counts) - {x for d in drawn for x in d["x"]})
    if missing:
        _note(axes[0][0], f"no shared ratio: {', '.join(map(str, missing))} samples")
    axes[1][0].axhline(0, color="grey", lw=0.8, label="dense")
    axes[0][0].axhline(0, color="grey", lw=0.8)
    drawn.append({"label": "dense", "x": [], "kl": [0.0], "acc_diff": [0.0]})
    for ax in axes[:, 0]:
        ax.margins(x=0.12)
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
    _label_axes(axes, "training samples (log scale)")
    legend = _shared_legend(axes, drawn, "95% CIs, paired on the same items")
    return _finish(fig, out_dir, name, title, legend), drawn


def figure_claim_lora(
    evals: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Claim 6, routers on a LoRA-tuned model keep both gains: dense, MindSkip's routers,
    LoRA alone, LoRA + routers (routers tuned on the LoRA model)."""
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    primary = _primary(pooled, s)
    loras = sorted(m for m, x in s.items() if x.get("kind") == "lora")
    lora_routers = sorted(m for m, x in s.items() if x.get("kind") == "router" and x.get("lora")
                          and not (x.get("variant") or x.get("route_on")))  # fmt: skip
    name = "claim6_lora"
    title = f"Claim 6: LoRA and routers together ({title})"
    if not loras and not lora_routers:
        why = "no LoRA-tuned model and no routers tuned on one (config `lora:` entries)"
        return _not_run(out_dir, name, title, why), []
    series = [(primary, {"color": COLOUR["router"], "marker": "o"})] if primary else []
    series += [(m, {"color": COLOUR["lora"], "marker": "P"}) for m in loras]
    series += [(m, {"color": COLOUR["lora_router"], "marker": "X"}) for m in lora_routers]
    series, _ = _cap(series)
    missing = [w for w, have in (("LoRA alone", loras), ("LoRA + routers", lora_routers),
                                 ("routers alone", primary)) if not have]  # fmt: skip
    column = (
        "attention, sequence routing",
        series,
        f"not run: {', '.join(missing)}" if missing else "",
    )
    return _claim_grid(pooled, s, [column], out_dir, name, title, "")


# ----------------------------------------------------------------------------- speed
def figure_pareto(
    evals: pd.DataFrame,
    profiles: pd.DataFrame,
    out_dir: Path,
    title: str,
    *,
    specs: Mapping[str, Any] | None = None,
):
    """KL to dense against the speedup for every profiled method, one row per unit and one
    column per regime: error bars on both axes (95% CIs); x marks the hand-removed ceiling;
    hollow markers are native thresholds."""
    plt = _plt()
    pooled = _pooled(evals)
    s = _specs(pooled, specs)
    keyed = pooled.set_index(["method", "ratio"])
    regimes = sorted(profiles["regime"].unique()) if not profiles.empty else []
    profiled = profiles[profiles["method"].isin(s)] if not profiles.empty else profiles
    units = [u for u in UNITS if not profiled.empty
             and any(s[m].get("unit", "attn") == u for m in profiled["method"])]  # fmt: skip
    nrows, ncols = max(1, len(units)), max(1, len(regimes))
    fig, axes = plt.subplots(nrows, ncols, figsize=(0.5 + 4.6 * ncols, 0.6 + 3.6 * nrows),
                             squeeze=False)  # fmt: skip
    drawn = []
    if not units:
        _empty(axes[0][0], "no profiles")
        for ax in axes.flat[1:]:
            ax.set_axis_off()
    for i, unit in enumerate(units):
        mine = sorted(m for m in profiled["method"].unique() if s[m].get("unit", "attn") == unit)
        names = distinct({m: s[m] for m in mine})
        colour = dict(zip(mine, _colours(plt, len(mine)), strict=True))
        handles: dict[str, Any] = {}
        for ax, regime in zip(axes[i], regimes, strict=False):
            ax.axvline(1.0, color="grey", lw=0.8)
            for _, r in profiled[profiled["regime"] == regime].iterrows():
                key = (r["method"], r["ratio"])
                if r["method"] not in mine or key not in keyed.index:
                    continue
                e = keyed.loc[key]
                xerr = [[r["speedup"] - r["speedup_ci_low"]], [r["speedup_ci_high"] - r["speedup"]]]
                yerr = [[e["kl"] - e["kl_ci_low"]], [e["kl_ci_high"] - e["kl"]]]
                label, c = names[r["method"]], colour[r["method"]]
                face = "white" if r["ratio"] == NATIVE else c
                h = ax.errorbar(
                    [r["speedup"]], [e["kl"]], xerr=xerr, yerr=yerr, color=c, mfc=face,
                    marker=MARKERS.get(r["kind"], "o"), capsize=3, label=label,
                )  # fmt: skip
                if r["ratio"] != NATIVE or label not in handles:
                    handles[label] = h
                ax.scatter([r["ceiling_speedup"]], [e["kl"]], marker="x", color="grey")
                drawn.append({"regime": regime, "label": label, "ratio": r["ratio"],
                              "speedup": r["speedup"]})  # fmt: skip
            ax.set_title(f"{unit_name(unit)}: {regime}", fontsize=9)
            ax.set_xlabel(f"speedup over dense, {regime}")
            ax.set_ylabel("KL(dense ‖ method)")
            ax.grid(alpha=0.3)
        if handles:
            key = "95% CIs; x: ceiling (same sublayers\nremoved by hand); hollow: native"
            _legend(axes[i][-1], list(handles.values()), fontsize=7, title=key)
    paths = _finish(fig, out_dir, "pareto", title)
    return paths, drawn


# ----------------------------------------------------------------------------- layers
def figure_layer_skip(
    layers: pd.DataFrame, out_dir: Path, title: str, *, specs: Mapping[str, Any] | None = None
):
    """Per routed router run and ratio: the skip rate of each layer on each task (colour)
    and, on the right, the dynamic share of each layer (the share of its decisions that
    no static layer choice reproduces)."""
    plt = _plt()
    import numpy as np

    routed = layers[layers["kind"] == "router"] if not layers.empty else layers
    names = list(dict.fromkeys(routed["name"])) if not routed.empty else []
    methods = list(dict.fromkeys(routed["method"])) if not routed.empty else []
    words = distinct({m: _layer_spec(m, routed, specs) for m in methods})
    n = max(1, len(names))
    fig, axes = plt.subplots(n, 2, figsize=(11, 0.8 + 2.2 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    drawn = []
    if not names:
        _empty(axes[0][0], "no router runs")
        axes[0][1].set_axis_off()
    for (a1, a2), name in zip(axes, names, strict=False):
        sub = routed[routed["name"] == name]
        method, ratio = sub["method"].iloc[0], sub["ratio"].iloc[0]
        shown = f"{words[method]}, " + (
            "native threshold" if ratio == NATIVE else f"calibrated to {float(ratio):g}"
        )
        tasks, cols = sorted(sub["task"].unique()), sorted(sub["layer"].unique())
        grid = sub.pivot_table(index="task", columns="layer", values="skip_rate").loc[tasks, cols]
        im = a1.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        a1.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
        label = sub.drop_duplicates("task").set_index("task")["label"]
        a1.set_yticks(range(len(tasks)), [label[t] for t in tasks], fontsize=7)
        a1.set_title(f"{shown}: skip rate per layer", fontsize=8)
        fig.colorbar(im, ax=a1, fraction=0.03)
        share = sub.groupby("layer")["dynamic_share"].mean().reindex(cols)
        a2.bar(np.arange(len(cols)), share.to_numpy(), color="tab:orange")
        a2.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
        a2.set_ylim(0, 0.5)
        overall = sub["dynamic_share_overall"].mean()
        a2.set_title(f"dynamic share per layer (overall {overall:.3f})", fontsize=8)
        drawn.append({"name": name, "label": shown, "overall": overall,
                      "grid": grid.to_numpy().tolist()})  # fmt: skip
    axes[-1][0].set_xlabel("layer")
    axes[-1][1].set_xlabel("layer")
    inch = 1 / fig.get_figheight()  # the title in the top half inch, however many rows
    fig.suptitle(title, fontsize=9, y=1 - 0.15 * inch)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 * inch))
    paths = _save(fig, out_dir, "layer_skip")
    plt.close(fig)
    return paths, drawn


def _layer_spec(method: str, routed: pd.DataFrame, specs: Mapping[str, Any] | None) -> dict:
    given = (specs or {}).get(method)
    if given is not None:
        return spec_of(given)
    return {"kind": "router", "name": method}  # layer_frame carries no settings


# ----------------------------------------------------------------------------- training
def _run_spec(m: Mapping[str, Any], specs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A training run's spec: its router records' (``specs`` by method), else its metrics."""
    for spec in (specs or {}).values():
        spec = spec_of(spec)
        if (
            spec.get("kind") == "router"
            and spec.get("run") == m["run"]
            and not spec.get("route_on")
        ):
            return {k: v for k, v in spec.items() if k != "ratio"}
    cfg = m.get("mindskip_config") or {}
    data = m.get("data") or {}
    out: dict[str, Any] = {"kind": "router", "unit": cfg.get("unit"), "routing": cfg.get("routing")}
    if data.get("train_records") is not None:
        out["train_samples"] = int(data["train_records"])
    # the recipe choices that tell runs apart in words (the plan's variant is not in a
    # training record yet: issue 28's one method record)
    tc = m.get("train_config") or {}
    variant = [str(m["objective"])] if m.get("objective") not in (None, "lm") else []
    if tc.get("capacity_control", "fixed") != "fixed":
        variant.append(f"{tc['capacity_control']} control")
    if variant:
        out["variant"] = ",".join(variant)
    if m.get("lora"):
        out["lora"] = "lora"
    return {k: v for k, v in out.items() if v is not None}


def figure_training_curves(
    runs: Sequence[dict[str, Any]],
    out_dir: Path,
    title: str,
    *,
    specs: Mapping[str, Any] | None = None,
):
    """Router-tuning LM loss and realised capacity against the optimiser step, one row per
    unit (attention, MLP, block), runs named in words."""
    plt = _plt()
    curves = [m for m in runs if (m.get("curve") or m.get("log"))]
    rspecs = {m["run"]: _run_spec(m, specs) for m in curves}
    names = distinct(rspecs)
    units = [u for u in UNITS if any(x.get("unit", "attn") == u for x in rspecs.values())]
    units += sorted({x.get("unit", "attn") for x in rspecs.values()} - set(units))
    nrows = max(1, len(units))
    fig, axes = plt.subplots(nrows, 2, figsize=(11, 0.6 + 3.2 * nrows), squeeze=False)
    drawn = []
    for i, unit in enumerate(units):
        a1, a2 = axes[i]
        mine = sorted((m for m in curves if rspecs[m["run"]].get("unit", "attn") == unit),
                      key=lambda m: names[m["run"]])  # fmt: skip
        for m, colour in zip(mine, _colours(plt, len(mine)), strict=True):
            curve = m.get("curve") or m.get("log") or []
            steps = [c["step"] for c in curve]
            label = names[m["run"]]
            a1.plot(
                steps, [x.get("lm_loss", x.get("loss")) for x in curve], label=label, color=colour
            )
            a2.plot(steps, [x["capacity"] for x in curve], label=label, color=colour)
            target = (m.get("mindskip_config") or {}).get("capacity_target")
            if target is not None:
                a2.axhline(target, ls="--", lw=0.8, color="grey")
            drawn.append({"run": m["run"], "label": label, "steps": len(steps)})
        a1.set_title(f"{unit_name(unit)} routers: LM loss", fontsize=9)
        a2.set_title(f"{unit_name(unit)} routers: capacity (dashed: target)", fontsize=9)
        a1.set_ylabel("LM loss on responses\n(logged for both objectives)")
        a2.set_ylabel("capacity (fraction executed)")
        a2.set_ylim(0, 1.05)
        _legend(a2, fontsize=7)
    if not drawn:
        _empty(axes[0][0], "no training curves")
        axes[0][1].set_axis_off()
    axes[-1][0].set_xlabel("optimizer step")
    axes[-1][1].set_xlabel("optimizer step")
    return _finish(fig, out_dir, "training_curves", title), drawn


CLAIM_FIGURES = {
    "claim2_units": figure_claim_units,
    "claim3_routing": figure_claim_routing,
    "claim4_static": figure_claim_static,
    "claim5_samples": figure_claim_samples,
    "claim6_lora": figure_claim_lora,
}
