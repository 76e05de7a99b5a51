"""The models a profile compares, all sharing one copy of the weights.

- ``dense``: the stock model;
- ``mindskip``: routed layers whose decisions skip a pattern (forced: zero routers with
  threshold 1 on the pattern layers, so the routers really run), trained routers, a
  method spec (applied by ``prepare_method``), or any ``prepare(model) -> model``;
- ``ceiling``: the same sublayers removed by hand (:func:`mindskip.remove_sublayers`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import read_router_config
from ..config import MindSkipConfig
from ..methods import Routed, Spec, prepare_method
from ..selection import least_executed
from ..stats import reset_routing_stats, routing_stats
from ..surgery import (
    apply_mindskip,
    decoder_layers,
    get_config,
    is_mindskip,
    mindskip_layers,
    remove_sublayers,
    set_thresholds,
)
from .config import SHAPES, ProfileConfig

# A method: a spec of :mod:`mindskip.methods` (applied with ``prepare_method``; a trained
# routers folder is read as a ``Routed`` spec by :func:`as_spec`), or a callable that makes
# a copy of dense behave as it (a user's own transformation, not a planned method).
Applicable = Spec | Callable[[nn.Module], nn.Module]


def as_spec(method: str | Path | Applicable) -> Applicable:
    """A trained routers folder as its ``Routed`` spec (unit and routing from its config,
    no thresholds: the routers' own tau); a spec or a callable as it is."""
    if isinstance(method, str | Path):
        cfg = read_router_config(method)
        return Routed(str(method), cfg.unit, cfg.routing)
    return method


@dataclass
class Variant:
    method: str  # "dense", a unit, or a routers/spec name
    variant: str  # dense | mindskip | ceiling
    model: nn.Module
    routers: str  # how decisions are made, in words
    pattern: tuple[int, ...] = ()
    unit: str = ""

    @property
    def key(self) -> str:
        return "dense" if self.variant == "dense" else f"{self.variant}:{self.method}"


def torch_dtype(config: ProfileConfig) -> torch.dtype:
    if config.dtype is None:
        return torch.bfloat16 if config.device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def shape_config(name_or_path: str) -> Any:
    """A transformers config for a named shape (:data:`SHAPES`) or a local folder."""
    from transformers import AutoConfig, LlamaConfig

    if name_or_path in SHAPES:
        return LlamaConfig(**SHAPES[name_or_path], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return AutoConfig.from_pretrained(name_or_path)


def build_model(config: ProfileConfig) -> nn.Module:
    """The dense model: random weights (``shape_only``) or a local folder's weights."""
    from transformers import AutoModelForCausalLM

    device, dtype = torch.device(config.device), torch_dtype(config)
    if config.shape_only:
        torch.manual_seed(config.seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(
                shape_config(config.model),
                dtype=dtype,
                attn_implementation=config.attn_implementation,
            ).to(device)
    elif Path(config.model).is_dir():
        model = AutoModelForCausalLM.from_pretrained(
            config.model, dtype=dtype, attn_implementation=config.attn_implementation
        ).to(device)
    else:
        raise FileNotFoundError(
            f"{config.model!r} is not a local model folder; pass a folder, or shape_only=True "
            f"with one of {sorted(SHAPES)} for random weights"
        )
    return model.eval()


def shared_copy(model: nn.Module) -> nn.Module:
    """A deep copy of the module tree that shares every parameter and buffer tensor."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def lowest_capacity_layers(model: nn.Module) -> tuple[int, ...]:
    """The k least-executed routed layers, k = the realised number of skipped sublayers."""
    total = routing_stats(model).total
    return least_executed(total, round(sum(1.0 - c for c in total.values())))


def forced_variants(config: ProfileConfig, dense: nn.Module, weights: str) -> list[Variant]:
    """One forced-pattern MindSkip variant per unit of ``config.units``."""
    n = len(decoder_layers(dense))
    pattern, routed = config.pattern(n), config.routed_range(n)
    out = []
    for unit in config.units:
        cfg = MindSkipConfig(unit=unit, routing=config.routing, layers=tuple({*routed, *pattern}))
        m = apply_mindskip(shared_copy(dense), cfg)
        set_thresholds(m, {i: 1.0 for i in pattern})  # zero routers: sigmoid(0)=0.5 < 1: skip
        label = f"forced pattern ({weights}; {len(cfg.layers)} routed, zero routers)"
        out.append(Variant(unit, "mindskip", m, label, pattern, unit))
    return out


def method_variant(
    name: str, method: Applicable, dense: nn.Module, weights: str, calibrate: Callable
) -> Variant | None:
    """``method`` on a shared copy of ``dense``; None when it routes nothing (dense again).
    Its pattern (for the ceiling) is its least-executed layers on ``calibrate``'s inputs.
    LoRA adapters are merged, as a deployed LoRA model runs them (unmerged, their extra
    matmuls would be timed as the method's cost); merging writes the base weights, so
    such a method gets a copy that owns its weights, and dense stays dense."""
    lora = getattr(method, "lora", None)
    m = copy.deepcopy(dense) if lora else shared_copy(dense)
    if isinstance(method, Routed) and not method.thresholds and lora is None:
        m = prepare_method(m, method) or m
        label, unit = f"trained routers {method.routers} ({weights})", method.unit
    elif callable(method):
        m = method(m)
        what = getattr(method, "__name__", type(method).__name__)
        unit = get_config(m).unit if is_mindskip(m) else ""
        label = f"callable {what} ({weights})"
    else:  # a method spec
        m = prepare_method(m, method, merge_lora=True) or m
        merged = "; LoRA merged" if lora else ""
        label, unit = f"method {method.slug} ({weights}{merged})", method.unit
    if not mindskip_layers(m):  # a dense spec: dense is measured already
        return None
    reset_routing_stats(m)
    calibrate(m)
    return Variant(name, "mindskip", m, label, lowest_capacity_layers(m), unit)


def build_variants(
    config: ProfileConfig,
    dense: nn.Module,
    methods: Mapping[str, Applicable],
    calibrate: Callable[[nn.Module], None],
) -> list[Variant]:
    """dense, the forced patterns, the methods, then the ceiling of each MindSkip variant."""
    weights = "shape_only, random weights" if config.shape_only else "real weights"
    out = [Variant("dense", "dense", dense, "none")]
    out += forced_variants(config, dense, weights)
    for name, method in methods.items():
        v = method_variant(name, method, dense, weights, calibrate)
        if v is not None:
            out.append(v)
    if config.ceiling:
        for v in [v for v in out if v.variant == "mindskip"]:
            m = remove_sublayers(shared_copy(dense), v.pattern, v.unit)
            out.append(Variant(v.method, "ceiling", m, "hand-removed", v.pattern, v.unit))
    return out
