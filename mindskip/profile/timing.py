"""The runner: one call of one variant on one batch, timed, with the cache it asks for.

- ``prefill``: one forward over the prompt with a fresh dynamic cache and
  ``logits_to_keep=1``, as ``generate`` does.
- ``decode``: ``new - 1`` one-token steps, timed as ``generate(N) - generate(1)``
  (``decode_timer="generate"``) or as a greedy loop after an untimed prefill (``"loop"``).

Clocks: ``time.perf_counter`` on CPU; CUDA events and ``synchronize`` on GPU.

Caches follow an explicit :class:`CachePolicy`, named by each cache kind: ``FRESH`` makes a
new cache for the call, which the caller drops with the call's outputs; ``REUSE`` resets
the one pooled cache of (model, batch) (compiled decoding needs the same object every
call; a request with another length replaces it). Eager static caches are fresh, so a
variant's caches never outlive its call. Before a variant's memory call its pooled cache is
dropped, so that call allocates (and counts) its own; later calls reuse that one.

**The seam for new decode paths** is :data:`DECODERS`: one :class:`CacheKind` per cache
kind (the names in ``config.CACHES``). A kind says which cache class it decodes into, its
policy, the one-token step of the loop timer (``step(runner, model)`` returns a callable
with the model's signature) and how it adjusts ``generate``'s config (``None``: it runs
only under the loop timer). The CUDA-graph captured decode (:mod:`.captured`) plugs in
as ``DECODERS["captured"] = CacheKind("static", CachePolicy.REUSE, captured_step, None)``.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..capture import cache_kwarg
from .config import ProfileConfig
from .inputs import Batch

Call = tuple[float, torch.Tensor | None, Any]  # seconds, greedy tokens or None, the cache


class CachePolicy(enum.Enum):
    FRESH = "fresh"  # a new cache for this call; dropped with the call's outputs
    REUSE = "reuse"  # the pooled cache of (model, batch), reset before the call


@dataclass(frozen=True)
class CacheKind:
    """How one cache kind decodes (see the module docstring)."""

    cache: str  # "dynamic" or "static": the transformers cache class
    policy: CachePolicy
    step: Callable[[Runner, nn.Module], Callable[..., Any]]
    generate: Callable[[Runner, Any], None] | None
    traced: bool = True  # False: no Python dispatch mode under it (dynamo, graph capture)


def _eager_step(runner: Runner, model: nn.Module) -> Callable[..., Any]:
    return model


def _compiled_step(runner: Runner, model: nn.Module) -> Callable[..., Any]:
    step = runner.compiled.get(id(model))
    if step is None:
        step = runner.compiled[id(model)] = torch.compile(
            model, mode=runner.compile_mode, dynamic=False
        )
    return step


def _eager_generate(runner: Runner, gen: Any) -> None:
    gen.disable_compile = True


def _compiled_generate(runner: Runner, gen: Any) -> None:
    from transformers.generation.configuration_utils import CompileConfig

    gen.disable_compile = False
    gen.compile_config = CompileConfig(mode=runner.compile_mode)
    gen.compile_config._compile_all_devices = True


def _captured_step(runner: Any, model: nn.Module) -> Callable:
    """The decode step in a CUDA graph (:mod:`.captured`); eager on the CPU."""
    from .captured import profile_step

    return profile_step(runner, model)


DECODERS: dict[str, CacheKind] = {
    "dynamic": CacheKind("dynamic", CachePolicy.FRESH, _eager_step, _eager_generate),
    "static": CacheKind("static", CachePolicy.FRESH, _eager_step, _eager_generate),
    "compiled": CacheKind(
        "static", CachePolicy.REUSE, _compiled_step, _compiled_generate, traced=False
    ),
    "captured": CacheKind("static", CachePolicy.REUSE, _captured_step, None, traced=False),
}


def new_cache(model: nn.Module, cache: str, max_len: int) -> Any:
    from transformers import DynamicCache, StaticCache

    if cache == "dynamic":
        return DynamicCache(config=model.config)
    return StaticCache(config=model.config, max_cache_len=max_len)


def decoder(kind: str) -> CacheKind:
    if kind not in DECODERS:
        raise ValueError(f"no decoder for cache kind {kind!r}; known: {sorted(DECODERS)}")
    return DECODERS[kind]


class Runner:
    """Calls one variant on one batch; every call returns ``(seconds, tokens, cache)``."""

    def __init__(self, config: ProfileConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.cuda = device.type == "cuda"
        self.compile_mode = config.compile_mode or ("reduce-overhead" if self.cuda else "default")
        if "compiled" in config.caches:  # one graph set per variant: raise dynamo's limits
            import torch._dynamo.config as dynamo_config

            for name in ("cache_size_limit", "recompile_limit", "accumulated_recompile_limit"):
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 256))
        self.pool: dict[tuple[int, int], tuple[int, Any]] = {}  # (model, batch) -> (len, cache)
        self.compiled: dict[int, Callable] = {}

    # ------------------------------------------------------------------ caches
    def cache(self, model: nn.Module, kind: str, batch: int, max_len: int, policy: CachePolicy):
        """A cache for one call of ``model`` under ``policy`` (see the module docstring)."""
        cls = decoder(kind).cache
        if cls == "dynamic" or policy is CachePolicy.FRESH:
            return new_cache(model, cls, max_len)
        key = (id(model), batch)
        held = self.pool.get(key)
        if held is not None and held[0] == max_len:
            held[1].reset()  # also drops the sequence decisions stored on it (the core)
            return held[1]
        self.pool.pop(key, None)  # at most one static cache per (model, batch)
        cache = new_cache(model, cls, max_len)
        self.pool[key] = (max_len, cache)
        return cache

    def release(self, model: nn.Module | None = None) -> None:
        """Drop the pooled caches of ``model`` (before its memory call), or all of them (at
        the end of a regime)."""
        for key in [k for k in self.pool if model is None or k[0] == id(model)]:
            del self.pool[key]
        if self.cuda and model is None:
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ clocks
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def clock(self) -> Iterator[list[float]]:
        box: list[float] = []
        if self.cuda:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            torch.cuda.synchronize(self.device)
            start.record()
            yield box
            end.record()
            torch.cuda.synchronize(self.device)
            box.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            yield box
            box.append(time.perf_counter() - t0)

    # ------------------------------------------------------------------ calls
    def call(self, model: nn.Module, batch: Batch, new: int, kind: str, max_len: int) -> Call:
        """Prefill (``new == 0``) or decode ``new`` tokens; ``max_len`` sizes static caches."""
        if not new:
            return self.prefill(model, batch)
        return self.decode(model, batch, new, kind, max_len)

    def prefill(self, model: nn.Module, batch: Batch) -> Call:
        cache = new_cache(model, "dynamic", 0)
        kw = {cache_kwarg(model): cache, **batch.forward_kwargs()}
        with self.clock() as t:
            model(batch.ids, use_cache=True, logits_to_keep=1, **kw)
        return t[0], None, cache

    def decode(self, model: nn.Module, batch: Batch, new: int, kind: str, max_len: int) -> Call:
        if self.config.decode_timer == "generate":
            t1, _, _ = self.generate(model, batch, 1, kind, max_len)
            tn, toks, cache = self.generate(model, batch, new, kind, max_len)
            return tn - t1, toks, cache
        return self.loop(model, batch, new, kind, max_len)

    def generate(self, model: nn.Module, batch: Batch, new: int, kind: str, max_len: int) -> Call:
        from transformers import GenerationConfig

        how = decoder(kind)
        if how.generate is None:
            raise ValueError(f"cache kind {kind!r} runs only with decode_timer='loop'")
        cache = self.cache(model, kind, batch.ids.shape[0], max_len, how.policy)
        gen = GenerationConfig(
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=model.config.pad_token_id or 0,
            eos_token_id=model.config.eos_token_id,
        )
        how.generate(self, gen)
        kw = {cache_kwarg(model): cache}
        with self.clock() as t:
            out = model.generate(batch.ids, attention_mask=batch.mask, generation_config=gen, **kw)
        return t[0], out[:, batch.ids.shape[1] :], cache

    def loop(self, model: nn.Module, batch: Batch, new: int, kind: str, max_len: int) -> Call:
        """Untimed prefill, then ``new - 1`` timed greedy one-token steps. Without padding the
        steps take no mask (as before); with padding, the mask of the whole generation (one
        shape for the regime, ``max_len`` wide, so compiled steps do not recompile per
        batch) and each sequence's position."""
        how = decoder(kind)
        cache = self.cache(model, kind, batch.ids.shape[0], max_len, how.policy)
        kw = cache_kwarg(model)
        step = how.step(self, model)
        prompt = {kw: cache, **batch.forward_kwargs()}
        out = model(batch.ids, use_cache=True, logits_to_keep=1, **prompt)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        toks = [tok]
        extra: dict[str, Any] = {}
        if batch.padded:  # one mask shape per regime, whatever the batch's width
            b, w = batch.mask.shape
            mask = torch.zeros(b, max(max_len, w + new), dtype=batch.mask.dtype, device=self.device)
            mask[:, :w] = batch.mask
            mask[:, w : w + new] = 1
            extra["attention_mask"] = mask
            real = batch.mask.sum(-1, keepdim=True)
        self.sync()
        with self.clock() as t:
            for i in range(new - 1):
                if batch.padded:
                    extra["position_ids"] = real + i
                out = step(tok, use_cache=True, **{kw: cache}, **extra)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                toks.append(tok)
        return t[0], torch.cat(toks, dim=1), cache
