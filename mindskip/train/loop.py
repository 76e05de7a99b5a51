"""Router-Tuning: train the routers alone (every base weight frozen), with capacity control.

One call (the caller splits the records, with :func:`mindskip.data.split.split_records`)::

    metrics = train_routers(model, tok, split.train, split.validation, MindSkipConfig(...),
                            TrainConfig(), out_dir)

The routers start where ``TrainConfig.init`` says (:mod:`mindskip.train.start`), every
other parameter is frozen (LoRA adapters loaded from ``lora_dir`` too; with
``TrainConfig.lora_r > 0`` fresh adapters train jointly), each optimizer step is
:func:`mindskip.train.step.train_step`, and validation compares the routed model with the
dense one (:func:`mindskip.train.validate.validate`). ``out_dir`` receives the routers
(:func:`mindskip.save_routers`), joint adapters, and ``metrics.json``, each written
atomically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import MindSkipConfig
from ..surgery import apply_mindskip, get_config, is_mindskip, router_parameters
from .examples import encode_records
from .lora import add_lora, load_adapters
from .objective import capacity_multiplier
from .recipe import TrainConfig
from .record import RunRecord, check_target, metrics_record, save_run
from .start import init_routers
from .step import (
    StepSetup,
    cut_graph_below_routers,
    device_of,
    freeze_except,
    make_setup,
    penalty_scale,
    train_step,
)
from .validate import validate

log = logging.getLogger(__name__)


def _ensure_routers(model: nn.Module, config: MindSkipConfig) -> None:
    if not is_mindskip(model):
        apply_mindskip(model, config)
    elif get_config(model) != config:
        raise ValueError(
            f"the model already has routers with {get_config(model)}, "
            f"not {config}; remove_mindskip first or pass the same config"
        )


def _trainable(model: nn.Module, cfg: TrainConfig, lora_dir: str | Path | None) -> tuple:
    """(routers, joint LoRA parameters); loads frozen adapters from ``lora_dir`` first."""
    if lora_dir is not None and cfg.lora_r:
        raise ValueError(
            "lora_dir (frozen adapters) and lora_r > 0 (joint adapters) exclude each other"
        )
    if lora_dir is not None:
        load_adapters(model, lora_dir)
        joint: list[nn.Parameter] = []
    elif cfg.lora_r:
        joint = add_lora(
            model,
            r=cfg.lora_r,
            alpha=cfg.lora_alpha,
            dropout=cfg.lora_dropout,
            targets=cfg.lora_targets,
        )
    else:
        joint = []
    routers = router_parameters(model)
    freeze_except(model, [*routers, *joint])
    return routers, joint


def _log_step(entry: dict[str, Any], total: int, progress: Any, quiet: bool) -> None:
    progress.update(1)
    progress.set_postfix(loss=f"{entry['lm_loss']:.3f}", cap=f"{entry['capacity']:.3f}")
    if quiet:
        log.info(
            "step %d/%d: lm loss %.4f, capacity %.3f, lr %.3g",
            entry["step"],
            total,
            entry["lm_loss"],
            entry["capacity"],
            entry["lr"],
        )


def _run_steps(
    model: nn.Module,
    loader: Any,
    setup: StepSetup,
    cfg: TrainConfig,
    detach: bool,
) -> tuple[list[dict[str, Any]], bool]:
    """Every optimizer step of the run; returns the curve and whether autograd tracked
    the input of the lowest routed layer."""
    from tqdm.auto import tqdm

    total = cfg.epochs * len(loader)
    ramp = cfg.penalty_warmup_steps(total)
    seen = {"tracked": False}
    hook = cut_graph_below_routers(model, detach=detach, seen=seen)
    progress = tqdm(total=total, desc="router tuning", unit="step", disable=not cfg.progress)
    curve: list[dict[str, Any]] = []
    model.train()
    try:
        for _epoch in range(cfg.epochs):
            for batch in loader:
                k = len(curve)
                entry = {"step": k + 1, **train_step(model, batch, setup, penalty_scale(k, ramp))}
                if (k + 1) % cfg.log_every and k + 1 != total:
                    entry.pop("capacity_per_layer")
                entry["response_tokens"] = batch.response_tokens
                curve.append(entry)
                _log_step(entry, total, progress, quiet=not cfg.progress)
    finally:
        if hook is not None:
            hook.remove()
        progress.close()
    return curve, seen["tracked"]


def train_routers(
    model: nn.Module,
    tokenizer: Any,
    train_records: Sequence[dict[str, Any]],
    val_records: Sequence[dict[str, Any]],
    mindskip_config: MindSkipConfig,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    lora_dir: str | Path | None = None,
    data_source: str = "records passed in memory",
    data_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Router-Tuning: train only the routers of ``model`` and return the metrics record.

    Applies MindSkip with ``mindskip_config`` when the model has no routers (a model that
    has them must carry the same config). ``train_records`` are trained on, in a seeded
    order; ``val_records`` only validate (both Alpaca dicts; split them beforehand with
    :func:`mindskip.data.split.split_records`). ``lora_dir``: adapters from
    :func:`mindskip.train.train_lora`, loaded first and kept frozen. ``data_meta`` is
    merged into the record's ``data`` block (e.g. a generated set's sidecar hash). When
    ``out_dir`` is given, writes ``routers.safetensors`` + config, adapters of a joint run,
    and ``metrics.json``. The model is left in eval mode with the trained routers.
    """
    cfg = train_config or TrainConfig()
    # dual control's multipliers; a bad pairing (dual without a target) stops here, first
    multiplier = capacity_multiplier(
        mindskip_config, cfg.penalty, cfg.capacity_control, cfg.dual_lr
    )
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _ensure_routers(model, mindskip_config)
    device = device_of(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    routers, joint = _trainable(model, cfg, lora_dir)
    train_ex = encode_records(tokenizer, train_records, cfg.max_length, cfg.template)
    val_ex = encode_records(tokenizer, val_records, cfg.max_length, cfg.template)
    if not train_ex:
        raise ValueError("no training example keeps a response token within max_length")
    batch = cfg.eval_batch or cfg.micro_batch
    start = init_routers(model, train_ex, tokenizer, cfg, batch_size=batch)
    loader, setup = make_setup(
        model, tokenizer, train_ex, [*routers, *joint], cfg, mindskip_config, multiplier
    )
    total = cfg.epochs * len(loader)
    t_train, c_train = time.perf_counter(), time.process_time()
    curve, tracked = _run_steps(model, loader, setup, cfg, detach=not joint)
    train_time, train_cpu = time.perf_counter() - t_train, time.process_time() - c_train
    for p in [*routers, *joint]:
        p.requires_grad_(False)
    val = validate(model, val_ex, tokenizer, batch, bf16=cfg.bf16, kl_chunk=cfg.distill_chunk)
    model.eval()
    run = RunRecord(
        cfg=cfg,
        mindskip_config=mindskip_config,
        curve=curve,
        val=val,
        start=start,
        train_records=train_records,
        val_records=val_records,
        train_examples=train_ex,
        val_examples=val_ex,
        warmup_steps=cfg.warmup_steps(total),
        tracked_below=tracked,
        trainable=[*routers, *joint],
        routers=routers,
        joint_lora=bool(joint),
        lora_dir=lora_dir,
        data_source=data_source,
        data_meta=dict(data_meta or {}),
        train_time_s=train_time,
        train_cpu_s=train_cpu,
        t_start=t_start,
    )
    metrics = metrics_record(model, tokenizer, run)
    if multiplier is not None:  # dual control: where each multiplier ended
        metrics["capacity_multipliers"] = dict(multiplier.values)
    metrics["target_reached"] = check_target(metrics, mindskip_config, cfg)
    if out_dir is not None:
        save_run(model, Path(out_dir), metrics, joint_lora=bool(joint))
    _summary_line(metrics, train_time)
    return metrics


def _summary_line(metrics: dict[str, Any], train_time: float) -> None:
    val = metrics["val"]

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4g}"

    log.info(
        "router tuning: %d steps in %.0f s, val capacity %s, dynamic share %s, "
        "ppl routed %s vs dense %s",
        metrics["optimizer_steps"],
        train_time,
        fmt(val.get("capacity")),
        fmt(val.get("dynamic_share")),
        fmt(val.get("ppl_routed")),
        fmt(val.get("ppl_dense")),
    )
