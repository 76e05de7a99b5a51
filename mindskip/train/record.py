"""The metrics record of a router-tuning run (``metrics.json``) and the run's files.

The keys the report reads stay where they were (``log`` with step, lr, loss, lm_loss,
capacity_loss, capacity, capacity_per_layer, grad_norm; ``val``; ``data``;
``mindskip_config``; ``train_config``; ``target_reached``; ``peak_memory``;
``wall_time_s``; ``tokens_seen``, ``response_tokens_seen``), plus the objective, the
penalty form, the routers' start, the dynamic share and the provenance ``stamp()``.
Every file is written atomically (:mod:`mindskip.files`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..capacity import format_multipliers
from ..checkpoint import routers_hash, save_routers
from ..config import MindSkipConfig
from ..files import write_json
from ..provenance import stamp, versions
from ..surgery import mindskip_layers
from .cost import peak_memory
from .examples import Example, records_sha256
from .lora import adapters_sha256, save_adapters
from .recipe import TrainConfig
from .step import autocast, device_of

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


@dataclass
class RunRecord:
    """Everything a run produced that its record reports."""

    cfg: TrainConfig
    mindskip_config: MindSkipConfig
    curve: list[dict[str, Any]]
    val: dict[str, Any]
    start: dict[str, Any]
    train_records: Sequence[dict[str, Any]]
    val_records: Sequence[dict[str, Any]]
    train_examples: list[Example]
    val_examples: list[Example]
    warmup_steps: int
    tracked_below: bool
    trainable: list[nn.Parameter]
    routers: list[nn.Parameter]
    joint_lora: bool
    lora_dir: str | Path | None
    data_source: str
    data_meta: dict[str, Any] = field(default_factory=dict)
    train_time_s: float = 0.0
    train_cpu_s: float = 0.0
    t_start: float = 0.0


def _data_block(tokenizer: Any, run: RunRecord) -> dict[str, Any]:
    train_recs, val_recs = run.train_records, run.val_records
    dropped = len(train_recs) - len(run.train_examples) + len(val_recs) - len(run.val_examples)
    return {
        "source": run.data_source,
        "sha256": records_sha256(train_recs),
        "records": len(train_recs) + len(val_recs),
        "train_records": len(train_recs),
        "train_examples": len(run.train_examples),
        "val_records": len(val_recs),
        "val_examples": len(run.val_examples),
        "val_sha256": records_sha256(val_recs),
        "dropped_no_response": dropped,
        "truncated": sum(e["truncated"] for e in run.train_examples),
        "format": "chat_template" if getattr(tokenizer, "chat_template", None) else "plain",
        **run.data_meta,
    }


def metrics_record(model: nn.Module, tokenizer: Any, run: RunRecord) -> dict[str, Any]:
    """The ``metrics.json`` record of a finished run (without ``target_reached``)."""
    cfg, curve = run.cfg, run.curve
    device = device_of(model)
    after = [e["capacity"] for e in curve[run.warmup_steps :]]
    record: dict[str, Any] = {
        "loss_curve": [e["loss"] for e in curve],
        "log": curve,
        "final_capacity": curve[-1]["capacity"] if curve else None,
        "final_capacity_per_layer": curve[-1].get("capacity_per_layer") if curve else None,
        "min_capacity_after_warmup": min(after) if after else None,
        "val": run.val,
        "objective": cfg.objective,
        "penalty": cfg.penalty,
        "init": run.start,
        "capacity_target": run.mindskip_config.capacity_target,
        "capacity_lambda": run.mindskip_config.capacity_lambda,
        "target_tolerance": cfg.target_tolerance,
        "optimizer_steps": len(curve),
        "warmup_steps": run.warmup_steps,
        "penalty_warmup_steps": cfg.penalty_warmup_steps(len(curve)),
        "tokens_seen": sum(e["tokens"] for e in curve),
        "response_tokens_seen": sum(e["response_tokens"] for e in curve),
        "autograd_below_lowest_routed": run.tracked_below,
        "lowest_routed_layer": min(mindskip_layers(model)),
        "trainable_parameters": sum(p.numel() for p in run.trainable),
        "router_parameters": sum(p.numel() for p in run.routers),
        "train_time_s": run.train_time_s,
        "train_cpu_s": run.train_cpu_s,
        "wall_time_s": time.perf_counter() - run.t_start,
        "peak_memory": peak_memory(device),
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "autocast_bf16": isinstance(autocast(device, cfg.bf16), torch.autocast),
        "torch_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "train_config": cfg.to_dict(),
        "mindskip_config": run.mindskip_config.to_dict(),
        "lora": _lora_block(run),
        "versions": versions(("peft",) if run.joint_lora or run.lora_dir else ()),
        "data": _data_block(tokenizer, run),
        "provenance": stamp(seed=cfg.seed),
    }
    return record


def _lora_block(run: RunRecord) -> dict[str, Any] | None:
    if run.lora_dir is not None:
        return {"mode": "frozen", "dir": str(run.lora_dir), "sha256": adapters_sha256(run.lora_dir)}
    if run.joint_lora:
        return {"mode": "joint", "r": run.cfg.lora_r}
    return None


def check_target(metrics: dict[str, Any], config: MindSkipConfig, cfg: TrainConfig) -> bool | None:
    """Whether the validation capacity (else the last step's) is within the tolerance of
    the target; None without a target. A miss is logged loudly, with what to change, and
    the record says why (``metrics["target_note"]``); so does a run with no target."""
    target = config.capacity_target
    if target is None:
        metrics["target_note"] = (
            "no capacity target: the run's capacity is wherever lambda "
            f"({config.capacity_lambda:g}) and the LM loss leave it; a threshold sets the ratio"
        )
        return None
    val = metrics["val"]
    cap = val.get("capacity", metrics["final_capacity"])
    cap = float("nan") if cap is None else cap
    reached = bool(abs(cap - target) <= cfg.target_tolerance)
    if not reached:
        dual = cfg.capacity_control == "dual"
        hint = (
            "the multiplier had not converged: train longer or raise dual_lr"
            if dual
            else "raise capacity_lambda (or use capacity_control: dual) or train longer"
            if cap > target
            else "the objective did not pull capacity back up: use capacity_control: dual, "
            "or lower capacity_lambda or lr, "
            "or train longer"
        )
        metrics["target_note"] = (
            f"capacity {cap:.3f} vs target {target:.3f} +- {cfg.target_tolerance:g} after "
            f"{metrics.get('optimizer_steps')} steps at lambda "
            + (
                f"{format_multipliers(metrics.get('capacity_multipliers'))} (dual, from "
                f"{config.capacity_lambda:g})"
                if dual
                else f"{config.capacity_lambda:g}"
            )
            + f": {hint}"
        )
        log.warning(
            "!!! CAPACITY TARGET NOT REACHED: realised capacity %.3f on %s, target %.3f "
            "+- %.3f (%s) !!!",
            cap,
            "validation" if val.get("sequences") else "the last training step",
            target,
            cfg.target_tolerance,
            hint,
        )
    return reached


def _save_routers_atomically(model: nn.Module, out_dir: Path) -> None:
    """:func:`mindskip.save_routers` into a temporary folder beside ``out_dir``, then each
    file renamed into place (a killed job leaves old files or none, never half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".routers.", dir=out_dir))
    try:
        save_routers(model, tmp)
        for f in tmp.iterdir():
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_run(model: nn.Module, out_dir: Path, metrics: dict[str, Any], joint_lora: bool) -> None:
    """Routers (+ config), joint adapters, then ``metrics.json`` (last: it marks the run
    finished)."""
    _save_routers_atomically(model, out_dir)
    metrics["routers_sha256"] = routers_hash(out_dir)
    if joint_lora:
        save_adapters(model, out_dir)
        metrics["lora"]["sha256"] = adapters_sha256(out_dir)
    write_json(out_dir / METRICS_FILE, metrics)
