"""Tables in the paper's layouts: every table as CSV, Markdown and LaTeX."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import write_text

PAPER_MODEL = "Llama-3-8B"


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
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    write_text(paths[0], buf.getvalue())
    md = df.to_markdown(index=False) if not df.empty else "(no rows)"
    write_text(paths[1], f"{caption}\n\n{md}\n")
    write_text(
        paths[2], df.to_latex(index=False, escape=True, caption=caption, label=f"tab:{name}")
    )
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
