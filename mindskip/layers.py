"""The routed decoder layer: a wrapper that owns a router around the stock decoder layer.

:func:`mindskip.apply_mindskip` swaps it into ``model.model.layers[i]``. Its forward is the
stock layer's own forward (``self.layer(...)``, with its accelerate hook and gradient
checkpointing): the routing happens at the sublayer, where :class:`~mindskip.units.RoutedUnit`
replaces the layer's attention (unit ``attn``), feed-forward (``mlp``) or both (``block``,
one decision shared by the two). The wrapper holds what a unit asks for: the router, the
threshold, forced decisions, the statistics, and the decision of the current forward.

Decisions: the unit that decides (attention for ``attn`` and ``block``, the feed-forward for
``mlp``) hands the router its own input (see :mod:`mindskip.units`); a ``block`` layer's
feed-forward reuses that decision. Sequence decisions are made once, at prefill, and stored
on the cache (:mod:`mindskip.decisions`), so every decode step reuses them; a block that
every sequence skipped returns its input at decode without running the layer at all.

Training: the straight-through gate scales the unit's output (``block``: the layer's whole
update, ``x + g * (layer(x) - x)``), on every row (``full_compute_in_training``) or on the
executing rows only (skipped rows then send the router no gradient).

:class:`PrunedLayer` removes a unit by hand with the same mechanism (its submodule replaced
by :class:`~mindskip.units.RemovedUnit`; ``block``: the identity): the ceiling that routing
is measured against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import decisions
from .decisions import Decision
from .families import Family
from .routing import Router, RoutingContext, masked_mean, straight_through_gate
from .units import RemovedUnit, RoutedUnit, broadcast_gate, cache_of, keep_offload_names

# A forced decision: True (execute), False (skip), a bool tensor (B,) or (B, T), or a
# callable (layer, batch, length) -> such a tensor. None means: the router decides.
Force = bool | torch.Tensor | Callable[["MindSkipLayer", int, int], torch.Tensor] | None


def _unit_names(family: Family, unit: str) -> dict[str, str]:
    """The layer's submodule names that ``unit`` covers, by kind."""
    names = {"attn": family.attention, "mlp": family.feed_forward}
    return names if unit == "block" else {unit: names[unit]}


