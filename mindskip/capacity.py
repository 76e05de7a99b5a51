"""The dynamic share of routing decisions (how much of the skipping depends on the input),
and how a run's capacity multipliers are written down.

One home for what training's records, the verdicts and the report share (torch-free).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DynamicShare:
    """``per_layer[l] = min(c_l, 1 - c_l)``; ``overall``: their decision-weighted mean."""

    per_layer: dict[str, float]
    overall: float
    decisions: float


def dynamic_share(
    capacity: Mapping[int | str, float] | Sequence[float],
    decisions: Mapping[int | str, float] | Sequence[float] | None = None,
) -> DynamicShare:
    """How much of the skipping depends on the input.

    ``capacity[l]`` is layer l's realised capacity c_l, the fraction of sequences that
    execute it; ``decisions[l]`` how many decisions it made (equal weights if omitted).
    The best static pattern (a fixed set of skipped layers, the same for every input)
    can agree with a layer's decisions at most on its majority decision, so the share
    of decisions that differ from that majority, ``min(c_l, 1 - c_l)``, is the share
    that no static layer choice reproduces: 0 when a layer is always or never run (a
    static choice in disguise), 0.5 at most, when half the inputs run it. ``overall``
    is the decision-weighted mean over layers: the fraction of all routing decisions
    that depend on the input. Skipping 25% with an overall share near 0 is static
    layer dropping, whatever the router; "dynamic depth" needs it well above 0.
    """
    if isinstance(capacity, Mapping):
        caps = {str(k): float(v) for k, v in capacity.items()}
    else:
        caps = {str(i): float(v) for i, v in enumerate(capacity)}
    if decisions is None:
        weights = dict.fromkeys(caps, 1.0)
    elif isinstance(decisions, Mapping):
        weights = {str(k): float(v) for k, v in decisions.items()}
    else:
        weights = {str(i): float(v) for i, v in enumerate(decisions)}
    if set(weights) != set(caps):
        raise ValueError(f"capacity and decisions name different layers: {caps} vs {weights}")
    for layer, c in caps.items():
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"capacity of layer {layer} is {c}, not in [0, 1]")
    per_layer = {k: min(c, 1.0 - c) for k, c in caps.items()}
    total = sum(weights.values())
    overall = sum(per_layer[k] * weights[k] for k in caps) / total if total > 0 else math.nan
    return DynamicShare(per_layer=per_layer, overall=overall, decisions=total)


def format_multipliers(values: Mapping[str, float] | None) -> str:
    """Where a dual-control run's multipliers ended: one value, or ``min..max`` over layers
    (``"n/a"`` for none)."""
    vals = list((values or {}).values())
    if len(vals) == 1:
        return f"{vals[0]:.3g}"
    return f"{min(vals):.3g}..{max(vals):.3g}" if vals else "n/a"


def check_control(control: str | None, target: float | None) -> None:
    """Dual capacity control pulls capacity to a target: refuse it without one."""
    if control == "dual" and target is None:
        raise ValueError("capacity_control='dual' pulls capacity to a target: set capacity_target")
