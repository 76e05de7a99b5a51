"""Tables: every one as CSV (numbers only, tidy) and Markdown + LaTeX (formatted).

The CSV holds values, standard errors, CI ends and counts in separate columns, so anyone
can re-plot them; the ``±`` and ``[lo, hi]`` strings live only in the Markdown and LaTeX.
A speedup whose CI spans 1.0 reads "not resolved", never as a ratio.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..capacity import format_multipliers
from ..files import write_text
from ..verdicts import POOLED

PAPER_MODEL = "Llama-3-8B"
FAMILIES = {
    "router": "MindSkip (calibrated)",
    "static": "static drop",
    "random": "random",
    "pattern": "router's own pattern",
}
RATIO_FLAG = 0.02  # profiled and evaluated skip ratios further apart are flagged


# ----------------------------------------------------------------------------- formatting
def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def pct(x: Any, digits: int = 1) -> str:
    return "" if _missing(x) else f"{100 * float(x):.{digits}f}"


def pm(value: Any, se: Any) -> str:
    if _missing(value):
        return ""
    return pct(value) if _missing(se) else f"{pct(value)} ± {pct(se)}"


def ci(value: Any, lo: Any, hi: Any, points: bool = True) -> str:
    """``value [lo, hi]``: points (x 100, one decimal) or four decimals."""
    if _missing(value):
        return ""
    f = (lambda x: f"{100 * float(x):+.1f}") if points else (lambda x: f"{float(x):.4f}")
    return f"{f(value)} [{f(lo)}, {f(hi)}]"


NO_TIME = "no measurement: a decode time <= 0 (noise exceeded the decode)"


def speed_cell(speedup: Any, lo: Any, hi: Any) -> str:
    """``1.08x [1.02, 1.15]``, or ``not resolved [0.95, 1.10]`` when the CI spans 1.0."""
    if _missing(speedup):
        return ""
    if _missing(lo) or _missing(hi):
        return f"{float(speedup):.2f}x (no CI)"
    interval = f"[{float(lo):.2f}, {float(hi):.2f}]"
    if float(lo) <= 1.0 <= float(hi):
        return f"not resolved {interval}"
    return f"{float(speedup):.2f}x {interval}"


def write_table(
    numeric: pd.DataFrame,
    out_dir: str | Path,
    name: str,
    caption: str,
    formatted: pd.DataFrame | None = None,
) -> list[Path]:
    """``name.csv`` from ``numeric``; ``name.md`` and ``name.tex`` from ``formatted``
    (default: ``numeric``)."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    buf = io.StringIO()
    numeric.to_csv(buf, index=False)
    write_text(paths[0], buf.getvalue())
    shown = numeric if formatted is None else formatted
    shown = shown.astype(object).where(shown.notna(), "")
    md = shown.to_markdown(index=False) if not shown.empty else "(no rows)"
    write_text(paths[1], f"{caption}\n\n{md}\n")
    tex = shown.to_latex(index=False, escape=True, caption=caption, label=f"tab:{name}")
    write_text(paths[2], tex)
    return paths


