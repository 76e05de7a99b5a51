"""What capturing a decode step needs, shared by the captured decoder
(:mod:`mindskip.decode`) and the profiler's ``captured`` cache kind
(:mod:`mindskip.profile.captured`): persistent sequence decisions on a reused cache, the
prompt's KV copied into a static cache, the routing statistics saved around a capture,
the cache argument's name, and the one-line reason a capture fell back."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .decisions import DECISIONS_ATTR, Decision, store
from .layers import MindSkipLayer

_STATS = ("last_exec", "last_weight", "last_scores", "last_gate", "_sums")


def persist_decisions(
    new: dict[int, Decision], held: dict[int, Decision], cache: Any
) -> tuple[tuple[int, int], ...]:
    """Copy a prefill's sequence decisions (``new``) into the persistent ones (``held``,
    filled on first use) and store those on ``cache``: the same objects and tensors at every
    call, so a captured step (which reads their rows by address) and a compiled one (whose
    guards see them) stay valid. Returns the pattern: ((layer, executing rows), ...)."""
    for i, d in new.items():
        mine = held.get(i)
        if mine is None or mine.rows.numel() != d.rows.numel():
            mine = held[i] = Decision(d.mask.clone(), d.rows.clone(), d.all, d.none)
        elif mine is not d:
            mine.mask.copy_(d.mask)
            mine.rows.copy_(d.rows)
        stored = getattr(cache, DECISIONS_ATTR, None)
        if stored is None or stored.get(i) is not mine:  # first use, or a prefill's own
            store(cache, i, mine)
    return tuple(sorted((i, int(d.rows.numel())) for i, d in new.items()))


def cache_kwarg(model: nn.Module) -> str:
    """transformers >= 5.2x calls the cache argument ``cache``; 5.17 ``past_key_values``."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def load_static(static: Any, dyn: Any, length: int) -> None:
    """The prompt's keys and values (``dyn``, a DynamicCache) into ``static`` at 0..length.

    A layer that every sequence skipped holds nothing in either. A layer that some skipped
    holds its executing rows only, in both (the static layer is sized from the first copy).
    """
    for s, d in zip(static.layers, dyn.layers, strict=False):
        keys = getattr(d, "keys", None)
        if not getattr(d, "is_initialized", False) or keys is None or keys.numel() == 0:
            continue
        if not s.is_initialized:
            s.lazy_initialization(keys, d.values)
        if s.keys.shape[0] != keys.shape[0]:
            raise RuntimeError(
                f"static cache layer has {s.keys.shape[0]} rows, the prefill {keys.shape[0]}"
            )
        s.keys[:, :, :length].copy_(keys)
        s.values[:, :, :length].copy_(d.values)
        s.cumulative_length.fill_(length)


def snapshot_stats(model: nn.Module) -> list[tuple[MindSkipLayer, dict[str, Any]]]:
    """The routing statistics of every routed layer, to restore after a capture."""
    layers = [m for m in model.modules() if isinstance(m, MindSkipLayer)]
    return [(m, {k: getattr(m, k) for k in _STATS}) for m in layers]


def restore_stats(model: nn.Module, snapshot: list[tuple[MindSkipLayer, dict[str, Any]]]):
    """Statistics as before a capture or trace: tensors made while capturing are not real."""
    for m, values in snapshot:
        for k, v in values.items():
            setattr(m, k, v)


def brief_error(e: Exception) -> str:
    """The first line of an error, with its type: the reason a capture fell back."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"