class MindSkipLayer(nn.Module):
    """A decoder layer whose ``unit`` runs only where its router says so."""

    def __init__(
        self,
        layer: nn.Module,
        layer_idx: int,
        hidden_size: int,
        unit: str,
        routing: str,
        threshold: float,
        context: RoutingContext,
        family: Family,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.layer_idx = layer_idx
        self.unit = unit
        self.routing = routing
        self.threshold = threshold
        self.context = context
        self.deciding_kind = "mlp" if unit == "mlp" else "attn"
        self.router = Router(hidden_size, device=execution_device(layer))
        self.full_compute_in_training = True
        # token routing, one token per sequence: compute every row and select (no host
        # sync, capturable); False: gather the executing rows
        self.masked_decode = True
        self.force: Force = None
        # this forward's decision: the one stored at prefill (decode), and the one made now
        self._prefilled: Decision | None = None
        self._current: tuple[Decision, torch.Tensor | None] | None = None
        self._names = _unit_names(family, unit)
        for kind, name in self._names.items():
            setattr(layer, name, RoutedUnit(getattr(layer, name), kind, self))
        keep_offload_names(layer)
        self.reset_stats()

    def unwrap(self) -> nn.Module:
        """The stock layer with its stock submodules back."""
        for name in self._names.values():
            setattr(self.layer, name, getattr(self.layer, name).inner)
        return self.layer

    # ------------------------------------------------------------------ statistics
    def reset_stats(self) -> None:
        self.last_exec: torch.Tensor | None = None
        self.last_weight: torch.Tensor | None = None
        self.last_scores: torch.Tensor | None = None
        self.last_gate: torch.Tensor | None = None
        # running sums stay on the device (no host sync per forward); read as floats
        self._sums: torch.Tensor | None = None

    @property
    def executed_total(self) -> float:
        return 0.0 if self._sums is None else float(self._sums[0])

    @property
    def decisions_total(self) -> float:
        return 0.0 if self._sums is None else float(self._sums[1])

    def _record(self, exec_: torch.Tensor, weight: torch.Tensor, scores: torch.Tensor | None):
        self.last_exec = exec_.detach()
        self.last_weight = weight
        self.last_scores = None if scores is None else scores.detach()
        w = weight.detach().double()
        sums = torch.stack(((exec_.detach().double() * w).sum(), w.sum()))
        self._sums = sums if self._sums is None else self._sums + sums

    # ------------------------------------------------------------------ decisions
    def _forced(self, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
        f = self.force
        if f is None:
            return None
        if callable(f) and not isinstance(f, torch.Tensor):
            f = f(self, batch, length)
        shape = (batch,) if self.routing == "sequence" else (batch, length)
        if isinstance(f, bool):
            return torch.full(shape, f, dtype=torch.bool, device=device)
        f = f.to(device=device, dtype=torch.bool)
        if f.shape != shape:
            raise ValueError(
                f"layer {self.layer_idx}: forced decisions have shape {tuple(f.shape)}, "
                f"expected {shape} for {self.routing} routing"
            )
        return f

    def _decide_mask(
        self, h: torch.Tensor, replay: Decision | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The execute mask for ``h`` (recorded in the statistics, no host sync) and the
        straight-through gate when training.

        ``replay``: the decision this forward already made, when gradient checkpointing
        recomputes the layer: the router runs again (the same ops, so the recomputed
        activations match the saved ones) but the decision, the statistics and a forced
        decision's state are not touched again."""
        batch, length, _ = h.shape
        token_mask = self.context.token_mask(batch, length, h.device)
        if self.routing == "sequence":
            weight = torch.ones(batch, device=h.device)
        else:
            weight = (
                torch.ones(batch, length, device=h.device)
                if token_mask is None
                else token_mask.float()
            )

        gate = None
        scores = None
        if replay is not None:
            exec_ = replay.mask if self.force is not None else None
        else:
            exec_ = self._forced(batch, length, h.device)
        if exec_ is None:
            dtype = self.router.compute_dtype
            x = masked_mean(h, token_mask, dtype) if self.routing == "sequence" else h
            train = (
                self.training and torch.is_grad_enabled() and self.router.proj.weight.requires_grad
            )
            with torch.set_grad_enabled(train):
                scores = self.router(x)
            exec_ = scores >= self.threshold
            if train:
                gate = straight_through_gate(scores, self.threshold)
        if replay is None:
            self.last_gate = gate
            self._record(exec_, weight, scores)
        return exec_.detach(), gate

    def decision_for(self, h: torch.Tensor, deciding: bool) -> tuple[Decision, torch.Tensor | None]:
        """This forward's decision for a unit whose input is ``h``, and the gate (training).

        The deciding unit makes it (or replays it under gradient checkpointing); a block's
        feed-forward reads it."""
        if self._prefilled is not None:
            return self._prefilled, None
        current = self._current
        if not deciding:
            if current is None:
                raise RuntimeError(f"layer {self.layer_idx}: the feed-forward ran before attention")
            return current
        if current is not None:  # gradient checkpointing recomputes this layer
            return current[0], self._decide_mask(h, replay=current[0])[1]
        masked = (
            self.routing == "token"
            and h.shape[1] == 1
            and self.masked_decode
            and not (self.training and torch.is_grad_enabled())
        )
        exec_, gate = self._decide_mask(h)
        decision = Decision.masked(exec_) if masked else Decision.of(exec_)
        self._current = (decision, gate)
        return decision, gate

    # ------------------------------------------------------------------ forward
    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        cache = cache_of(kwargs)
        stored = None
        if self.routing == "sequence" and cache is not None:
            stored = decisions.stored(cache, self.layer_idx, hidden_states.shape[0])
        if stored is not None and stored.none and self.unit == "block":
            return hidden_states  # decode: every sequence skips the whole layer
        self._prefilled, self._current = stored, None
        out = self.layer(hidden_states, *args, **kwargs)
        current, self._prefilled = self._current, None
        if not (self.training and torch.is_grad_enabled()):
            self._current = None  # kept only for gradient checkpointing's recompute
        if current is None:
            return out
        decision, gate = current
        if stored is None and cache is not None and self.routing == "sequence":
            decisions.store(cache, self.layer_idx, decision)
        if self.unit == "block" and gate is not None:
            y = out[0] if isinstance(out, tuple) else out
            x = hidden_states.to(y.device)
            y = x + broadcast_gate(gate, y) * (y - x)
            out = (y, *out[1:]) if isinstance(out, tuple) else y
        return out


class PrunedLayer(nn.Module):
    """A stock decoder layer with one unit removed by hand: the ceiling for skipping.

    ``attn`` / ``mlp``: the submodule is replaced by a :class:`~mindskip.units.RemovedUnit`
    (zero, never called: no KV cache for a removed attention) and the stock layer's forward
    runs around it; ``block``: the layer returns its input."""

    def __init__(self, layer: nn.Module, unit: str, family: Family) -> None:
        super().__init__()
        self.layer = layer
        self.unit = unit
        self._names = {} if unit == "block" else _unit_names(family, unit)
        for kind, name in self._names.items():
            setattr(layer, name, RemovedUnit(getattr(layer, name), kind))
        keep_offload_names(layer)

    def unwrap(self) -> nn.Module:
        """The stock layer with its stock submodule back."""
        for name in self._names.values():
            setattr(self.layer, name, getattr(self.layer, name).inner)
        return self.layer

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.unit == "block":
            return hidden_states
        return self.layer(hidden_states, *args, **kwargs)


def execution_device(layer: nn.Module) -> torch.device:
    """Where ``layer`` computes: its accelerate hook's execution device when it was
    dispatched (``device_map``; its weights may sit on ``meta`` when offloaded), else the
    device of its weights."""
    for hook in _hooks(getattr(layer, "_hf_hook", None)):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(layer.parameters()).device


def _hooks(hook: Any) -> list[Any]:
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])  # accelerate's SequentialHook