# ----------------------------------------------------------------------------- speed
def speed_lookup(profiles: pd.DataFrame) -> dict[tuple[str, str], dict[str, str]]:
    """{(method, ratio): {regime: formatted speedup, "<regime> ceiling": ...}}."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for _, r in profiles.iterrows():
        key = (str(r["method"]), str(r["ratio"]))
        cell = speed_cell(r["speedup"], r.get("speedup_ci_low"), r.get("speedup_ci_high"))
        out.setdefault(key, {})[str(r["regime"])] = cell
        ceiling = speed_cell(
            r["ceiling_speedup"], r.get("ceiling_ci_low"), r.get("ceiling_ci_high")
        )
        out[key][f"{r['regime']} ceiling"] = ceiling
    return out


def speed_table(profiles: pd.DataFrame, evals: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method, ratio and regime: speedup with CI, the ceiling's, their ratio, the skip
    ratio realised on the profiled inputs beside the one realised in the evaluation."""
    if profiles.empty:
        return profiles, profiles
    pooled = evals[evals["task"] == POOLED].set_index(["method", "ratio"])["realised_skip_ratio"]
    df = profiles.copy()
    df["eval_skip_ratio"] = [
        pooled.get((m, r), math.nan) for m, r in zip(df["method"], df["ratio"], strict=True)
    ]
    df["skip_ratios_differ"] = (df["skip_ratio"] - df["eval_skip_ratio"]).abs() > RATIO_FLAG
    shown = pd.DataFrame(
        {
            "method": df["method"],
            "ratio": df["ratio"],
            "regime": df["regime"],
            "speedup [95% CI]": [
                speed_cell(*v)
                for v in zip(
                    df["speedup"], df["speedup_ci_low"], df["speedup_ci_high"], strict=True
                )
            ],
            "ceiling [95% CI]": [
                speed_cell(*v)
                for v in zip(
                    df["ceiling_speedup"], df["ceiling_ci_low"], df["ceiling_ci_high"], strict=True
                )
            ],
            "of ceiling": [
                "" if _missing(x) else f"{float(x):.0%}" for x in df["achieved_vs_ceiling"]
            ],
            "skip (profiled)": df["skip_ratio"].map(lambda x: f"{x:.3f}"),
            "skip (scored)": [
                ("" if _missing(x) else f"{x:.3f}") + (" (differs)" if flag else "")
                for x, flag in zip(df["eval_skip_ratio"], df["skip_ratios_differ"], strict=True)
            ],
            "aten ops": df["aten_ops"],
            "KV MiB": df["kv_cache_bytes"].map(lambda b: "" if b < 0 else f"{b / 2**20:.1f}"),
            "repeats": df["repeats"],
            "machine": df["machine"],
            "load (1 min) / threads": [
                "" if _missing(a) or _missing(b) else f"{a:.1f}-{b:.1f} / {t}"
                for a, b, t in zip(df["load_start"], df["load_end"], df["threads"], strict=True)
            ],
        }
    )
    speeds = ["speedup [95% CI]", "ceiling [95% CI]", "of ceiling"]
    shown.loc[df["time_not_positive"], speeds] = NO_TIME
    return df, shown


def _cells(df: pd.DataFrame, value: str, lo: str, hi: str) -> list[str]:
    return [speed_cell(*v) for v in zip(df[value], df[lo], df[hi], strict=True)]


# ----------------------------------------------------------------------------- main
def _native(evals: pd.DataFrame) -> pd.DataFrame:
    return evals[evals["ratio"] == "native"]


_ORDER = {"dense": 0, "lora": 1, "router": 2, "static": 3, "random": 4, "pattern": 5}


