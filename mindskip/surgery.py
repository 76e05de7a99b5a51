"""Model surgery: apply and remove the routers, set thresholds, force decisions, remove
sublayers by hand (the ceiling that routing is measured against), and select cache rows.

Saving and loading routers is :mod:`mindskip.checkpoint`; routing statistics are
:mod:`mindskip.stats`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import MindSkipConfig
from .decisions import DECISIONS_ATTR, Decision, store
from .families import family, model_type, require
from .layers import Force, MindSkipLayer, PrunedLayer
from .routing import RoutingContext

_STATE_ATTR = "_mindskip_state"


@dataclass
class _State:
    config: MindSkipConfig
    context: RoutingContext
    hook: Any


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layer list of a causal LM (``model.model.layers``)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__} has no decoder layer list (model.model.layers)")
    return layers


def _num_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def _hidden_size(model: nn.Module) -> int:
    return int(model.config.hidden_size)


def is_mindskip(model: nn.Module) -> bool:
    return hasattr(model, _STATE_ATTR)


def get_config(model: nn.Module) -> MindSkipConfig:
    if not is_mindskip(model):
        raise ValueError("this model has no MindSkip routers (call apply_mindskip first)")
    return getattr(model, _STATE_ATTR).config


def mindskip_layers(model: nn.Module) -> dict[int, MindSkipLayer]:
    """Routed layers by index."""
    return {
        i: layer
        for i, layer in enumerate(decoder_layers(model))
        if isinstance(layer, MindSkipLayer)
    }


def apply_mindskip(model: nn.Module, config: MindSkipConfig) -> nn.Module:
    """Swap each routed decoder layer for a :class:`MindSkipLayer` with a zero router.

    Raises if the model already has routers (remove them first), if its family is not one
    that MindSkip routes exactly with this unit and routing (:mod:`mindskip.families`:
    :class:`UnsupportedFamilyError`, before any compute), or if the config does not fit
    the model.
    """
    if is_mindskip(model):
        raise ValueError("MindSkip is already applied to this model; call remove_mindskip first")
    require(model, config.unit, config.routing)
    return _apply(model, config)


def _apply(model: nn.Module, config: MindSkipConfig) -> nn.Module:
    """:func:`apply_mindskip` without the family check (the contract test uses it to see
    whether a refusal is still needed)."""
    layers = decoder_layers(model)
    routed = config.routed_layers(len(layers))
    context = RoutingContext()
    hidden = _hidden_size(model)
    fam = family(model_type(model))
    for i in routed:
        wrapper = MindSkipLayer(
            layers[i],
            layer_idx=i,
            hidden_size=hidden,
            unit=config.unit,
            routing=config.routing,
            threshold=config.threshold_for(i),
            context=context,
            family=fam,
        )
        wrapper.full_compute_in_training = config.full_compute_in_training
        wrapper.router.compute_dtype = getattr(torch, config.router_dtype)
        wrapper.train(layers[i].training)
        layers[i] = wrapper

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model

    def remember_inputs(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        context.input_ids = kwargs.get("input_ids", args[0] if args else None)
        context.attention_mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    hook = decoder.register_forward_pre_hook(remember_inputs, with_kwargs=True)
    setattr(model, _STATE_ATTR, _State(config, context, hook))
    return model


def remove_mindskip(model: nn.Module) -> nn.Module:
    """Restore the stock decoder layers and drop the routers."""
    if not is_mindskip(model):
        return model
    layers = decoder_layers(model)
    for i, layer in list(mindskip_layers(model).items()):
        layers[i] = layer.unwrap()
    getattr(model, _STATE_ATTR).hook.remove()
    delattr(model, _STATE_ATTR)
    return model


def set_thresholds(model: nn.Module, thresholds: Mapping[int, float]) -> MindSkipConfig:
    """Set per-layer tau (calibration) and return the updated config."""
    cfg = get_config(model)
    merged = dict(cfg.layer_thresholds or ())
    merged.update({int(i): float(t) for i, t in thresholds.items()})
    cfg = cfg.replace(layer_thresholds=tuple(sorted(merged.items())))
    for i, layer in mindskip_layers(model).items():
        layer.threshold = cfg.threshold_for(i)
    getattr(model, _STATE_ATTR).config = cfg
    return cfg


def router_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for layer in mindskip_layers(model).values() for p in layer.router.parameters()]


# ---------------------------------------------------------------------- forcing
def set_decisions(model: nn.Module, decisions: Force | Mapping[int, Force] | str) -> None:
    """Force decisions: ``"execute"``, ``"skip"``, ``None`` (routers decide), or per layer.

    Per layer, a value is True/False, a bool tensor (B,) or (B, T), or a callable
    ``(layer, batch, length) -> tensor``. Layers missing from a mapping use their router.
    """
    layers = mindskip_layers(model)
    if isinstance(decisions, str):
        if decisions not in ("execute", "skip"):
            raise ValueError(
                f"decisions must be 'execute', 'skip', None or a mapping, got {decisions!r}"
            )
        decisions = decisions == "execute"
    if isinstance(decisions, Mapping):
        unknown = sorted(set(decisions) - set(layers))
        if unknown:
            raise ValueError(f"layers {unknown} are not routed (routed: {sorted(layers)})")
        for i, layer in layers.items():
            layer.force = decisions.get(i)
    else:
        for layer in layers.values():
            layer.force = decisions


@contextlib.contextmanager
def forced_decisions(
    model: nn.Module, decisions: Force | Mapping[int, Force] | str
) -> Iterator[None]:
    """Context manager form of :func:`set_decisions`; restores the previous state."""
    layers = mindskip_layers(model)
    before = {i: layer.force for i, layer in layers.items()}
    set_decisions(model, decisions)
    try:
        yield
    finally:
        for i, layer in layers.items():
            layer.force = before[i]


# ---------------------------------------------------------------------- hand removal
def remove_sublayers(model: nn.Module, layers: list[int] | tuple[int, ...], unit: str) -> nn.Module:
    """Delete ``unit`` from the given layers by hand (in place). Layer 0 cannot be removed.
    A family that :mod:`mindskip.families` refuses is refused here too."""
    if unit not in ("attn", "mlp", "block"):
        raise ValueError(f"unit must be attn, mlp or block, got {unit!r}")
    require(model, unit)
    return _remove_sublayers(model, layers, unit)


def _remove_sublayers(
    model: nn.Module, layers: list[int] | tuple[int, ...], unit: str
) -> nn.Module:
    """:func:`remove_sublayers` without the family check."""
    stack = decoder_layers(model)
    fam = family(model_type(model))
    for i in layers:
        if not 1 <= i < len(stack):
            raise ValueError(f"layer {i} cannot be removed (allowed: 1..{len(stack) - 1})")
        if isinstance(stack[i], MindSkipLayer | PrunedLayer):
            raise ValueError(f"layer {i} is already wrapped")
        stack[i] = PrunedLayer(stack[i], unit, fam)
    return model


# ---------------------------------------------------------------------- cache rows
def select_cache_rows(model: nn.Module, cache: Any, index: torch.Tensor | list[int]) -> Any:
    """A new ``DynamicCache`` whose row ``r`` is row ``index[r]`` of ``cache``, with the
    MindSkip sequence decisions stored on ``cache`` selected the same way.

    Repeating rows expands a prefilled prompt to one row per continuation (shared-prefix
    scoring); a subset keeps some rows. A layer that some sequences skipped holds only its
    executing rows, in batch order; those rows are mapped through the stored decision, so
    the cache rows and the decisions of the new cache stay consistent, and a row that
    skipped a layer at prefill still skips it. ``cache`` itself is left unchanged.
    """
    from transformers import DynamicCache

    if type(cache) is not DynamicCache or getattr(cache, "offloading", False):
        raise TypeError(f"select_cache_rows needs a DynamicCache (no offloading), got {cache!r}")
    stored = getattr(cache, DECISIONS_ATTR, None) or {}
    units = {i: layer.unit for i, layer in mindskip_layers(model).items()} if stored else {}
    batch = _cache_batch(cache, stored)
    index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= batch):
        raise IndexError(f"row index {index.tolist()} out of range for a cache of {batch} rows")
    new = DynamicCache()
    new.layer_class_to_replicate = cache.layer_class_to_replicate
    layers = []
    for i, layer in enumerate(cache.layers):
        decision = stored.get(i)
        rows, have = index, batch
        if decision is not None:
            mask = decision.mask
            picked = mask[index.to(mask.device)]
            if units.get(i) in ("attn", "block"):  # compacted: executing rows only
                compact = mask.long().cumsum(0) - 1
                rows, have = compact[index.to(mask.device)][picked], int(decision.rows.numel())
            store(new, i, Decision.of(picked))
        layers.append(_select_layer_rows(layer, rows, have, i))
    new.layers = layers
    return new


def _cache_batch(cache: Any, stored: Mapping[int, Any]) -> int:
    for decision in stored.values():
        return int(decision.mask.shape[0])
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if getattr(layer, "is_initialized", False) and keys is not None and keys.numel():
            return int(keys.shape[0])
    raise ValueError("the cache holds no rows (run a prefill first)")


def _select_layer_rows(layer: Any, rows: torch.Tensor, have: int, layer_idx: int) -> Any:
    import copy

    new = copy.copy(layer)
    keys = getattr(layer, "keys", None)
    if not getattr(layer, "is_initialized", False) or keys is None or keys.numel() == 0:
        return new
    if keys.shape[0] != have:
        raise RuntimeError(
            f"cache layer {layer_idx} holds {keys.shape[0]} rows, but its stored decision "
            f"says {have} rows executed; the cache and its decisions are out of step"
        )
    if rows.numel() == 0:
        new.keys = new.values = None
        new.is_initialized = False
        return new
    rows = rows.to(keys.device)
    new.keys = keys.index_select(0, rows)
    new.values = layer.values.index_select(0, rows)
    return new
