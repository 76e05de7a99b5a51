"""Routing decisions, and the sequence decisions stored on a KV cache.

A :class:`Decision` is one layer's execute mask with the rows it selects. Sequence routing
decides once, at prefill: the decision is stored on the cache object (:func:`store`) and
every decode step reads it back (:func:`stored`), so a skipped unit costs nothing there and
the cache's compacted rows (a layer that some sequences skipped holds only its executing
rows) stay in step with the decisions. Cache operations that would scramble those rows
(beam search's reordering) are refused; a reset or cropped cache decides again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

DECISIONS_ATTR = "_mindskip_decisions"


@dataclass(frozen=True)
class Decision:
    """One layer's execute mask, with what the forward needs from it read once.

    ``rows`` are the executing sequences (sequence routing) or flat token indices (token
    routing); None for a :meth:`masked` decision. Building it costs the one host sync
    that gathering needs anyway; a stored sequence decision is then reused at every
    decode step with no sync at all.
    """

    mask: torch.Tensor
    rows: torch.Tensor | None
    all: bool
    none: bool

    @classmethod
    def of(cls, mask: torch.Tensor) -> Decision:
        rows = mask.reshape(-1).nonzero().squeeze(1)
        n = rows.numel()
        return cls(mask, rows, all=n == mask.numel(), none=n == 0)

    @classmethod
    def masked(cls, mask: torch.Tensor) -> Decision:
        """A mask read without a host sync (a token-routed decode step): no rows, and
        neither all nor none is known, so every row computes and the mask selects."""
        return cls(mask, None, all=False, none=False)


def stored(cache: Any, layer_idx: int, batch: int) -> Decision | None:
    """The decision stored on ``cache`` for ``layer_idx`` (None: none yet); refuses a batch
    that is not the one the decision was made for."""
    found = getattr(cache, DECISIONS_ATTR, None)
    decision = None if found is None else found.get(layer_idx)
    if decision is not None and decision.mask.shape[0] != batch:
        raise RuntimeError(
            f"MindSkip: the cache holds decisions for {decision.mask.shape[0]} sequences "
            f"but the batch has {batch}; cache reordering or batch expansion after "
            "prefill is not supported with sequence routing"
        )
    return decision


def store(cache: Any, layer_idx: int, decision: Decision) -> None:
    held = getattr(cache, DECISIONS_ATTR, None)
    if held is None:
        held = {}
        setattr(cache, DECISIONS_ATTR, held)
        _guard_reordering(cache, held)
    held[layer_idx] = decision


def _guard_reordering(cache: Any, held: dict[int, Decision]) -> None:
    """Refuse cache reordering (beam search, contrastive search) when rows are compacted.

    A layer that some sequences skipped holds fewer cache rows than the batch, so a
    reorder by batch index would scramble it. Refusing is better than wrong output.
    """

    def clear_then(original: Callable) -> Callable:
        def wrapped(*a: Any, **k: Any):
            held.clear()  # a reset or cropped cache starts a new prompt: decide again
            return original(*a, **k)

        return wrapped

    for name in ("reset", "crop"):
        if getattr(cache, name, None) is not None:
            setattr(cache, name, clear_then(getattr(cache, name)))
    if getattr(cache, "reset", None) is not None:
        cache.reset = _dropping_dynamic_layers(cache, cache.reset)
    for name in ("reorder_cache", "batch_select_indices", "batch_repeat_interleave"):
        original = getattr(cache, name, None)
        if original is None:
            continue

        def guarded(*a: Any, _original: Callable = original, _name: str = name, **k: Any):
            if any(not d.all for d in held.values()):
                raise NotImplementedError(
                    f"MindSkip: {_name} on a KV cache with skipped layers is not supported "
                    "(beam search, contrastive search). Use greedy or sampling decoding."
                )
            return _original(*a, **k)

        setattr(cache, name, guarded)


def _dropping_dynamic_layers(cache: Any, reset: Callable) -> Callable:
    """``reset`` that also empties the cache's dynamic layers, as transformers >= 5.2x does.

    transformers 5.17's ``DynamicLayer.reset()`` zeroes its tensors but keeps their length,
    so the next prompt is appended after the old one. A stock model hides that (it attends
    to zeros); here, a layer that the old prompt skipped (no KV) and the new one executes
    would hold fewer positions than layer 0 and the mask.
    """

    def wrapped(*a: Any, **k: Any):
        out = reset(*a, **k)
        for layer in getattr(cache, "layers", ()):
            if type(layer).__name__ == "DynamicLayer" and getattr(layer, "is_initialized", 0):
                layer.keys = layer.values = None
                layer.is_initialized = False
        return out

    return wrapped
