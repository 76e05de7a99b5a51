"""Tables and figures from the JSON and CSV that the other stages wrote.

Never imports torch: tables and figures rebuild in seconds from ``results/``. Every table
is written as CSV, Markdown and LaTeX; every figure as PNG and PDF. The paper's numbers
(``resources/paper/*.csv``) stand beside ours, labelled as the paper's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .evaluate.paired import compare_runs

PAPER_MODEL = "Llama-3-8B"
TASK_COLUMNS_PAPER = [
    "arc_challenge",
    "boolq",
    "hellaswag",
    "mmlu",
    "openbookqa",
    "piqa",
    "rte",
    "winogrande",
]


# ----------------------------------------------------------------------------- loading
def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _method_fields(rec: dict[str, Any]) -> dict[str, Any]:
    m = rec.get("method", {})
    spec = m.get("spec", m)
    return {
        "method": spec.get("name", m.get("method")),
        "kind": spec.get("kind", m.get("method")),
        "ratio": spec.get("ratio", "native"),
        "run": spec.get("run"),
        "unit": spec.get("unit") or rec["rows"][0].get("unit"),
        "routing": spec.get("routing") or rec["rows"][0].get("routing"),
        "seed": spec.get("seed"),
    }


def collect_evals(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (method, ratio, task), with the paired difference to dense.

    The dense record is the one whose method kind is ``dense``; every other record is
    compared to it item by item (same documents), giving ``diff`` and ``diff_se``.
    """
    records = {str(p): read_json(p) for p in paths}
    dense = [p for p, r in records.items() if _method_fields(r)["kind"] == "dense"]
    rows = []
    for path, rec in records.items():
        fields = _method_fields(rec)
        paired = {}
        if dense and path != dense[0]:
            paired = {d["task"]: d for d in compare_runs(path, dense[0])}
        realised = (rec.get("routing") or {}).get("realised") or {}
        for r in rec["rows"]:
            p = paired.get(r["task"], {})
            rows.append(
                {
                    **fields,
                    "task": r["task"],
                    "label": r.get("label", r["task"]),
                    "metric": r["metric"],
                    "value": r["value"],
                    "stderr": r["stderr"],
                    "n": r["n"],
                    "num_fewshot": r["num_fewshot"],
                    "chance": r.get("chance"),
                    "requested_skip_ratio": r.get("requested_skip_ratio"),
                    "realised_skip_ratio": realised.get("skip_ratio", 0.0) or 0.0,
                    "task_skip_ratio": r.get("realised_skip_ratio") or 0.0,
                    "diff": p.get("difference", 0.0 if fields["kind"] == "dense" else math.nan),
                    "diff_se": p.get("stderr", 0.0 if fields["kind"] == "dense" else math.nan),
                    "path": path,
                }
            )
    return pd.DataFrame(rows)


