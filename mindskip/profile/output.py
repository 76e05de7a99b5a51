"""What a profile writes: ``profile.csv`` (tidy rows), ``profile.json`` (rows, environment,
config) and ``profile.md`` (one table per phase and cache), each written atomically.

In the Markdown, dense shows tokens/s (latency); every other variant its speedup over
dense with the CI of the median paired ratio in brackets, or "not resolved" when that CI
contains 1.0 (or there are too few repeats for one), then its share of the ceiling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import write_csv, write_json, write_text
from ..provenance import stamp
from ..records import check_profile
from ..surgery import decoder_layers
from .config import ProfileConfig
from .inputs import Inputs
from .stats import min_repeats
from .variants import torch_dtype


@dataclass
class ProfileResult:
    """A profile's rows (one per variant x regime), its environment and config, and more
    top-level entries of its JSON (``record``)."""

    rows: list[dict[str, Any]]
    env: dict[str, Any]  # how it was measured (:func:`measurement`), load and time taken
    config: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    stamp: dict[str, Any] = field(default_factory=stamp)  # versions, machine, date


FIELDS = (
    "model", "device", "dtype", "threads", "method", "variant", "routers", "pattern",
    "skipped", "skip_ratio", "inputs", "phase", "cache", "batch", "prompt_len",
    "prompt_tokens", "new_tokens", "steps", "repeats", "time_s", "time_s_min", "time_s_max",
    "time_s_q1", "time_s_q3", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max",
    "latency_ms", "speedup", "speedup_min", "speedup_max", "speedup_ci_low",
    "speedup_ci_high", "resolved", "achieved_vs_ceiling", "achieved_min", "achieved_max",
    "achieved_ci_low", "achieved_ci_high", "peak_mem_bytes", "work_mem_bytes",
    "kv_cache_bytes", "aten_ops", "check", "status",
)  # fmt: skip


def measurement(config: ProfileConfig, model: nn.Module, inputs: Inputs) -> dict[str, Any]:
    """How each number was taken: device, dtype, model, timer, memory, inputs (versions,
    machine, threads and date are the record's provenance stamp, taken with it)."""
    cuda = config.device.startswith("cuda")
    return {
        "gpu": torch.cuda.get_device_name(device=torch.device(config.device)) if cuda else None,
        "device": config.device,
        "dtype": str(torch_dtype(config)).removeprefix("torch."),
        "model": config.model,
        "num_layers": len(decoder_layers(model)),
        "shape_only": config.shape_only,
        "weights": "random (shape_only)" if config.shape_only else "real",
        "timer": "cuda events + synchronize" if cuda else "time.perf_counter",
        "memory": (
            "weights + peak torch.cuda.max_memory_allocated above the baseline before the call"
            if cuda
            else "weights + peak bytes of tensor storages created by the call (dispatch tracker)"
        ),
        "decode_timer": config.decode_timer,
        "inputs": inputs.describe(),
        "inputs_sha256": inputs.digest(),
        "speed_ci": (
            f"{config.ci_level:.0%} order-statistic CI of the median of paired per-repeat "
            f"ratios (needs >= {min_repeats(config.ci_level)} repeats); resolved: CI excludes 1"
        ),
        "strict": config.strict,
    }


def write_results(result: ProfileResult, out_dir: str | Path) -> Path:
    """``profile.csv`` (tidy), ``profile.json`` (the provenance stamp, ``result.record``,
    env, config and rows), ``profile.md``."""
    out = Path(out_dir)
    env = result.env
    rows = [
        {
            "model": env["model"],
            "device": env["gpu"] or env["device"],
            "dtype": env["dtype"],
            "threads": result.stamp["environment"]["torch_threads"],
            **r,
        }
        for r in result.rows
    ]
    doc = {**result.stamp, **result.record, "measurement": env, "config": result.config}
    doc["rows"] = rows
    check_profile(doc, out / "profile.json")  # what the speed tables read, before any write
    write_csv(out / "profile.csv", rows, FIELDS)
    write_json(out / "profile.json", doc, indent=1)
    write_text(out / "profile.md", to_markdown(result))
    return out


def _regime(r: Mapping[str, Any]) -> tuple:
    return (r["phase"], r["cache"], r["batch"], r["prompt_len"], r["new_tokens"])


def _label(r: Mapping[str, Any]) -> str:
    return "dense" if r["variant"] == "dense" else f"{r['method']} {r['variant']}"


def _speed(r: Mapping[str, Any], need: int) -> str:
    if "speedup" not in r:
        return "no dense timing"
    if "speedup_ci_low" not in r:
        return f"not resolved ({r['repeats']} repeats < {need})"
    ci = f"[{r['speedup_ci_low']:.2f}, {r['speedup_ci_high']:.2f}]"
    return f"{r['speedup']:.2f}x {ci}" if r.get("resolved") else f"not resolved {ci}"


def _cell(r: Mapping[str, Any] | None, need: int) -> str:
    if r is None or "time_s" not in r:
        return "" if r is None else str(r["status"])[:60]
    if r["variant"] == "dense":
        return f"{r['tokens_per_s']:,.0f} tok/s ({r['latency_ms']:.1f} ms)"
    c = _speed(r, need)
    if "achieved_vs_ceiling" in r:
        c += f"; {r['achieved_vs_ceiling']:.0%} of ceiling"
    return c


def _speed_tables(rows: list[dict[str, Any]], need: int) -> list[str]:
    out: list[str] = []
    by_key = {(_regime(r), _label(r)): r for r in rows}
    regimes = list(dict.fromkeys(_regime(r) for r in rows))
    labels = list(dict.fromkeys(_label(r) for r in rows))
    for phase, kind in dict.fromkeys(g[:2] for g in regimes):
        cols = [g for g in regimes if g[:2] == (phase, kind)]
        names = [f"b{b}x{p}" + (f"+{n}" if n else "") for _, _, b, p, n in cols]
        out += ["", f"## {phase}, {kind} cache", "", "| variant | " + " | ".join(names) + " |"]
        out.append("|---" * (len(cols) + 1) + "|")
        for label in labels:
            cells = [_cell(by_key.get((g, label)), need) for g in cols]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _counts_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["", "## Memory, KV cache, aten ops, skip ratio, checks", ""]
    out.append(
        "| regime | variant | skip ratio | prompt tokens | peak MiB | working MiB | KV MiB "
        "| aten ops | check |"
    )
    out.append("|---" * 9 + "|")
    for r in rows:
        p, c, b, t, n = _regime(r)
        mib = [r[k] / 2**20 for k in ("peak_mem_bytes", "work_mem_bytes", "kv_cache_bytes")]
        cells = [f"{m:.1f}" if m >= 0 else "" for m in mib]
        cells.append(str(r["aten_ops"]) if r["aten_ops"] >= 0 else "")
        out.append(
            f"| {p} {c} b{b}x{t}+{n} | {_label(r)} | {r['skip_ratio']:.3f} | "
            f"{r['prompt_tokens']:g} | " + " | ".join(cells) + f" | {r['check']} |"
        )
    return out


def to_markdown(result: ProfileResult) -> str:
    """One table per phase and cache: dense tokens/s, then speedups (achieved/ceiling)."""
    env, rows = result.env, result.rows
    machine, v = result.stamp["environment"], result.stamp["versions"]
    level = result.config.get("ci_level", 0.95)
    need = min_repeats(level)
    out = [
        f"# Profile: {env['model']} ({env['weights']} weights), {env['dtype']}",
        "",
        f"{machine['date']}; {env['gpu'] or machine['cpu']}; torch {v.get('torch')}, "
        f"{machine.get('torch_threads')} threads; transformers {v.get('transformers')}; "
        f"mindskip {v.get('mindskip')}. Load average at start/end: {env.get('loadavg_start')} / "
        f"{env.get('loadavg_end')}. Inputs: {env.get('inputs')}. Dense: tokens/s (latency). "
        "Others: speedup over dense, the median of paired per-repeat ratios with its "
        f"{level:.0%} CI [low, high] ('not resolved' when the CI contains 1.0 or there are "
        f"fewer than {need} repeats), then achieved/ceiling (median paired ratio).",
    ]
    if env.get("truncated"):
        out.append(f"**Truncated**: {env['truncated']}.")
    out += _speed_tables(rows, need) + _counts_table(rows)
    out += ["", "Routers:", ""]
    out += sorted({f"- {_label(r)}: {r['routers']}" for r in rows}) + [""]
    return "\n".join(out)
