"""Which layers a static method skips, chosen in one place: the k most similar of a
ranking (static drop), the last k candidates (last-k drop), the k least executed by a
router (its own static pattern), and the routed range they are chosen among.

Pure functions, torch-free: the plan, the baselines and the profiler share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import MindSkipConfig


def least_executed(capacity: Mapping[int, float], k: int) -> tuple[int, ...]:
    """The ``k`` layers with the lowest capacity (ties: the lower index), sorted: the
    router's own static pattern, from a record's statistics or a live model's."""
    return tuple(sorted(sorted(capacity, key=lambda i: (capacity[i], i))[:k]))


def first_k(rows: list[Mapping[str, Any]], k: int) -> tuple[int, ...]:
    """The layers of the first ``k`` rows of a ranking (the most similar first), sorted."""
    if not 0 <= k <= len(rows):
        raise ValueError(f"k={k} layers asked; only {len(rows)} are candidates")
    return tuple(sorted(int(r["layer"]) for r in rows[:k]))


def static_layers(
    ranking: Mapping[str, Any], ratio: float, candidates: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """The ``round(ratio * L)`` most similar (least important) layers of a ranking, among
    ``candidates`` (None: every ranked layer)."""
    k = round(ratio * ranking["num_layers"])
    rows = [r for r in ranking["ranking"] if candidates is None or int(r["layer"]) in candidates]
    if k > len(rows):
        raise ValueError(f"skip ratio {ratio} needs {k} layers; only {len(rows)} are candidates")
    return first_k(rows, k)


def last_layers(
    num_layers: int, ratio: float, candidates: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """The last ``round(ratio * L)`` of ``candidates`` (None: layers 1..L-1, the final one
    included, as a similarity ranking's candidates). Over the routed range (the last n
    layers before the final one) the final layer is never dropped; over all layers it is
    the first one dropped."""
    k = round(ratio * num_layers)
    pool = sorted(range(1, num_layers) if candidates is None else candidates)
    if k > len(pool):
        raise ValueError(f"skip ratio {ratio} needs {k} layers; only {len(pool)} are candidates")
    return tuple(pool[len(pool) - k :])


def routed_range(num_layers: int, num_routed: int) -> tuple[int, ...]:
    """The last ``num_routed`` layers before the final one (as routers are placed)."""
    return MindSkipConfig(num_routed=num_routed).routed_layers(num_layers)
