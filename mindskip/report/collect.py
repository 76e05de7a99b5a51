"""Loading what the other stages wrote: evaluation records with their per-item logs, the
paired analysis against dense (:mod:`mindskip.verdicts`), profile tables and training
metrics. A method's identity comes from its record (the planned method the workflow
stored in it), never from a folder name."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..evaluate.items import read_items
from ..files import ResultFileError, read_json
from ..method import Method, stored_method
from ..records import PROFILE_ROW_KEYS, check_evaluation, check_profile
from ..roles import Roles
from ..verdicts import POOLED, Analysis, analyse, dynamic_share, method_info
from ..verdicts.metrics import N_BOOT

DENSE = "dense@native"
PAIRED = ("acc_diff", "kl", "gold_logprob", "flip", "flip_gain", "flip_loss")
BOOTSTRAP = {"n_boot": N_BOOT, "seed": 0}
TASK_DATA = Path("results/assets/tasks/data")  # <task>.test.jsonl: the scored parts


@dataclass(frozen=True)
class EvalRun:
    """One evaluation record: a planned method at one ratio (``name`` = method@ratio)."""

    name: str
    method: Method  # the planned method the record stores (method.spec)
    ratio: str
    record: dict[str, Any]
    path: Path

    @property
    def realised(self) -> float:
        realised = (self.record.get("routing") or {}).get("realised") or {}
        return float(realised.get("skip_ratio") or 0.0)

    @property
    def route_on(self) -> str | None:
        return (self.record.get("run") or {}).get("route_on")

    def items(self) -> list[dict[str, Any]]:
        return read_items(self.path.parent / self.record["files"]["items"])

    def scores(self) -> dict[str, str]:
        """The score column of each task: the metric the record reports for it."""
        return {r["task"]: r["metric"] for r in self.record["rows"]}


def load_runs(paths: Iterable[str | Path]) -> list[EvalRun]:
    """Every record, identified by the planned method it stores (``method.spec``)."""
    runs = []
    for p in paths:
        rec = check_evaluation(read_json(p, "evaluation record"), p)
        method, ratio = stored_method(rec, p)
        runs.append(EvalRun(f"{method.name}@{ratio}", method, ratio, rec, Path(p)))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two records for the same method and ratio: {sorted(names)}")
    return runs


def analyse_runs(runs: Sequence[EvalRun], roles: Roles, **options: Any) -> Analysis:
    """Every run paired against dense on the same items, and every claim's comparison
    between the runs the plan gave each role (``roles``)."""
    by_name = {r.name: r for r in runs}
    if DENSE not in by_name:
        raise ValueError(f"no dense record among {sorted(by_name)}: the analysis needs it")
    scores: dict[str, str] = {}
    for r in runs:
        scores |= r.scores()
    info = {r.name: method_info(r.record) for r in runs}
    items = {r.name: r.items() for r in runs}
    options = {"available": available_items(by_name[DENSE].record)} | BOOTSTRAP | options
    return analyse(items, DENSE, info=info, roles=roles, score=scores, **options)


def available_items(record: Mapping[str, Any], task_data: Path = TASK_DATA) -> int | None:
    """Items the scored tasks hold (their scored parts, every leaf of a group): from each
    row's ``n_available``, else by counting the built task files; None for no rows.

    Raises ``FileNotFoundError`` when a row has no ``n_available`` (a record written before
    it was kept) and its task file is not built: without the count, a comparison that
    more items could not decide would read "inconclusive" instead of "not decidable"."""
    total = 0
    for row in record.get("rows", []):
        if row.get("n_available") is not None:
            total += int(row["n_available"])
            continue
        for leaf in row.get("leaf_tasks") or [row["task"]]:
            path = task_data / f"{leaf}.test.jsonl"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing, and the dense record does not say how many items "
                    f"{row['task']!r} holds: the verdicts need it to tell 'not decidable' "
                    "from 'inconclusive'. Build the assets first (python -m mindskip.data "
                    "prepare --out results/assets)"
                )
            with path.open("rb") as f:
                total += sum(1 for line in f if line.strip())
    return total or None


def eval_frame(runs: Sequence[EvalRun], analysis: Analysis) -> pd.DataFrame:
    """Tidy: one row per run x task (and ``task="pooled"``), with the score, its stderr,
    n, chance, the realised skip ratio, and every paired metric against dense with its
    95% CI (``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``)."""
    rows = []
    for r in runs:
        base = _identity(r)
        pm = analysis.vs_dense.get(r.name)
        per_task = (r.record.get("routing") or {}).get("realised_per_task") or {}
        tasks = [(t["task"], t) for t in r.record["rows"]] + [(POOLED, None)]
        for task, row in tasks:
            out = base | {"task": task}
            if row is not None:
                skip = (per_task.get(task) or {}).get("skip_ratio")
                out |= {
                    "label": row.get("label", task),
                    "metric": row["metric"],
                    "value": row["value"],
                    "stderr": row["stderr"],
                    "n": row["n"],
                    "chance": row.get("chance"),
                    "num_fewshot": row.get("num_fewshot"),
                    "task_skip_ratio": r.realised if skip is None else skip,
                }
            else:
                out |= _pooled(r.record["rows"])
            out |= _paired(pm, task)
            rows.append(out)
    return pd.DataFrame(rows)


def _identity(r: EvalRun) -> dict[str, Any]:
    m = r.method
    return {
        "name": r.name,
        "method": m.name,
        "kind": m.kind,
        "ratio": r.ratio,
        "requested_skip_ratio": None if r.ratio == "native" else float(r.ratio),
        "realised_skip_ratio": r.realised,
        "unit": m.unit if m.kind != "dense" else None,
        "routing": m.routing if m.kind == "router" else None,
        "run": m.run,
        "candidates": m.candidates,
        "seed": m.seed,
        "train_samples": m.train_samples,
        "lora": m.lora,
        "route_on": r.route_on,
        "path": str(r.path),
    }


def _pooled(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The item-weighted mean score over tasks (the paired CIs pool the same way)."""
    n = sum(int(t["n"]) for t in rows)
    value = sum(float(t["value"]) * int(t["n"]) for t in rows) / n
    var = sum((float(t["stderr"] or 0.0) * int(t["n"])) ** 2 for t in rows) / n**2
    chance = [t.get("chance") for t in rows]
    pooled_chance = (
        sum(float(c) * int(t["n"]) for c, t in zip(chance, rows, strict=True)) / n
        if all(c is not None for c in chance)
        else None
    )
    return {
        "label": "pooled",
        "metric": "+".join(sorted({t["metric"] for t in rows})),
        "value": value,
        "stderr": var**0.5,
        "n": n,
        "chance": pooled_chance,
    }