def collect_profiles(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (method, ratio, regime) from ``mindskip.profile`` CSVs, each at
    ``.../{method}/{ratio}/profile.csv``: the method's speedup over dense measured in the
    same process, and the speedup of the same sublayers removed by hand (the ceiling)."""
    rows = []
    for p in paths:
        p = Path(p)
        df = pd.read_csv(p)
        method, ratio = p.parent.parent.name, p.parent.name
        df["regime"] = [_regime_label(r) for _, r in df.iterrows()]
        ceiling = df[df["variant"] == "ceiling"].set_index("regime")["speedup"]
        for _, r in df[df["variant"] == "mindskip"].iterrows():
            rows.append(
                {
                    "method": method,
                    "ratio": ratio,
                    "regime": r["regime"],
                    "speedup": r["speedup"],
                    "speedup_min": r.get("speedup_min"),
                    "speedup_max": r.get("speedup_max"),
                    "ceiling_speedup": ceiling.get(r["regime"], math.nan),
                    "achieved_vs_ceiling": r.get("achieved_vs_ceiling"),
                    "skip_ratio": r.get("skip_ratio"),
                    "tokens_per_s": r.get("tokens_per_s"),
                    "latency_ms": r.get("latency_ms"),
                    "peak_mem_bytes": r.get("peak_mem_bytes"),
                    "kv_cache_bytes": r.get("kv_cache_bytes"),
                    "device": r.get("device"),
                    "threads": r.get("threads"),
                    "repeats": r.get("repeats"),
                }
            )
    return pd.DataFrame(rows)


def _regime_label(r: Any) -> str:
    label = f"{r['phase']} b{r['batch']}x{r['prompt_len']}"
    if r["phase"] == "decode":
        label += f"+{r['new_tokens']}"
    if r.get("cache", "dynamic") != "dynamic":
        label += f" {r['cache']}"
    return label


def collect_training(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [{"path": str(p), "run": Path(p).parent.name, **read_json(p)} for p in paths]


# ----------------------------------------------------------------------------- helpers
def _pm(value: float, se: float | None, scale: float = 100.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{value * scale:.{digits}f}"
    return f"{value * scale:.{digits}f} ± {se * scale:.{digits}f}"


def _summary(g: pd.DataFrame) -> dict[str, Any]:
    """Average over tasks: mean score, its stderr, mean paired difference and its stderr
    (tasks are independent samples, so variances add)."""
    k = len(g)
    se = math.sqrt(sum(s**2 for s in g["stderr"].fillna(0))) / k
    dse = math.sqrt(sum(s**2 for s in g["diff_se"].fillna(0))) / k
    return {"avg": g["value"].mean(), "avg_se": se, "diff": g["diff"].mean(), "diff_se": dse}


def speed_lookup(profiles: pd.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """{(method, ratio): {regime: speedup}} and the matching ceilings."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    if profiles.empty:
        return out
    for _, r in profiles.iterrows():
        key = (str(r["method"]), str(r["ratio"]))
        out.setdefault(key, {})[str(r["regime"])] = float(r["speedup"])
        out[key][f"{r['regime']} ceiling"] = float(r["ceiling_speedup"])
    return out


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str) -> list[Path]:
    """``name.csv``, ``name.md`` and ``name.tex``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    df = df.astype(object).where(df.notna(), "")
    df.to_csv(paths[0], index=False)
    md = df.to_markdown(index=False) if not df.empty else "(no rows)"
    paths[1].write_text(f"{caption}\n\n{md}\n")
    tex = df.to_latex(index=False, escape=True, caption=caption, label=f"tab:{name}")
    paths[2].write_text(tex)
    return paths


# ----------------------------------------------------------------------------- tables
def main_table(evals: pd.DataFrame, profiles: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's main-table layout: method x task, average, paired drop, speedup; the
    paper's Llama-3-8B row for the same unit and routing beside ours."""
    speed = speed_lookup(profiles)
    native = evals[evals["ratio"] == "native"]
    paper_base = paper[paper["model"] == PAPER_MODEL]
    paper_dense = paper_base[paper_base["unit"] == "dense"]["avg"].iloc[0]
    rows = []
    order = {"dense": 0, "router": 1, "static": 2, "random": 3}
    for (method, kind), g in sorted(
        native.groupby(["method", "kind"]), key=lambda x: (order.get(x[0][1], 9), x[0][0])
    ):
        s = _summary(g)
        first = g.iloc[0]
        row: dict[str, Any] = {
            "method": method,
            "unit": first["unit"] if kind != "dense" else "dense",
            "routing": first["routing"] if kind != "dense" else "",
            "skip_ratio": round(float(first["realised_skip_ratio"]), 3),
        }
        for _, t in g.sort_values("task").iterrows():
            row[f"{t['label']} ({t['metric']}, n={t['n']})"] = _pm(t["value"], t["stderr"])
        row["avg"] = _pm(s["avg"], s["avg_se"])
        row["Δ vs dense (paired)"] = _pm(s["diff"], s["diff_se"])
        for regime, v in sorted(speed.get((method, "native"), {}).items()):
            row[f"speedup {regime}"] = f"{v:.2f}x"
        match = paper_base[
            (paper_base["unit"] == (row["unit"] if kind != "dense" else "dense"))
            & (paper_base["routing"].fillna("") == row["routing"])
        ]
        if not match.empty:
            p = match.iloc[0]
            row["paper avg (Llama-3-8B)"] = f"{p['avg']:.1f}"
            row["paper Δ vs dense"] = f"{p['avg'] - paper_dense:+.1f}"
            row["paper speedup"] = f"{p['speedup']:.2f}x"
        rows.append(row)
    return pd.DataFrame(rows)


FAMILIES = {"router": "mindskip", "static": "static drop", "random": "random"}


def sweep_points(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per (method family, requested ratio): average accuracy, paired difference to
    dense with its stderr, realised skip ratio. Random seeds (one evaluation each) are
    averaged. What the sweep table and the accuracy-vs-skip figure both show."""
    swept = evals[evals["ratio"] != "native"]
    rows = []
    for (kind, ratio), g in swept.groupby([swept["kind"], swept["ratio"]]):
        per_method = [_summary(gm) | {"method": m} for m, gm in g.groupby("method")]
        k = len(per_method)
        rows.append(
            {
                "kind": kind,
                "ratio": ratio,
                "methods": [p["method"] for p in per_method],
                "avg": sum(p["avg"] for p in per_method) / k,
                "diff": sum(p["diff"] for p in per_method) / k,
                "diff_se": math.sqrt(sum(p["diff_se"] ** 2 for p in per_method)) / k,
                "realised": float(g.groupby("method")["realised_skip_ratio"].first().mean()),
            }
        )
    return pd.DataFrame(rows)


def sweep_table(evals: pd.DataFrame, profiles: pd.DataFrame, paper_drop: pd.DataFrame):
    """Accuracy and speed against the requested skip ratio, per method family, with the
    paper's MindSkip vs Attention Drop comparison at the same ratio."""
    speed = speed_lookup(profiles)
    rows = []
    for pt in sweep_points(evals).itertuples(index=False):
        row = {
            "family": FAMILIES[pt.kind],
            "methods": ", ".join(pt.methods),
            "requested": float(pt.ratio),
            "realised": round(pt.realised, 3),
            "avg": round(pt.avg * 100, 2),
            "Δ vs dense (paired)": _pm(pt.diff, pt.diff_se),
        }
        sp = [speed.get((m, pt.ratio), {}) for m in pt.methods]
        for regime in sorted({r for s in sp for r in s}):
            vals = [s[regime] for s in sp if regime in s]
            row[f"speedup {regime}"] = f"{sum(vals) / len(vals):.2f}x"
        prow = paper_drop[(paper_drop["skip_ratio"] - float(pt.ratio)).abs() < 1e-9]
        if not prow.empty and pt.kind in ("router", "static"):
            p = prow.iloc[0]
            col = "mindskip" if pt.kind == "router" else "attention_drop"
            row["paper (Llama-3-8B)"] = f"{p[col]:.1f} (dense {p['dense']:.1f})"
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["requested", "family"]) if rows else pd.DataFrame()


