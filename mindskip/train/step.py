"""One optimizer step, and what it needs: freezing, AdamW, the lr schedule, autocast.

:func:`train_step` is the only training step: :func:`mindskip.train.train_routers`,
:func:`mindskip.train.train_lora` and :func:`mindskip.train.benchmark_training_cost` all
call it, so the benchmark times exactly what training runs.

No backward runs below the lowest routed layer when nothing there trains:
:func:`cut_graph_below_routers` detaches that layer's input (and records whether autograd
was tracking it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import get_scheduler

from ..config import MindSkipConfig
from ..stats import reset_routing_stats, routing_stats
from ..surgery import mindskip_layers
from .examples import Example, StepBatch, step_loader
from .objective import (
    CapacityMultiplier,
    capacity_penalty,
    objective_sums,
    teacher_hidden,
)
from .recipe import TrainConfig

_HF_SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it; otherwise the model's dtype."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def freeze_except(model: nn.Module, trainable: Sequence[nn.Parameter]) -> None:
    """``requires_grad`` off for every parameter of ``model``, on for ``trainable``."""
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)


def make_optimizer(params: Sequence[nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        list(params), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.adam_beta1, 0.999)
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``transformers.get_scheduler`` with the recipe's schedule and linear warm-up."""
    return get_scheduler(
        _HF_SCHEDULES[cfg.schedule],
        optimizer,
        num_warmup_steps=cfg.warmup_steps(total_steps),
        num_training_steps=total_steps,
    )


def penalty_scale(step_index: int, ramp_steps: int) -> float:
    """Share of lambda at optimizer step ``step_index`` (0-based): a linear ramp from 0
    over ``ramp_steps`` steps, then 1."""
    return 1.0 if ramp_steps <= 0 else min(1.0, step_index / ramp_steps)


def cut_graph_below_routers(
    model: nn.Module, detach: bool, seen: dict[str, bool]
) -> torch.utils.hooks.RemovableHandle | None:
    """Pre-hook on the lowest routed layer: record in ``seen["tracked"]`` whether its input
    is tracked by autograd and, if ``detach``, cut the graph there. None without routers."""
    layers = mindskip_layers(model)
    if not layers:
        return None

    def hook(_module: nn.Module, args: tuple, kwargs: dict):
        h = args[0]
        seen["tracked"] = seen["tracked"] or bool(h.requires_grad)
        if detach and h.requires_grad:
            return (h.detach(), *args[1:]), kwargs
        return None

    return layers[min(layers)].register_forward_pre_hook(hook, with_kwargs=True)


@dataclass(frozen=True)
class StepSetup:
    """What every step of a run shares."""

    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    mindskip_config: MindSkipConfig | None
    objective: str = "lm"
    penalty: str = "global"
    distill_chunk: int = 1024
    max_grad_norm: float | None = 1.0
    bf16: bool = True
    loss_reduction: str = "tokens"
    multiplier: CapacityMultiplier | None = None  # dual control: updated after every step


def make_setup(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    trainable: Sequence[nn.Parameter],
    cfg: TrainConfig,
    mindskip_config: MindSkipConfig | None,
    multiplier: CapacityMultiplier | None = None,
) -> tuple[Any, StepSetup]:
    """The run's step loader (seeded shuffle) and what its steps share (AdamW, schedule,
    and, under dual capacity control, the run's ``multiplier``)."""
    loader = step_loader(
        examples,
        tokenizer,
        global_batch=cfg.global_batch,
        micro_batch=cfg.micro_batch,
        device=device_of(model),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    optimizer = make_optimizer(trainable, cfg)
    setup = StepSetup(
        trainable=list(trainable),
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg, cfg.epochs * len(loader)),
        mindskip_config=mindskip_config,
        objective=cfg.objective,
        penalty=cfg.penalty,
        distill_chunk=cfg.distill_chunk,
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        loss_reduction=cfg.loss_reduction,
        multiplier=multiplier,
    )
    return loader, setup


