"""Greedy decoding with the decode step captured: CUDA graphs on a GPU, ``torch.compile`` on
the CPU, with MindSkip's skipping inside the captured step.

Why it works: with sequence routing every routed layer decides once, at prefill, and the
decision is stored on the cache; so after prefill the shape of every tensor in a decode step
(which rows each layer gathers, how many KV rows each layer holds) is fixed for the rest of
the generation. Token routing's decode step (one token per sequence) runs masked, with no
host sync and fixed shapes (:attr:`mindskip.layers.MindSkipLayer.masked_decode`). Eager HF
decode is launch-bound at small batch, so capture is what lets skipped sublayers show as
speed (``../shared/measurements/h200-llama3-8b-shape.md``).

How: :class:`CapturedDecoder` keeps one *slot* per (batch, cache length, decision pattern),
where the pattern is the number of executing rows of each routed layer. A slot holds a
``StaticCache`` whose tensors keep their addresses across calls, one persistent
:class:`~mindskip.layers.Decision` per routed layer (refilled in place after each prefill, so
the captured step reads the new rows) and a token buffer. Each call prefills eagerly into a
``DynamicCache`` (where rows that skipped a layer hold no KV), copies the prompt's keys and
values into the slot's static cache (compacted layers hold only their executing rows there
too) and replays the slot's captured step once per new token:

- ``graph`` (CUDA): ``torch.cuda.CUDAGraph`` over the eager step, captured after ``warmup``
  eager steps (which are real decode steps) on a side stream; no compile time.
- ``compile``: ``torch.compile(step, fullgraph=True)`` (``mode="reduce-overhead"`` on CUDA,
  the default mode elsewhere). A second call with the same batch and pattern reuses the
  compiled graph (no recompile): only the slot's tensors change, never the objects that
  dynamo guards on.
- ``eager``: the same step, uncaptured; also the fallback where capture is impossible, with
  the reason in :attr:`DecodeResult.reason` (and the log).

Routing statistics (``mindskip.routing_stats``) count the prefill and eager steps; replays of
a captured step do not update them (token routing records one decision per step).

The profiler's ``captured`` cache kind (:mod:`mindskip.profile.captured`) captures its
decode steps the same way, with the helpers both share (:mod:`mindskip.capture`); this
module never imports the profiler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .capture import (
    brief_error,
    cache_kwarg,
    load_static,
    persist_decisions,
    restore_stats,
    snapshot_stats,
)
from .decisions import DECISIONS_ATTR, Decision
from .layers import MindSkipLayer
from .surgery import decoder_layers

log = logging.getLogger(__name__)
MODES = ("auto", "graph", "compile", "eager")


@dataclass
class DecodeResult:
    """Greedy tokens of one call and how its decode steps ran.

    ``tokens`` (batch, new_tokens): the first comes from prefill. ``mode``: what ran the
    decode steps (``graph``, ``compile`` or ``eager``); ``reason``: why not captured ("" when
    it was). ``pattern``: ((layer, executing rows), ...) of the stored sequence decisions.
    ``compiled`` / ``captured``: graphs this call compiled / CUDA graphs it captured (0 when
    the slot's step was reused). ``prefill_s`` / ``decode_s``: wall time of the prefill and
    of the ``new_tokens - 1`` decode steps (device-synchronised).
    """

    tokens: torch.Tensor
    mode: str
    reason: str
    pattern: tuple[tuple[int, int], ...]
    compiled: int = 0
    captured: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class _Slot:
    cache: Any
    token: torch.Tensor  # (batch, 1): the step's input, overwritten with its output
    decisions: dict[int, Decision] = field(default_factory=dict)
    mode: str = ""  # what runs this slot's steps, once settled
    reason: str = ""
    run: Callable[[], None] | None = None  # one decode step (replay / compiled / eager)
    warm: int = 0  # eager warm-up steps done before a CUDA graph capture


class CapturedDecoder:
    """Greedy decoding of ``model`` with its decode step captured (see the module docstring).

    ``mode``: ``auto`` (``graph`` on CUDA, ``compile`` elsewhere), ``graph``, ``compile`` or
    ``eager``. ``backend``/``compile_mode``: for ``torch.compile`` (``compile_mode=None``:
    ``reduce-overhead`` on CUDA, else the default). ``warmup``: eager steps before a CUDA
    graph is captured. Keep one decoder per model: slots (static caches) live until
    :meth:`release`.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: str = "auto",
        *,
        backend: str | Callable = "inductor",
        compile_mode: str | None = None,
        warmup: int = 2,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.model = model
        self.device = model.get_input_embeddings().weight.device
        if mode == "auto":
            mode = "graph" if self.device.type == "cuda" else "compile"
        self.mode = mode
        self.backend = backend
        cuda = self.device.type == "cuda"
        self.compile_mode = compile_mode or ("reduce-overhead" if cuda else None)
        self.warmup = warmup
        self.cache_kwarg = cache_kwarg(model)
        self._slots: dict[tuple, _Slot] = {}
        if mode == "compile":
            _raise_recompile_limits(64)

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> DecodeResult:
        """``max_new_tokens`` greedy tokens for every row of ``input_ids`` (no padding)."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        ids = input_ids.to(self.device)
        batch, prompt = ids.shape
        t0 = _now(self.device)
        dyn, first = self._prefill(ids)
        key, pattern = self._key(dyn, batch, prompt + max_new_tokens)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._new_slot(batch, prompt + max_new_tokens)
        load_static(slot.cache, dyn, prompt)
        self._adopt_decisions(slot, dyn)
        del dyn
        slot.token.copy_(first)
        tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=self.device)
        tokens[:, :1] = first
        t1 = _now(self.device)
        counts = {"compiled": 0, "captured": 0}
        for i in range(1, max_new_tokens):
            self._step(slot, counts, remaining=max_new_tokens - i)
            tokens[:, i : i + 1] = slot.token
        t2 = _now(self.device)
        return DecodeResult(
            tokens, slot.mode or "eager", slot.reason, pattern, prefill_s=t1 - t0,
            decode_s=t2 - t1, **counts,
        )  # fmt: skip

    def release(self) -> None:
        """Drop every slot (static caches, graphs, compiled steps)."""
        self._slots.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ prefill
    def _prefill(self, ids: torch.Tensor) -> tuple[Any, torch.Tensor]:
        from transformers import DynamicCache

        dyn = DynamicCache(config=self.model.config)
        out = self.model(ids, use_cache=True, logits_to_keep=1, **{self.cache_kwarg: dyn})
        return dyn, out.logits[:, -1].argmax(-1, keepdim=True)

    def _key(self, dyn: Any, batch: int, length: int) -> tuple[tuple, tuple]:
        stored = getattr(dyn, DECISIONS_ATTR, None) or {}
        pattern = tuple(sorted((i, int(d.rows.numel())) for i, d in stored.items()))
        return (batch, length, pattern), pattern

    def _new_slot(self, batch: int, length: int) -> _Slot:
        from transformers import StaticCache

        cache = StaticCache(config=self.model.config, max_cache_len=length)
        token = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        if self.mode == "compile":  # reduce-overhead's CUDA graphs need its address fixed
            torch._dynamo.mark_static_address(token)
        return _Slot(cache, token)

    def _adopt_decisions(self, slot: _Slot, dyn: Any) -> None:
        """The prefill's decisions, copied into the slot's persistent ones."""
        persist_decisions(getattr(dyn, DECISIONS_ATTR, None) or {}, slot.decisions, slot.cache)

    # ------------------------------------------------------------------ steps
    def _step_fn(self, slot: _Slot) -> Callable[[], None]:
        model, cache, token, kw = self.model, slot.cache, slot.token, self.cache_kwarg

        def step() -> None:
            out = model(token, use_cache=True, **{kw: cache})
            token.copy_(out.logits[:, -1].argmax(-1, keepdim=True))

        return step

    def _step(self, slot: _Slot, counts: dict[str, int], remaining: int) -> None:
        """One decode step; the first steps of a slot also settle how its steps run."""
        if slot.run is not None:
            slot.run()
            return
        eager = self._step_fn(slot)
        if self.mode == "eager":
            slot.mode, slot.run = "eager", eager
            eager()
            return
        reason = self._why_not(slot)
        if reason:
            self._settle(slot, "eager", eager, reason)
            eager()
        elif self.mode == "compile":
            self._compile(slot, eager, counts)
        else:  # graph: real decode steps on a side stream, then the capture
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                eager()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            slot.warm += 1
            slot.reason = f"warming up: {slot.warm} of {self.warmup} eager steps before capture"
            if slot.warm >= self.warmup and remaining > 1:  # a step is left to replay
                self._capture(slot, eager, counts)

    def _settle(self, slot: _Slot, mode: str, run: Callable[[], None], reason: str = "") -> None:
        slot.mode, slot.run, slot.reason = mode, run, reason
        if reason:
            log.warning("MindSkip decode: eager decode steps (%s)", reason)

    def _why_not(self, slot: _Slot) -> str:
        """Why the step cannot be captured here ("" when it can)."""
        if self.mode == "graph" and self.device.type != "cuda":
            return f"graph capture needs a CUDA device, the model is on {self.device}"
        if any(getattr(m, "_hf_hook", None) is not None for m in self.model.modules()):
            return "accelerate dispatch hooks (device_map/offload) move weights per step"
        if len({p.device for p in self.model.parameters()}) > 1:
            return "the model spans several devices"
        gathering = [
            i
            for i, m in enumerate(decoder_layers(self.model))
            if isinstance(m, MindSkipLayer) and m.routing == "token" and not m.masked_decode
        ]
        if gathering:
            return f"token-routed layers {gathering} gather rows (masked_decode=False): a sync"
        from transformers.cache_utils import StaticLayer

        kinds = sorted({type(layer).__name__ for layer in slot.cache.layers})
        if any(type(layer) is not StaticLayer for layer in slot.cache.layers):
            return f"cache layers {kinds} are not plain StaticLayer (sliding window?)"
        return ""

    def _compile(self, slot: _Slot, eager: Callable[[], None], counts: dict[str, int]) -> None:
        kwargs: dict[str, Any] = {"backend": self.backend, "fullgraph": True, "dynamic": False}
        if self.backend == "inductor" and self.compile_mode:
            kwargs["mode"] = self.compile_mode
        compiled = torch.compile(eager, **kwargs)
        before = _graphs_compiled()
        snapshot = snapshot_stats(self.model)
        try:
            compiled()
        except Exception as e:  # a model that does not trace: eager, and say why
            restore_stats(self.model, snapshot)
            self._settle(slot, "eager", eager, f"torch.compile failed: {brief_error(e)}")
            eager()
            return
        counts["compiled"] += _graphs_compiled() - before
        self._settle(slot, "compile", compiled)

    def _capture(self, slot: _Slot, eager: Callable[[], None], counts: dict[str, int]) -> None:
        """Capture one eager step (it does not run while captured) into a CUDA graph."""
        graph = torch.cuda.CUDAGraph()
        snapshot = snapshot_stats(self.model)
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                eager()
        except Exception as e:  # a host sync or an allocation the graph cannot hold
            torch.cuda.synchronize(self.device)
            self._settle(slot, "eager", eager, f"CUDA graph capture failed: {brief_error(e)}")
            return
        finally:
            restore_stats(self.model, snapshot)
        counts["captured"] += 1
        self._settle(slot, "graph", graph.replay)


# ---------------------------------------------------------------------- helpers
def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _raise_recompile_limits(at_least: int) -> None:
    """One compiled step per slot shares one code object: allow that many entries."""
    import torch._dynamo.config as dynamo_config

    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), at_least))


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