def training_table(runs: Sequence[dict[str, Any]], paper_sizes: pd.DataFrame) -> pd.DataFrame:
    """One row per Router-Tuning run (``metrics.json`` of :func:`mindskip.train.train_routers`)."""
    rows = []
    for m in runs:
        cfg = m.get("mindskip_config", {})
        val = m.get("val", {})
        data = m.get("data", {})
        peak = m.get("peak_memory", {})
        row = {
            "run": m["run"],
            "unit": cfg.get("unit"),
            "routing": cfg.get("routing"),
            "data": data.get("source"),
            "train examples": data.get("train_examples"),
            "target capacity": cfg.get("capacity_target"),
            "lambda": cfg.get("capacity_lambda"),
            "capacity (val)": _round(val.get("capacity")),
            "target reached": m.get("target_reached"),
            "val ppl dense": _round(val.get("ppl_dense"), 2),
            "val ppl routed": _round(val.get("ppl_routed"), 2),
            "val sequences": val.get("sequences"),
            "steps": m.get("optimizer_steps"),
            "tokens": m.get("tokens_seen"),
            "wall s": _round(m.get("wall_time_s"), 1),
            "peak MB": _round((peak.get("bytes") or 0) / 2**20, 0),
        }
        match = paper_sizes[paper_sizes["train_samples"] == data.get("train_records")]
        if not match.empty:
            row["paper avg at this size (Llama-3-8B-Instruct)"] = match.iloc[0]["avg"]
        rows.append(row)
    return pd.DataFrame(rows)


def _round(v: Any, digits: int = 3) -> Any:
    return round(float(v), digits) if isinstance(v, int | float) else v


def speed_table(profiles: pd.DataFrame) -> pd.DataFrame:
    if profiles.empty:
        return profiles
    keep = [c for c in profiles.columns if c not in ("environment", "versions")]
    return profiles[keep]


# ----------------------------------------------------------------------------- figures
def _save(fig: Any, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
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


# ----------------------------------------------------------------------------- entry
def build_report(
    evals: Sequence[str | Path],
    profiles: Sequence[str | Path],
    metrics: Sequence[str | Path],
    paper_dir: str | Path,
    tables_dir: str | Path,
    figures_dir: str | Path,
    model_name: str = "",
) -> dict[str, list[str]]:
    """Every table and figure. Returns the paths written."""
    paper_dir = Path(paper_dir)
    ev = collect_evals(evals)
    pr = collect_profiles(profiles)
    tr = collect_training(metrics)
    paper_main = pd.read_csv(paper_dir / "main_results.csv")
    paper_drop = pd.read_csv(paper_dir / "attention_drop_comparison.csv")
    paper_sizes = pd.read_csv(paper_dir / "dataset_size_ablation.csv")
    tag = f"ours: {model_name}" if model_name else "ours"
    written: dict[str, list[str]] = {"tables": [], "figures": []}

    def table(df: pd.DataFrame, name: str, caption: str) -> None:
        written["tables"] += [str(p) for p in write_table(df, tables_dir, name, caption)]

    table(
        main_table(ev, pr, paper_main),
        "main",
        f"Main table ({tag}): score ± s.e. in %, n items per task, average, paired "
        f"difference to dense, speedup per regime; the paper's {PAPER_MODEL} row for the "
        "same unit and routing beside ours (paper numbers are the paper's, not ours).",
    )
    table(
        sweep_table(ev, pr, paper_drop),
        "sweep",
        f"Skip-ratio sweep ({tag}): MindSkip calibrated to each ratio, static drop and "
        "random skipping at the same ratio; the paper's MindSkip vs Attention Drop values "
        "(read off its bar chart, task unlabelled) at the same ratio.",
    )
    table(
        training_table(tr, paper_sizes),
        "training",
        f"Router-Tuning runs ({tag}): data, capacity reached, validation perplexity, cost.",
    )
    table(speed_table(pr), "speed", f"Speed per regime ({tag}), with the hand-removed ceiling.")
    table(paper_main, "paper_main", "The paper's main table (Llama-3-8B), for reference.")

    figures_dir = Path(figures_dir)
    records = [read_json(p) for p in evals]
    written["figures"] += [str(p) for p in figure_accuracy_vs_skip(ev, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_pareto(ev, pr, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_layer_skip(records, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_training_curves(tr, figures_dir, tag)]
    return written
