"""Figures: every one as PNG and PDF, written atomically. Each figure function returns
the paths it wrote and the data it drew (so tests can check what is on the figure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import atomic_path
from ..verdicts import POOLED
from .tables import FAMILIES, sweep_points

MARKERS = {"router": "o", "static": "s", "random": "^", "pattern": "D", "dense": "*"}


def _save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path, kw in zip(paths, ({"dpi": 150}, {}), strict=True):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], bbox_inches="tight", **kw)
    return paths


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(plt: Any, *axes: Any) -> list:
    """20 distinct colours on each axes (a full matrix draws about 20 series; the default
    cycle repeats after 10). Returns them, for figures that colour by run."""
    colours = list(plt.get_cmap("tab20").colors)
    for ax in axes:
        ax.set_prop_cycle(color=colours)
    return colours


def _legend(ax: Any, handles: Sequence[Any] | None = None, **kw: Any) -> None:
    """The legend beside ``ax``, not over the data (``_save`` keeps it: bbox_inches="tight")."""
    args = () if handles is None else (handles, [h.get_label() for h in handles])
    ax.legend(*args, loc="upper left", bbox_to_anchor=(1.02, 1.0), **kw)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _series(points: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(kind, label, rows) per line: one per method family and static candidate set."""
    out = []
    for kind, label in FAMILIES.items():
        g = points[points["kind"] == kind]
        if kind == "static":
            for (unit, cand), s in g.groupby(["unit", "candidates"]):
                out.append((kind, f"{unit} drop ({cand} layers)", s))
        elif kind == "random":
            for (run, seed), s in g.groupby(["run", "seed"]):
                out.append((kind, f"random (seed {int(seed)}): {_short(run)}", s))
        elif not g.empty:
            out += [(kind, f"{label}: {_short(m)}", s) for m, s in g.groupby("method")]
    return out


def _short(name: str, keep: int = 34) -> str:
    """A run's name cut from the left: its end (variant, hash) is what tells runs apart."""
    return name if len(name) <= keep else "…" + name[-(keep - 1) :]


def figure_quality_vs_skip(evals: pd.DataFrame, out_dir: Path, title: str):
    """Accuracy change and KL to dense against the realised skip ratio, every method with
    its 95% CI (paired on the same items)."""
    plt = _plt()
    points = sweep_points(evals)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    _colours(plt, a1, a2)
    drawn = []
    for kind, label, g in _series(points):
        g = g.sort_values("realised_skip_ratio")
        x = g["realised_skip_ratio"]
        for ax, m, scale in ((a1, "acc_diff", 100), (a2, "kl", 1)):
            y = g[m] * scale
            err = [(g[m] - g[f"{m}_ci_low"]) * scale, (g[f"{m}_ci_high"] - g[m]) * scale]
            ax.errorbar(x, y, yerr=err, marker=MARKERS[kind], capsize=3, label=label)
        drawn.append({"label": label, "x": list(x), "acc_diff": list(g["acc_diff"])})
    if points.empty:
        _empty(a1, "no swept ratios")
    a1.axhline(0, color="grey", lw=0.8)
    a1.set_ylabel("Δ accuracy vs dense, points")
    a2.set_ylabel("KL(dense ‖ method), choice distribution")
    for ax in (a1, a2):
        ax.set_xlabel("realised skip ratio (fraction of all layers' sublayers)")
        ax.scatter([0], [0], marker="*", s=120, color="k", zorder=3)
    _legend(a2, fontsize=7, title="95% CIs, paired on the same items; * dense")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths = _save(fig, out_dir, "quality_vs_skip")
    plt.close(fig)
    return paths, drawn


