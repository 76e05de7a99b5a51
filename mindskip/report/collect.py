"""Loading what the other stages wrote into frames: evaluation records (with the paired
difference to dense), profile tables, training metrics. A method's identity comes from
its record (the planned method the workflow stored), never from a folder name."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..evaluate.paired import compare_runs
from ..files import read_json as _read_json


def read_json(path: str | Path) -> dict[str, Any]:
    return _read_json(path)


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
