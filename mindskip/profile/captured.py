"""The ``captured`` cache kind of the loop timer (:data:`.timing.DECODERS`): each decode
step of a variant in a CUDA graph, with MindSkip's skipping inside the captured step
(the decoder's way, :mod:`mindskip.decode`, fitted to the profiler's pooled static cache);
eager on the CPU.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..capture import brief_error, persist_decisions, restore_stats, snapshot_stats
from ..decisions import DECISIONS_ATTR, Decision

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    """One captured step of the profiler's loop: static inputs in, static logits out."""

    decisions: dict[int, Decision] = field(default_factory=dict)
    warm: int = 0
    graph: Any = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


class ProfileStep:
    """The decode step of one variant for ``mindskip.profile``'s loop timer, captured.

    Called like the model (``step(tok, use_cache=True, cache=cache, **extra)``) on the
    profiler's pooled static cache, after its eager prefill. Per (cache, decision pattern):
    ``warmup`` eager steps on a side stream, then one CUDA graph over the step, replayed
    with the new token (and mask/positions) copied into its static inputs; it returns the
    graph's static logits. The prefill's decisions are swapped for persistent ones
    (:func:`persist_decisions`), so a reused cache keeps the graph valid. Without CUDA, or
    where capture fails, it runs eagerly and logs why once (:attr:`reason`).
    """

    def __init__(self, model: nn.Module, cuda: bool, warmup: int = 2) -> None:
        self.model, self.cuda, self.warmup = model, cuda, warmup
        self.graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.reason = "" if cuda else "no CUDA device: eager decode steps"
        if not cuda:
            log.warning("MindSkip captured decode: %s", self.reason)

    def __call__(self, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        cache = next((kwargs[k] for k in ("cache", "past_key_values") if k in kwargs), None)
        if self.reason or cache is None:
            return self.model(input_ids, **kwargs)
        per_cache = self.graphs.setdefault(cache, {})
        stored = getattr(cache, DECISIONS_ATTR, None) or {}
        pattern = tuple(sorted((i, int(d.rows.numel())) for i, d in stored.items()))
        entry = per_cache.setdefault(pattern, _Graph())
        persist_decisions(stored, entry.decisions, cache)
        tensors = {"input_ids": input_ids}
        tensors |= {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        rest = {k: v for k, v in kwargs.items() if k not in tensors}
        if entry.graph is None:
            if entry.warm < self.warmup:
                entry.warm += 1
                return _on_side_stream(lambda: self.model(**tensors, **rest))
            if not self._capture(entry, tensors, rest):
                return self.model(**tensors, **rest)
        for k, v in tensors.items():
            entry.inputs[k].copy_(v)
        entry.graph.replay()
        return _Logits(entry.logits)

    def _capture(self, entry: _Graph, tensors: dict, rest: dict) -> bool:
        entry.inputs = {k: v.clone() for k, v in tensors.items()}
        graph = torch.cuda.CUDAGraph()
        snapshot = snapshot_stats(self.model)
        try:
            torch.cuda.synchronize()
            with torch.cuda.graph(graph):
                entry.logits = self.model(**entry.inputs, **rest).logits
        except Exception as e:
            torch.cuda.synchronize()
            self.reason = f"CUDA graph capture failed: {brief_error(e)}"
            log.warning("MindSkip captured decode: eager decode steps (%s)", self.reason)
            return False
        finally:
            restore_stats(self.model, snapshot)
        entry.graph = graph
        return True


@dataclass
class _Logits:
    logits: torch.Tensor


def profile_step(runner: Any, model: nn.Module) -> ProfileStep:
    """``step(runner, model)`` of a ``mindskip.profile.timing.CacheKind``: one
    :class:`ProfileStep` per variant, kept on the runner."""
    steps = runner.__dict__.setdefault("_mindskip_captured", {})
    step = steps.get(id(model))
    if step is None:
        step = steps[id(model)] = ProfileStep(model, cuda=bool(runner.cuda))
    return step


def _on_side_stream(fn: Callable[[], Any]) -> Any:
    """Warm-up steps before a capture run on a side stream (PyTorch's advice)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = fn()
    torch.cuda.current_stream().wait_stream(stream)
    return out
