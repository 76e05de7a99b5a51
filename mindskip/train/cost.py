"""What router-only training costs against full fine-tuning, step for step.

:func:`benchmark_training_cost` times :func:`mindskip.train.step.train_step` (the step
that training runs) on one batch, once with only the routers trainable (graph cut below
the lowest routed layer) and once with every parameter trainable, and reads peak memory.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..config import MindSkipConfig
from ..provenance import versions
from ..stats import reset_routing_stats
from ..surgery import apply_mindskip, is_mindskip, router_parameters
from .examples import encode_records, step_loader
from .recipe import TrainConfig
from .step import StepSetup, cut_graph_below_routers, device_of, freeze_except, make_optimizer
from .step import train_step as run_step

MODES = ("routers", "full")


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory: CUDA allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return {
            "bytes": int(torch.cuda.max_memory_allocated(device)),
            "method": "cuda_max_allocated",
        }
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"bytes": int(kib) * 1024, "method": "ru_maxrss (process peak RSS)"}


def _rss_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak(device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:  # Linux: "5" resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM after reset (peak RSS)"
    except OSError:
        return "ru_maxrss (process peak RSS, not reset)"


def _time_mode(
    model: nn.Module, batch: Any, mode: str, cfg: TrainConfig, mindskip_config, steps, warmup
) -> dict[str, Any]:
    device = device_of(model)
    trainable = router_parameters(model) if mode == "routers" else list(model.parameters())
    freeze_except(model, trainable)
    optimizer = make_optimizer(trainable, cfg)
    setup = StepSetup(
        trainable=trainable,
        optimizer=optimizer,
        scheduler=LambdaLR(optimizer, lambda _: 1.0),
        mindskip_config=mindskip_config,
        objective=cfg.objective,
        penalty=cfg.penalty,
        distill_chunk=cfg.distill_chunk,
        max_grad_norm=cfg.max_grad_norm,
        bf16=True,
    )
    seen = {"tracked": False}
    hook = cut_graph_below_routers(model, detach=mode == "routers", seen=seen)
    start_rss = _rss_bytes("VmRSS")
    method = _reset_peak(device)
    times = []
    try:
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            run_step(model, batch, setup)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        if hook is not None:
            hook.remove()
    if device.type == "cuda":
        peak, start = int(torch.cuda.max_memory_allocated(device)), None
    else:
        peak, start = _rss_bytes("VmHWM") or peak_memory(device)["bytes"], start_rss
    reset_routing_stats(model)
    mean = sum(times) / len(times)
    return {
        "step_s": times,
        "step_s_mean": mean,
        "tokens_per_s": batch.real_tokens / mean,
        "peak_bytes": peak,
        "start_bytes": start,
        "memory_method": method,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "autograd_below_lowest_routed": seen["tracked"],
    }


def benchmark_training_cost(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    mindskip_config: MindSkipConfig,
    *,
    modes: Sequence[str] = MODES,
    micro_batch: int = 8,
    max_length: int = 256,
    steps: int = 3,
    warmup_steps: int = 1,
    lr: float = 1e-5,
    objective: str = "lm",
) -> dict[str, Any]:
    """Step time and peak memory of router-only training vs full fine-tuning, same batch.

    One optimizer step = :func:`~mindskip.train.step.train_step` on one micro-batch of the
    first ``micro_batch`` usable records (forward, backward, clip, AdamW). ``"routers"``
    trains the routers only; ``"full"`` every parameter of the same routed model. Memory:
    CUDA allocator peak, or on CPU the peak RSS (reset per mode through
    ``/proc/self/clear_refs``) and the RSS the mode started from; on CPU run one mode per
    process for a clean number (the allocator keeps freed memory).
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"mode must be 'routers' or 'full', got {bad}")
    if not is_mindskip(model):
        apply_mindskip(model, mindskip_config)
    device = device_of(model)
    examples = encode_records(tokenizer, records, max_length)[:micro_batch]
    loader = step_loader(
        examples,
        tokenizer,
        global_batch=micro_batch,
        micro_batch=micro_batch,
        device=device,
        generator=None,
    )
    batch = next(iter(loader))
    cfg = TrainConfig(lr=lr, objective=objective, micro_batch=micro_batch, global_batch=micro_batch)
    result: dict[str, Any] = {
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "torch_threads": torch.get_num_threads(),
        "micro_batch": len(examples),
        "max_length": max_length,
        "batch_shape": list(batch.micro[0]["input_ids"].shape),
        "tokens_per_step": batch.real_tokens,
        "steps_timed": steps,
        "objective": objective,
        "mindskip_config": mindskip_config.to_dict(),
        "versions": versions(),
    }
    model.train()
    for mode in modes:
        result[mode] = _time_mode(model, batch, mode, cfg, mindskip_config, steps, warmup_steps)
    freeze_except(model, [])
    model.eval()
    if "routers" in result and "full" in result:
        result["full_over_routers_step_time"] = (
            result["full"]["step_s_mean"] / result["routers"]["step_s_mean"]
        )
    return result