def _method_rows(evals: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    groups = list(evals.groupby("name", sort=False))
    return sorted(groups, key=lambda g: (_ORDER.get(g[1]["kind"].iloc[0], 9), g[0]))


def _paired_cells(p: pd.Series) -> dict[str, str]:
    return {
        "Δ acc vs dense, points [95% CI]": ci(
            p["acc_diff"], p["acc_diff_ci_low"], p["acc_diff_ci_high"]
        ),
        "KL(dense ‖ method) [95% CI]": ci(p["kl"], p["kl_ci_low"], p["kl_ci_high"], points=False),
        "flips lost / gained (%)": f"{pct(p['flip_loss'])} / {pct(p['flip_gain'])}",
    }


def main_table(
    evals: pd.DataFrame, profiles: pd.DataFrame, paper: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's main-table layout (unit x routing, tasks, average, speedup) for every
    native method, with the paired metrics against dense and the paper's row beside."""
    native = _native(evals)
    speed = speed_lookup(profiles)
    paper_base = paper[paper["model"] == PAPER_MODEL]
    paper_dense = paper_base[paper_base["unit"] == "dense"]["avg"].iloc[0]
    rows = []
    for _name, g in _method_rows(native):
        first, pooled = g.iloc[0], g[g["task"] == POOLED].iloc[0]
        kind = first["kind"]
        row: dict[str, Any] = {
            "method": first["method"],
            "unit": "dense" if kind in ("dense", "lora") else first["unit"],
            "routing": "" if _missing(first["routing"]) else first["routing"],
            "skip ratio": f"{first['realised_skip_ratio']:.3f}",
        }
        for _, t in g[g["task"] != POOLED].iterrows():
            row[f"{t['label']} ({t['metric']}, n={t['n']})"] = pm(t["value"], t["stderr"])
        row["pooled"] = pm(pooled["value"], pooled["stderr"])
        row |= _paired_cells(pooled)
        for regime, cell in sorted(speed.get((first["method"], "native"), {}).items()):
            row[f"speedup {regime}"] = cell
        match = paper_base[
            (paper_base["unit"] == row["unit"])
            & (paper_base["routing"].fillna("") == row["routing"])
        ]
        if not match.empty and kind in ("dense", "router"):
            p = match.iloc[0]
            row["paper avg (Llama-3-8B)"] = f"{p['avg']:.1f}"
            row["paper Δ vs dense"] = f"{p['avg'] - paper_dense:+.1f}"
            row["paper speedup"] = f"{p['speedup']:.2f}x"
        rows.append(row)
    rows += _paper_rows(native, rows, paper_base)
    return native.drop(columns=["path"]), pd.DataFrame(rows)


def task_key(task: str) -> str:
    """lm-eval's built-in name of a scored task (``arc_challenge_embedded`` ->
    ``arc_challenge``): the paper's tables name tasks so."""
    return task[: -len("_embedded")] if task.endswith("_embedded") else task


def _paper_rows(
    native: pd.DataFrame, ours: list[dict[str, Any]], paper_base: pd.DataFrame
) -> list[dict[str, Any]]:
    """The paper's rows for the units and routings we show, each task's number under our
    column of the same task (the paper's tasks we do not score are left out; its average
    over them is recomputed over the tasks shown)."""
    tasks = native[native["task"] != POOLED].drop_duplicates("task")
    columns = {
        task_key(t["task"]): f"{t['label']} ({t['metric']}, n={t['n']})"
        for _, t in tasks.iterrows()
        if task_key(t["task"]) in paper_base.columns
    }
    if not columns:
        return []
    shown = {(r["unit"], r["routing"]) for r in ours}
    out = []
    for _, p in paper_base.iterrows():
        routing = "" if pd.isna(p["routing"]) else p["routing"]
        if (p["unit"], routing) not in shown:
            continue
        row: dict[str, Any] = {
            "method": f"paper {PAPER_MODEL}: {p['unit']}" + (f"/{routing}" if routing else ""),
            "unit": p["unit"],
            "routing": routing,
        }
        row |= {col: f"{float(p[key]):.1f}" for key, col in columns.items()}
        row["pooled"] = f"{sum(float(p[k]) for k in columns) / len(columns):.1f} (mean)"
        out.append(row)
    return out


# ----------------------------------------------------------------------------- dense
def published_scores(paper_dir: str | Path, model_name: str) -> pd.DataFrame | None:
    """``resources/published/<model name>.csv`` (beside ``resources/paper``): the scores
    a model's authors published for it, if the file is there."""
    path = Path(paper_dir).parent / "published" / f"{model_name}.csv"
    return pd.read_csv(path) if model_name and path.is_file() else None


def dense_table(
    evals: pd.DataFrame, published: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dense model's score per task next to the scores its authors published
    (``resources/published/<model>.csv``), as a check on the data and the task files."""
    dense = evals[(evals["kind"] == "dense") & (evals["ratio"] == "native")]
    dense = dense[dense["task"] != POOLED]
    numeric = dense.drop(columns=["path"]).copy()
    rows = []
    pub = published if published is not None else pd.DataFrame(columns=["model", "task"])
    for _, t in dense.iterrows():
        key = task_key(t["task"])
        rows.append(
            {
                "task": t["label"],
                "metric": t["metric"],
                "shots": "" if _missing(t.get("num_fewshot")) else int(t["num_fewshot"]),
                "n": int(t["n"]),
                "ours (dense)": pm(t["value"], t["stderr"]),
                "chance": pct(t["chance"]),
                **_published_cells(pub, key, dense),
            }
        )
    return numeric, pd.DataFrame(rows)


def _published_cells(pub: pd.DataFrame, key: str, dense: pd.DataFrame) -> dict[str, str]:
    """The published number for one task key (ARC is published as the mean of ARC-E and
    ARC-C: ours is that mean when both are scored)."""
    lookup_key = "arc" if key in ("arc_easy", "arc_challenge") else key
    out = {}
    for model, g in pub[pub["task"] == lookup_key].groupby("model", sort=True):
        p = g.iloc[0]
        value = f"{float(p['value']):.1f}"
        if lookup_key == "arc":
            both = dense[dense["task"].map(task_key).isin(["arc_easy", "arc_challenge"])]
            if len(both) == 2:
                value += f" (ours, mean of ARC-E and ARC-C: {pct(both['value'].mean())})"
            else:
                value += " (ARC-E and ARC-C averaged)"
        out[f"published: {model}"] = value
        out[f"setting ({model})"] = p["setting"]
    return out


# ----------------------------------------------------------------------------- sweep
def sweep_points(evals: pd.DataFrame) -> pd.DataFrame:
    """One pooled row per method at each requested ratio (random seeds are separate rows):
    what the sweep table and the quality-vs-skip figure show."""
    swept = evals[(evals["ratio"] != "native") & (evals["task"] == POOLED)].copy()
    swept["family"] = swept["kind"].map(FAMILIES)
    return swept.sort_values(["requested_skip_ratio", "kind", "method"])


def sweep_table(
    evals: pd.DataFrame, profiles: pd.DataFrame, paper_drop: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Quality and speed against the requested skip ratio, per method, with the paper's
    MindSkip vs Attention Drop values at the same ratio."""
    points = sweep_points(evals)
    speed = speed_lookup(profiles)
    rows = []
    for _, p in points.iterrows():
        label = p["method"] if p["kind"] != "static" else f"{p['method']} ({p['candidates']})"
        row = {
            "family": p["family"],
            "method": label,
            "requested": f"{p['requested_skip_ratio']:.3f}",
            "realised": f"{p['realised_skip_ratio']:.3f}",
            "pooled acc": pct(p["value"]),
        }
        row |= _paired_cells(p)
        for regime, cell in sorted(speed.get((p["method"], p["ratio"]), {}).items()):
            row[f"speedup {regime}"] = cell
        prow = paper_drop[(paper_drop["skip_ratio"] - p["requested_skip_ratio"]).abs() < 1e-9]
        if not prow.empty and p["kind"] in ("router", "static"):
            q = prow.iloc[0]
            col = "mindskip" if p["kind"] == "router" else "attention_drop"
            # the source (a bar chart) names neither the model nor the task
            row["paper (bar chart, model and task unnamed)"] = (
                f"{q[col]:.1f} (dense {q['dense']:.1f})"
            )
        rows.append(row)
    numeric = evals[evals["ratio"] != "native"].drop(columns=["path"])
    return numeric, pd.DataFrame(rows)


# ----------------------------------------------------------------------------- training
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
            "objective": m.get("objective"),
            "penalty": m.get("penalty"),
            "lr": (m.get("train_config") or {}).get("lr"),
            "init": (m.get("init") or {}).get("init")
            if isinstance(m.get("init"), dict)
            else m.get("init"),
            "loss over": (m.get("train_config") or {}).get("loss_reduction", "tokens"),
            "training forward": "all rows x gate"
            if cfg.get("full_compute_in_training", True)
            else "executing rows x gate",
            "router dtype": cfg.get("router_dtype", "float32"),
            "target capacity": cfg.get("capacity_target"),
            "lambda": _lambda_cell(cfg.get("capacity_lambda"), m.get("capacity_multipliers")),
            "capacity (val)": _round(val.get("capacity")),
            "dynamic share (val)": _round(val.get("dynamic_share")),
            "target reached": m.get("target_reached"),
            "capacity note": m.get("target_note", ""),
            "val ppl dense": _round(val.get("ppl_dense"), 2),
            "val ppl routed": _round(val.get("ppl_routed"), 2),
            "val sequences": val.get("sequences"),
            "steps": m.get("optimizer_steps"),
            "tokens": m.get("tokens_seen"),
            "response tokens": m.get("response_tokens_seen"),
            "wall s": _round(m.get("wall_time_s"), 1),
            "peak MB": _round((peak.get("bytes") or 0) / 2**20, 0),
        }
        match = paper_sizes[paper_sizes["train_samples"] == data.get("train_records")]
        if not match.empty:
            row["paper avg at this size (Llama-3-8B-Instruct)"] = match.iloc[0]["avg"]
        rows.append(row)
    return pd.DataFrame(rows)


def capacity_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per router run with a capacity target: how lambda was controlled, where it ended,
    the validation capacity against the target and whether the target was reached."""
    rows = []
    for m in runs:
        cfg = m.get("mindskip_config", {})
        target = cfg.get("capacity_target")
        if target is None:
            continue
        tc = m.get("train_config") or {}
        mult = list((m.get("capacity_multipliers") or {}).values())
        cap = (m.get("val") or {}).get("capacity", m.get("final_capacity"))
        rows.append(
            {
                "run": m["run"],
                "unit": cfg.get("unit"),
                "routing": cfg.get("routing"),
                "control": tc.get("capacity_control", "fixed"),
                "penalty": m.get("penalty"),
                "lambda start": cfg.get("capacity_lambda"),
                "lambda end (min)": _round(min(mult)) if mult else cfg.get("capacity_lambda"),
                "lambda end (max)": _round(max(mult)) if mult else cfg.get("capacity_lambda"),
                "target": target,
                "capacity (val)": _round(cap),
                "error": _round(None if cap is None else cap - target),
                "tolerance": tc.get("target_tolerance"),
                "reached": m.get("target_reached"),
                "steps": m.get("optimizer_steps"),
                "note": m.get("target_note", ""),
            }
        )
    return pd.DataFrame(rows)


def _lambda_cell(start: Any, multipliers: dict[str, float] | None) -> Any:
    """The run's lambda; under dual control, where its multipliers started and ended."""
    if not multipliers:
        return start
    return f"dual: {start:g} -> {format_multipliers(multipliers)}"


def _round(v: Any, digits: int = 3) -> Any:
    return round(float(v), digits) if isinstance(v, int | float) else v


# ----------------------------------------------------------------------------- layers
def layers_table(layers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per routed method and ratio: each layer's skip rate and dynamic share, averaged
    over tasks, and the overall dynamic share."""
    if layers.empty:
        return layers, layers
    g = layers.groupby(["name", "layer"], sort=False)[["skip_rate", "dynamic_share"]].mean()
    rows = []
    for name, sub in g.groupby(level="name", sort=False):
        sub = sub.droplevel("name")
        overall = layers[layers["name"] == name]["dynamic_share_overall"].mean()
        row = {"method@ratio": name, "dynamic share (overall)": f"{overall:.3f}"}
        row |= {f"L{i}": f"{s:.2f} ({d:.2f})" for i, (s, d) in sub.iterrows()}
        rows.append(row)
    return layers, pd.DataFrame(rows)


# ----------------------------------------------------------------------------- recipes
def recipes_table(
    frontier: pd.DataFrame, evals: pd.DataFrame, runs: Sequence[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every router run at a calibrated ratio: the capacity its training reached, its
    realised ratio at its own threshold (native) and after calibration, its paired
    metrics against dense, and against the best static mixture at its realised ratio
    (``frontier``, from :func:`mindskip.verdicts.analyse`): how each recipe fares, side by
    side."""
    from ..verdicts.table import format_effect

    pooled = evals[evals["task"] == POOLED].set_index("name")
    trained = {m["run"]: m for m in runs}
    rows = []
    for f in frontier.itertuples(index=False):
        p = pooled.loc[f.a]
        native = f"{p['method']}@native"
        m = trained.get(p["run"], {})
        val = m.get("val", {})
        rows.append(
            {
                "method": f.comparison.removesuffix(" vs the best static mixture at its ratio"),
                "capacity at the end of training (val)": _round(val.get("capacity")),
                "target reached": m.get("target_reached"),
                "realised ratio, native": (
                    f"{pooled.loc[native, 'realised_skip_ratio']:.3f}"
                    if native in pooled.index
                    else ""
                ),
                "requested": f"{p['requested_skip_ratio']:.3f}",
                "realised": f"{p['realised_skip_ratio']:.3f}",
                **_paired_cells(p),
                "KL vs the best static mixture [95% CI]": (
                    format_effect(f.metric, f.value, f.ci_low, f.ci_high) if f.matched else ""
                ),
                "verdict (KL lower than static)": f.verdict if f.matched else "",
                "static mixture": f.note.split("B = ", 1)[-1],
            }
        )
    return frontier, pd.DataFrame(rows)