def figure_pareto(evals: pd.DataFrame, profiles: pd.DataFrame, out_dir: Path, title: str):
    """KL to dense against the speedup for every profiled method, one panel per regime:
    error bars on both axes (95% CIs); x marks the hand-removed ceiling."""
    plt = _plt()
    pooled = evals[evals["task"] == POOLED].set_index(["method", "ratio"])
    regimes = sorted(profiles["regime"].unique()) if not profiles.empty else []
    n = max(1, len(regimes))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    palette = _colours(plt)
    runs = sorted(profiles["method"].unique()) if not profiles.empty else []
    colour = {m: palette[i % len(palette)] for i, m in enumerate(runs)}
    handles: dict[str, Any] = {}  # one legend for every panel: the same runs in each
    drawn = []
    if not regimes:
        _empty(axes[0][0], "no profiles")
    for ax, regime in zip(axes[0], regimes, strict=False):
        ax.axvline(1.0, color="grey", lw=0.8)
        for _, r in profiles[profiles["regime"] == regime].iterrows():
            key = (r["method"], r["ratio"])
            if key not in pooled.index:
                continue
            e = pooled.loc[key]
            xerr = [[r["speedup"] - r["speedup_ci_low"]], [r["speedup_ci_high"] - r["speedup"]]]
            yerr = [[e["kl"] - e["kl_ci_low"]], [e["kl_ci_high"] - e["kl"]]]
            label = f"{_short(r['method'])} @{r['ratio']}"
            c = colour[r["method"]]
            face = "white" if r["ratio"] == "native" else c  # native: hollow
            h = ax.errorbar(
                [r["speedup"]], [e["kl"]], xerr=xerr, yerr=yerr, color=c, mfc=face,
                marker=MARKERS.get(r["kind"], "o"), capsize=3, label=label,
            )  # fmt: skip
            handles.setdefault(label, h)
            ax.scatter([r["ceiling_speedup"]], [e["kl"]], marker="x", color="grey")
            drawn.append({"regime": regime, "label": label, "speedup": r["speedup"]})
        ax.set_xlabel(f"speedup over dense, {regime}")
        ax.set_ylabel("KL(dense ‖ method), lower is better")
    if handles:
        key = "95% CIs; x: ceiling; hollow: native"
        _legend(axes[0][-1], list(handles.values()), fontsize=6, title=key)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths = _save(fig, out_dir, "pareto")
    plt.close(fig)
    return paths, drawn


def figure_layer_skip(layers: pd.DataFrame, out_dir: Path, title: str):
    """Per routed router run and ratio: the skip rate of each layer on each task (colour)
    and, on the right, the dynamic share of each layer (the share of its decisions that
    no static layer choice reproduces)."""
    plt = _plt()
    import numpy as np

    routed = layers[layers["kind"] == "router"] if not layers.empty else layers
    names = list(dict.fromkeys(routed["name"])) if not routed.empty else []
    n = max(1, len(names))
    fig, axes = plt.subplots(n, 2, figsize=(11, 0.8 + 2.2 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    drawn = []
    if not names:
        _empty(axes[0][0], "no router runs")
        axes[0][1].set_axis_off()
    for (a1, a2), name in zip(axes, names, strict=False):
        sub = routed[routed["name"] == name]
        tasks, cols = sorted(sub["task"].unique()), sorted(sub["layer"].unique())
        grid = sub.pivot_table(index="task", columns="layer", values="skip_rate").loc[tasks, cols]
        im = a1.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        a1.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
        label = sub.drop_duplicates("task").set_index("task")["label"]
        a1.set_yticks(range(len(tasks)), [label[t] for t in tasks], fontsize=7)
        a1.set_title(f"{name}: skip rate per layer", fontsize=8)
        fig.colorbar(im, ax=a1, fraction=0.03)
        share = sub.groupby("layer")["dynamic_share"].mean().reindex(cols)
        a2.bar(np.arange(len(cols)), share.to_numpy(), color="tab:orange")
        a2.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=7)
        a2.set_ylim(0, 0.5)
        overall = sub["dynamic_share_overall"].mean()
        a2.set_title(f"dynamic share per layer (overall {overall:.3f})", fontsize=8)
        drawn.append({"name": name, "overall": overall, "grid": grid.to_numpy().tolist()})
    axes[-1][0].set_xlabel("layer")
    axes[-1][1].set_xlabel("layer")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    paths = _save(fig, out_dir, "layer_skip")
    plt.close(fig)
    return paths, drawn


def figure_training_curves(runs: Sequence[dict[str, Any]], out_dir: Path, title: str):
    """Router-tuning LM loss and realised capacity against the optimiser step."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    _colours(plt, a1, a2)
    drawn = []
    for m in runs:
        curve = m.get("curve") or m.get("log") or []
        steps = [c["step"] for c in curve]
        if not steps:
            continue
        label = _short(m["run"], 40)  # the end (variant, hash) tells runs apart
        a1.plot(steps, [c.get("lm_loss", c.get("loss")) for c in curve], label=label)
        a2.plot(steps, [c["capacity"] for c in curve], label=label)
        target = m.get("mindskip_config", {}).get("capacity_target")
        if target is not None:
            a2.axhline(target, ls="--", lw=0.8, color="grey")
        drawn.append({"run": m["run"], "steps": len(steps)})
    if not drawn:
        _empty(a1, "no training curves")
    a1.set_xlabel("optimizer step")
    a1.set_ylabel("LM loss on responses (logged for both objectives)")
    a2.set_xlabel("optimizer step")
    a2.set_ylabel("capacity (fraction executed)")
    a2.set_ylim(0, 1.05)
    if drawn:
        _legend(a2, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    paths = _save(fig, out_dir, "training_curves")
    plt.close(fig)
    return paths, drawn