def train_step(
    model: nn.Module, batch: StepBatch, setup: StepSetup, lambda_scale: float = 1.0
) -> dict[str, Any]:
    """Forward + backward over the micro-batches of ``batch``, clip, AdamW and schedule
    step. Returns the step's record (lr, losses, capacity, grad norm before clipping).

    The objective is normalised over the whole step: the LM loss by its response tokens
    (``loss_reduction="sequence"``: each sequence's mean, averaged over the step's
    sequences), the KL by its real tokens; each micro-batch's capacity penalty is weighted by its
    share of the step's sequences (and by ``lambda_scale``, the penalty warm-up).
    """
    device = device_of(model)
    teachers: list[torch.Tensor | None] = [None] * len(batch.micro)
    if setup.objective == "distill":
        with autocast(device, setup.bf16):
            teachers = [teacher_hidden(model, micro) for micro in batch.micro]
    reset_routing_stats(model)  # after the teacher: the step's statistics are the student's
    totals = {"lm": 0.0, "kl": 0.0, "penalty": 0.0}
    for micro, teacher in zip(batch.micro, teachers, strict=True):
        with autocast(device, setup.bf16):
            sums = objective_sums(model, micro, setup.objective, teacher, setup.distill_chunk)
        by_sequence = setup.loss_reduction == "sequence" and setup.objective == "lm"
        if setup.objective == "distill":
            loss = sums["kl"] / max(batch.real_tokens, 1)
        elif by_sequence:  # each sequence's mean, then the mean over the step's sequences
            loss = sums["lm_seq"] / batch.sequences
        else:
            loss = sums["lm"] / max(batch.response_tokens, 1)
        pen = None
        if setup.multiplier is not None and lambda_scale > 0:
            pen = setup.multiplier.penalty(model)
        elif setup.mindskip_config is not None and lambda_scale > 0:
            pen = capacity_penalty(model, setup.mindskip_config, setup.penalty)
        if pen is not None:
            pen = pen * (lambda_scale * micro["input_ids"].shape[0] / batch.sequences)
            loss = loss + pen
            totals["penalty"] += float(pen.detach())
        if loss.requires_grad:
            loss.backward()
        if by_sequence:
            totals["lm"] += float(sums["lm_seq"].detach()) / batch.sequences
        else:
            totals["lm"] += float(sums["lm"].detach()) / max(batch.response_tokens, 1)
        if "kl" in sums:
            totals["kl"] += float(sums["kl"].detach()) / max(batch.real_tokens, 1)
    return _finish_step(model, batch, setup, totals, lambda_scale)


def _finish_step(
    model: nn.Module,
    batch: StepBatch,
    setup: StepSetup,
    totals: dict[str, float],
    lambda_scale: float,
) -> dict[str, Any]:
    max_norm = setup.max_grad_norm if setup.max_grad_norm is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(setup.trainable, max_norm))
    lr = setup.optimizer.param_groups[0]["lr"]
    setup.optimizer.step()
    setup.scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    stats = routing_stats(model)
    main = totals["kl"] if setup.objective == "distill" else totals["lm"]
    entry = {
        "lr": lr,
        "loss": main + totals["penalty"],
        "lm_loss": totals["lm"],
        "capacity_loss": totals["penalty"],
        "capacity": stats.capacity,
        "capacity_per_layer": {str(i): c for i, c in stats.total.items()},
        "grad_norm": grad_norm,
        "lambda_scale": lambda_scale,
        "sequences": batch.sequences,
        "tokens": batch.real_tokens,
    }
    if setup.objective == "distill":
        entry["distill_loss"] = totals["kl"]
    if setup.multiplier is not None:  # the multipliers this step used, then one dual step
        entry["lambda"] = dict(setup.multiplier.values)
        setup.multiplier.update(stats.capacity, stats.total)
    return entry