def _paired(pm: Any, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in PAIRED:
        if pm is None:  # dense itself
            out |= {m: 0.0, f"{m}_ci_low": 0.0, f"{m}_ci_high": 0.0}
            continue
        e = pm.get(m, task)
        out |= {m: e.value, f"{m}_ci_low": e.ci_low, f"{m}_ci_high": e.ci_high}
    return out


def layer_frame(runs: Sequence[EvalRun]) -> pd.DataFrame:
    """Tidy: per routed run x task x layer, the realised skip rate and the dynamic share
    (``min(c, 1 - c)``: the share of that layer's decisions no static choice reproduces)."""
    rows = []
    for r in runs:
        per_task = (r.record.get("routing") or {}).get("realised_per_task") or {}
        labels = {t["task"]: t.get("label", t["task"]) for t in r.record.get("rows", [])}
        for task, stats in sorted(per_task.items()):
            cap = (stats or {}).get("capacity_per_layer") or {}
            if not cap:
                continue
            share = dynamic_share(cap, (stats or {}).get("decisions_per_layer"))
            for layer, c in sorted(cap.items(), key=lambda kv: int(kv[0])):
                rows.append(
                    {
                        "name": r.name,
                        "method": r.method.name,
                        "kind": r.method.kind,
                        "ratio": r.ratio,
                        "task": task,
                        "label": labels.get(task, task),
                        "layer": int(layer),
                        "skip_rate": 1.0 - float(c),
                        "dynamic_share": share.per_layer[str(layer)],
                        "dynamic_share_overall": share.overall,
                    }
                )
    return pd.DataFrame(rows)


def collect_profiles(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (method, ratio, regime, cache) from ``mindskip.profile`` results: the
    method's speedup over dense in the same process with its CI, the ceiling's (the same
    sublayers removed by hand), both skip ratios. The method's identity comes from the
    ``method`` entry that the workflow's profile step stores in ``profile.json``."""
    rows = []
    for p in paths:
        p = Path(p)
        record = p.with_suffix(".json")
        doc = check_profile(read_json(record, "profile record"), record)
        method, ratio = stored_method(doc, record)
        df = pd.read_csv(p)
        taken = doc.get("measurement") or doc.get("env") or {}  # older records: "env"
        load = [(taken.get(k) or [math.nan])[0] for k in ("loadavg_start", "loadavg_end")]
        missing = [k for k in PROFILE_ROW_KEYS if k not in df.columns]
        if missing or len(df) != len(doc["rows"]):
            raise ResultFileError(
                f"{p}: not the rows of its profile.json (missing columns {missing}, "
                f"{len(df)} rows against {len(doc['rows'])})"
            )
        df["regime"] = [_regime_label(r) for _, r in df.iterrows()]
        # a decode timed as generate(N) - generate(1) is no time when noise made it <= 0:
        # every ratio of its regime then compares a non-time (shown as such, never a ratio)
        fastest = df["time_s_min"] if "time_s_min" in df else pd.Series(math.nan, df.index)
        not_a_time = set(df.loc[fastest <= 0, "regime"])
        ceilings = df[df["variant"] == "ceiling"].set_index("regime")
        for _, r in df[df["variant"] == "mindskip"].iterrows():
            c = ceilings.loc[r["regime"]] if r["regime"] in ceilings.index else None
            rows.append(
                {
                    "method": method.name,
                    "kind": method.kind,
                    "ratio": ratio,
                    "regime": r["regime"],
                    **{k: r.get(k) for k in _PROFILE_COLUMNS},
                    "ceiling_speedup": None if c is None else c.get("speedup"),
                    "ceiling_ci_low": None if c is None else c.get("speedup_ci_low"),
                    "ceiling_ci_high": None if c is None else c.get("speedup_ci_high"),
                    "time_not_positive": r["regime"] in not_a_time,
                    "load_start": load[0],
                    "load_end": load[1],
                    "machine": _machine(r.get("device"), doc.get("environment"), taken),
                }
            )
    return pd.DataFrame(rows)


_PROFILE_COLUMNS = (
    "phase",
    "cache",
    "batch",
    "prompt_len",
    "new_tokens",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "resolved",
    "achieved_vs_ceiling",
    "skip_ratio",
    "tokens_per_s",
    "latency_ms",
    "peak_mem_bytes",
    "kv_cache_bytes",
    "aten_ops",
    "device",
    "threads",
    "repeats",
)


def _machine(device: Any, *sources: dict[str, Any] | None) -> str:
    """What timed it: the GPU's name on CUDA, else the CPU's, from the first record section
    that names it (profiles taken on two machines stand in one table; each ratio is to
    dense in its own process)."""
    key = "gpu" if str(device).startswith("cuda") else "cpu"
    return str(next((s[key] for s in sources if s and s.get(key)), device))


def _regime_label(r: Any) -> str:
    label = f"{r['phase']} b{r['batch']}x{r['prompt_len']}"
    if r["phase"] == "decode":
        label += f"+{r['new_tokens']}"
    if r.get("cache", "dynamic") != "dynamic":
        label += f" {r['cache']}"
    return label


def collect_training(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [{"path": str(p), "run": Path(p).parent.name, **read_json(p)} for p in paths]
