"""MindSkipConfig: which sublayer is routed, how, and where.

A frozen dataclass, validated on construction, so that a bad value fails before any
compute. It only describes the routing; the model decides how many layers exist, and
:meth:`MindSkipConfig.routed_layers` turns the two into layer indices.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

UNITS = ("attn", "mlp", "block")
ROUTINGS = ("sequence", "token")
ROUTER_DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A MindSkip setting that cannot work. The message names the field."""


@dataclass(frozen=True)
class MindSkipConfig:
    """How routers are placed and how they decide.

    Attributes:
        unit: the sublayer a router gates: ``"attn"`` (MindSkip), ``"mlp"`` or ``"block"``.
        routing: ``"sequence"`` (one decision per sequence, made at prefill) or ``"token"``.
        num_routed: n, the routed layers are the last n before the final layer
            (``L - n - 1 <= i < L - 1``). Ignored when ``layers`` is given.
        layers: explicit routed layer indices (baselines use this); overrides ``num_routed``.
        threshold: tau, a sublayer executes when ``sigmoid(router(x)) >= tau``.
        layer_thresholds: optional per-layer tau, as ``((layer, tau), ...)``; layers not
            listed use ``threshold``. Calibration writes these.
        capacity_lambda: weight of the capacity penalty used by training.
        capacity_target: ``None`` gives the paper's ``lambda * mean(gate)``; a number
            gives ``lambda * relu(capacity - target)``.
        full_compute_in_training: when training with gradients, run the sublayer on
            skipped rows too and multiply by the straight-through gate, so that skipped
            rows also send a gradient to the router (the authors' later release,
            Router-Tuning-Mixture-of-Depths). False: the unit runs on the executing rows
            only, times their gate, so the LM loss reaches the router through those rows
            (the paper-era release, Router-Tuning). The forward values are identical
            either way; inference always skips for real.
        router_dtype: the precision the router and its pooling compute in: ``"float32"``
            (ours: a score near tau is never flipped by rounding) or ``"bfloat16"`` (the
            authors' bf16 runs: a sigmoid within about 0.002 of 0.5 rounds to 0.5, i.e.
            executes). The router's weights are float32 either way (its optimizer's
            master copy); only the computation is cast.
    """

    unit: str = "attn"
    routing: str = "sequence"
    num_routed: int = 16
    layers: tuple[int, ...] | None = None
    threshold: float = 0.5
    layer_thresholds: tuple[tuple[int, float], ...] | None = None
    capacity_lambda: float = 0.0
    capacity_target: float | None = None
    full_compute_in_training: bool = True
    router_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ConfigError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.routing not in ROUTINGS:
            raise ConfigError(f"routing must be one of {ROUTINGS}, got {self.routing!r}")
        if self.router_dtype not in ROUTER_DTYPES:
            raise ConfigError(
                f"router_dtype must be one of {ROUTER_DTYPES}, got {self.router_dtype!r}"
            )
        if not isinstance(self.num_routed, int) or self.num_routed < 0:
            raise ConfigError(f"num_routed must be a non-negative integer, got {self.num_routed!r}")
        if self.layers is not None:
            layers = tuple(self.layers)
            if any(not isinstance(i, int) or i < 0 for i in layers):
                raise ConfigError(f"layers must be non-negative integers, got {self.layers!r}")
            if len(set(layers)) != len(layers):
                raise ConfigError(f"layers has duplicates: {self.layers!r}")
            object.__setattr__(self, "layers", tuple(sorted(layers)))
        _check_tau("threshold", self.threshold)
        if self.layer_thresholds is not None:
            pairs = tuple((int(i), float(t)) for i, t in self.layer_thresholds)
            for i, t in pairs:
                _check_tau(f"layer_thresholds[{i}]", t)
            object.__setattr__(self, "layer_thresholds", tuple(sorted(pairs)))
        if not math.isfinite(self.capacity_lambda) or self.capacity_lambda < 0:
            raise ConfigError(f"capacity_lambda must be >= 0, got {self.capacity_lambda!r}")
        if self.capacity_target is not None and not 0.0 <= self.capacity_target <= 1.0:
            raise ConfigError(f"capacity_target must be in [0, 1], got {self.capacity_target!r}")

    def routed_layers(self, num_layers: int) -> tuple[int, ...]:
        """The routed layer indices for a model with ``num_layers`` decoder layers.

        Layer 0 is never routed: it anchors the KV cache's length and the attention mask
        that transformers builds from it. The final layer is never routed either.
        """
        if self.layers is not None:
            bad = [i for i in self.layers if not 1 <= i < num_layers]
            if bad:
                raise ConfigError(
                    f"layers {bad} are out of range for a model with {num_layers} layers "
                    f"(allowed: 1..{num_layers - 1}; layer 0 is never routed)"
                )
            return self.layers
        if self.num_routed > num_layers - 2:
            raise ConfigError(
                f"num_routed={self.num_routed} is too large for {num_layers} layers: at most "
                f"{num_layers - 2} (the first and the final layer are never routed)"
            )
        return tuple(range(num_layers - self.num_routed - 1, num_layers - 1))

    def threshold_for(self, layer: int) -> float:
        """tau for one layer: its own calibrated value where set, else the global one."""
        if self.layer_thresholds:
            for i, t in self.layer_thresholds:
                if i == layer:
                    return t
        return self.threshold

    def replace(self, **changes: Any) -> MindSkipConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["layers"] is not None:
            d["layers"] = list(d["layers"])
        if d["layer_thresholds"] is not None:
            d["layer_thresholds"] = [list(p) for p in d["layer_thresholds"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MindSkipConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown MindSkipConfig keys: {unknown}")
        d = dict(d)
        if d.get("layers") is not None:
            d["layers"] = tuple(d["layers"])
        if d.get("layer_thresholds") is not None:
            d["layer_thresholds"] = tuple(tuple(p) for p in d["layer_thresholds"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _check_tau(name: str, tau: float) -> None:
    if not isinstance(tau, int | float) or not 0.0 <= float(tau) <= 1.0 or math.isnan(tau):
        raise ConfigError(f"{name} must be a number in [0, 1], got {tau!r}")
