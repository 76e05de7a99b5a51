"""Routing statistics: the realised capacity and skip ratio of a routed model's forwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .surgery import _num_layers, mindskip_layers


@dataclass(frozen=True)
class RoutingStats:
    """Realised capacity: the fraction of (sequence or token, routed layer) decisions that
    execute. ``skip_ratio`` is the fraction of *all* layers' unit sublayers skipped."""

    num_layers: int
    last: dict[int, float] = field(default_factory=dict)
    total: dict[int, float] = field(default_factory=dict)
    decisions: dict[int, float] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        d = sum(self.decisions.values())
        return sum(self.total[i] * self.decisions[i] for i in self.total) / d if d else float("nan")

    @property
    def skip_ratio(self) -> float:
        if not self.total:
            return 0.0
        return sum(1.0 - c for c in self.total.values()) / self.num_layers

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_layers": self.num_layers,
            "capacity": self.capacity,
            "skip_ratio": self.skip_ratio,
            "capacity_per_layer": {str(i): c for i, c in self.total.items()},
            "last_capacity_per_layer": {str(i): c for i, c in self.last.items()},
            "decisions_per_layer": {str(i): d for i, d in self.decisions.items()},
        }


def routing_stats(model: nn.Module) -> RoutingStats:
    last, total, decisions = {}, {}, {}
    for i, layer in mindskip_layers(model).items():
        if layer.last_exec is not None:
            w = layer.last_weight
            last[i] = float((layer.last_exec.float() * w).sum() / w.sum().clamp_min(1))
        if layer.decisions_total:
            total[i] = layer.executed_total / layer.decisions_total
            decisions[i] = layer.decisions_total
    return RoutingStats(_num_layers(model), last, total, decisions)


def reset_routing_stats(model: nn.Module) -> None:
    for layer in mindskip_layers(model).values():
        layer.reset_stats()
