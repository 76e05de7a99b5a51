"""Figures: every one as PNG and PDF, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import atomic_path
from .collect import _method_fields
from .tables import speed_lookup, sweep_points


def _save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
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


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def figure_accuracy_vs_skip(evals: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    """Paired accuracy change against the realised skip ratio: one line per method family,
    one point per requested ratio (the points of :func:`sweep_points`)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    labels = {"router": "MindSkip (calibrated)", "static": "static drop", "random": "random"}
    markers = {"router": "o", "static": "s", "random": "^"}
    points = sweep_points(evals)
    for kind, label in labels.items():
        g = points[points["kind"] == kind].sort_values("realised") if len(points) else points
        if g.empty:
            continue
        ax.errorbar(
            g["realised"],
            g["diff"] * 100,
            yerr=g["diff_se"] * 100,
            marker=markers[kind],
            capsize=3,
            label=label,
        )
    if points.empty:
        _empty(ax, "no swept ratios")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("realised skip ratio (fraction of all layers' sublayers)")
    ax.set_ylabel("Δ accuracy vs dense, points (paired ± s.e.)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    paths = _save(fig, out_dir, "accuracy_vs_skip")
    plt.close(fig)
    return paths


def figure_pareto(evals: pd.DataFrame, profiles: pd.DataFrame, out_dir: Path, title: str):
    """Average accuracy against speedup for every profiled method (one panel per regime)."""
    plt = _plt()
    speed = speed_lookup(profiles)
    regimes = sorted({r for v in speed.values() for r in v if not r.endswith("ceiling")})
    n = max(1, len(regimes))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.8), squeeze=False)
    dense = evals[evals["kind"] == "dense"]
    dense_avg = dense["value"].mean() * 100 if not dense.empty else None
    if not regimes:
        _empty(axes[0][0], "no profiles")
    for ax, regime in zip(axes[0], regimes, strict=False):
        if dense_avg is not None:
            ax.scatter([1.0], [dense_avg], marker="*", s=120, color="k", label="dense")
        for (method, ratio), g in evals.groupby(["method", "ratio"]):
            sp = speed.get((method, ratio), {})
            if regime not in sp:
                continue
            ax.scatter(sp[regime], g["value"].mean() * 100, label=f"{method} @{ratio}", s=25)
            ax.scatter(sp[f"{regime} ceiling"], g["value"].mean() * 100, marker="x", color="grey")
        ax.set_xlabel(f"speedup over dense ({regime}); x = ceiling")
        ax.set_ylabel("average accuracy (%)")
        ax.set_title(regime, fontsize=9)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    paths = _save(fig, out_dir, "pareto")
    plt.close(fig)
    return paths


def figure_layer_skip(records: Sequence[dict[str, Any]], out_dir: Path, title: str):
    """Realised skip rate per layer (columns) and task (rows) for each router run."""
    plt = _plt()
    import numpy as np

    native = [r for r in records if _method_fields(r)["kind"] == "router"]
    n = len(native) or 1
    fig, axes = plt.subplots(n, 1, figsize=(7, 0.6 + 2.4 * n), squeeze=False)
    if not native:
        _empty(axes[0][0], "no router runs")
    for ax, rec in zip(axes[:, 0], native, strict=False):
        per_task = rec["routing"]["realised_per_task"]
        tasks = sorted(per_task)
        layers = sorted({int(i) for t in tasks for i in per_task[t]["capacity_per_layer"]})
        grid = np.array(
            [
                [1 - per_task[t]["capacity_per_layer"].get(str(i), 1.0) for i in layers]
                for t in tasks
            ]
        )
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(layers)), [str(i) for i in layers], fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        f = _method_fields(rec)
        ax.set_title(f"{f['method']} @ {f['ratio']}: skip rate per layer", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.03)
    axes[-1][0].set_xlabel("layer")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    paths = _save(fig, out_dir, "layer_skip")
    plt.close(fig)
    return paths


def figure_training_curves(runs: Sequence[dict[str, Any]], out_dir: Path, title: str):
    """Router-tuning loss and realised capacity against the optimiser step."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for m in runs:
        curve = m.get("curve") or m.get("log") or []
        steps = [c["step"] for c in curve]
        if not steps:
            continue
        a1.plot(steps, [c.get("lm_loss", c.get("loss")) for c in curve], label=m["run"])
        a2.plot(steps, [c["capacity"] for c in curve], label=m["run"])
        target = m.get("mindskip_config", {}).get("capacity_target")
        if target is not None:
            a2.axhline(target, ls="--", lw=0.8, color="grey")
    a1.set_xlabel("optimizer step")
    a1.set_ylabel("LM loss (response tokens)")
    a2.set_xlabel("optimizer step")
    a2.set_ylabel("capacity (fraction executed)")
    a2.set_ylim(0, 1.05)
    a1.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    paths = _save(fig, out_dir, "training_curves")
    plt.close(fig)
    return paths
