"""Speed and memory that tell the truth: each method next to dense and next to its ceiling.

For every regime (batch, prompt length, new tokens) of :class:`ProfileConfig` and every
cache kind, all variants are measured in one process, interleaved, after warm-up:

- ``dense``: the stock model;
- ``mindskip``: routed layers whose decisions skip a pattern (forced: zero routers with
  threshold 1 on the pattern layers, so the routers really run), or trained routers, or a
  :class:`mindskip.baselines.MethodSpec`;
- ``ceiling``: the same sublayers removed by hand (:func:`mindskip.remove_sublayers`).

All variants share one copy of the weights. Reported per row: median time and its spread
over repeats, tokens/s, latency, speedup over dense and achieved/ceiling (both as paired
per-repeat ratios, median and min/max), peak memory, KV-cache bytes actually stored, and
the realised skip ratio (:func:`mindskip.routing_stats`).

- ``prefill`` rows (``new_tokens == 0``): one forward over the prompt with a fresh cache
  and ``logits_to_keep=1``, as ``generate`` does. ``latency_ms`` is the whole prefill.
- ``decode`` rows: ``steps = new_tokens - 1`` one-token forwards, timed either as
  ``generate(N) - generate(1)`` (``decode_timer="generate"``) or as a greedy loop after an
  untimed prefill (``"loop"``). ``latency_ms`` is one step (one new token per sequence).
- caches: ``dynamic``; ``static`` (``StaticCache``, eager); ``compiled`` (``StaticCache``
  with the decode forward under ``torch.compile``). Static and compiled rows say whether
  their greedy tokens equal the dynamic cache's (``check``).

Timing: ``time.perf_counter`` on CPU with pinned ``torch.set_num_threads``; CUDA events and
``synchronize`` on GPU. Memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU, the
weights plus the peak bytes of tensor storages that the call creates (a dispatch-mode
tracker in an untimed pass; it does not see scratch memory inside fused kernels). The same
pass counts the aten ops dispatched (``aten_ops``): routing overhead that timing noise on a
shared machine hides shows up there exactly.

    python -m mindskip.profile --model smollm2-135m --shape-only --out results/profile/x
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import json
import os
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .config import UNITS, MindSkipConfig
from .surgery import (
    apply_mindskip,
    decoder_layers,
    load_routers,
    mindskip_layers,
    read_router_config,
    remove_sublayers,
    reset_routing_stats,
    routing_stats,
    set_thresholds,
)

CACHES = ("dynamic", "static", "compiled")
TIMERS = ("generate", "loop")

# Named shapes for ``shape_only`` (random weights: speed does not depend on their values).
SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    ),
    "smollm2-135m": dict(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    ),
}

FIELDS = (
    "model", "device", "dtype", "threads", "method", "variant", "routers", "pattern",
    "skipped", "skip_ratio", "phase", "cache", "batch", "prompt_len", "new_tokens", "steps",
    "repeats", "time_s", "time_s_min", "time_s_max", "time_s_q1", "time_s_q3",
    "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max", "latency_ms",
    "speedup", "speedup_min", "speedup_max",
    "achieved_vs_ceiling", "achieved_min", "achieved_max",
    "peak_mem_bytes", "work_mem_bytes", "kv_cache_bytes", "aten_ops", "check", "status",
)  # fmt: skip


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure.

    Attributes:
        model: a name in :data:`SHAPES` or a local Hugging Face folder (label only when a
            model object is passed to :func:`profile`).
        shape_only: random weights from the named shape (or the folder's config.json).
        units: one forced-pattern method per unit (``attn``, ``mlp``, ``block``).
        layers: the skip pattern; ``None``: every other layer of the routed range.
        num_routed: the routed range (the last n layers before the final one).
        routing: ``sequence`` or ``token`` for the forced-pattern methods.
        routers: trained router folders, each profiled as one more method.
        grid: ``(batch, prompt_len, new_tokens)``; ``new_tokens == 0`` is a prefill regime.
        caches: ``dynamic``, ``static``, ``compiled`` (decode regimes only; prefill always
            uses a dynamic cache).
        decode_timer: ``generate`` (generate(N) - generate(1)) or ``loop``.
        repeats, warmup: timed repeats and untimed warm-up calls per variant and regime.
        ceiling: also measure the hand-removed ceiling of each method.
        device, dtype: ``dtype=None`` is float32 on CPU and bfloat16 on CUDA.
        threads: CPU threads (``torch.set_num_threads``); ``None`` leaves torch's default.
        compile_mode: ``torch.compile`` mode; ``None``: reduce-overhead on CUDA, else default.
        budget_s: stop starting new regimes after this many seconds (results so far kept).
    """

    model: str = "smollm2-135m"
    shape_only: bool = False
    units: tuple[str, ...] = ("attn", "mlp", "block")
    layers: tuple[int, ...] | None = None
    num_routed: int = 16
    routing: str = "sequence"
    routers: tuple[str, ...] = ()
    grid: tuple[tuple[int, int, int], ...] = ((1, 512, 0), (8, 512, 0), (1, 128, 32), (8, 128, 32))
    caches: tuple[str, ...] = ("dynamic",)
    decode_timer: str = "generate"
    repeats: int = 5
    warmup: int = 1
    ceiling: bool = True
    device: str = "cpu"
    dtype: str | None = None
    threads: int | None = None
    attn_implementation: str = "sdpa"
    compile_mode: str | None = None
    budget_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "units", tuple(self.units))
        set_(self, "routers", tuple(str(r) for r in self.routers))
        set_(self, "caches", tuple(self.caches))
        set_(self, "grid", tuple(tuple(int(v) for v in g) for g in self.grid))
        if self.layers is not None:
            set_(self, "layers", tuple(sorted(int(i) for i in self.layers)))
        bad = [u for u in self.units if u not in UNITS] + [
            c for c in self.caches if c not in CACHES
        ]
        if bad:
            raise ValueError(f"unknown units/caches {bad}: use {UNITS} and {CACHES}")
        if self.decode_timer not in TIMERS:
            raise ValueError(f"decode_timer must be one of {TIMERS}, got {self.decode_timer!r}")
        for g in self.grid:
            if len(g) != 3 or g[0] < 1 or g[1] < 1 or g[2] < 0 or g[2] == 1:
                raise ValueError(f"grid entry {g}: need (batch>=1, prompt>=1, new=0 or >=2)")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")

    def pattern(self, num_layers: int) -> tuple[int, ...]:
        """The forced skip pattern: ``layers``, else every other layer of the routed range."""
        if self.layers is not None:
            return MindSkipConfig(layers=self.layers).routed_layers(num_layers)
        return self.routed_range(num_layers)[::2]

    def routed_range(self, num_layers: int) -> tuple[int, ...]:
        """The last ``num_routed`` layers before the final one (fewer if the model is small)."""
        n = min(self.num_routed, num_layers - 2)
        return MindSkipConfig(num_routed=n).routed_layers(num_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProfileResult:
    rows: list[dict[str, Any]]
    env: dict[str, Any]
    config: dict[str, Any]


@dataclass
class _Variant:
    method: str  # "dense", a unit, or a routers/spec name
    variant: str  # dense | mindskip | ceiling
    model: nn.Module
    routers: str  # how decisions are made, in words
    pattern: tuple[int, ...] = ()
    unit: str = ""

    @property
    def key(self) -> str:
        return "dense" if self.variant == "dense" else f"{self.variant}:{self.method}"


# ----------------------------------------------------------------------------- models
def shape_config(name_or_path: str) -> Any:
    """A transformers config for a named shape (:data:`SHAPES`) or a local folder."""
    from transformers import AutoConfig, LlamaConfig

    if name_or_path in SHAPES:
        return LlamaConfig(**SHAPES[name_or_path], pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return AutoConfig.from_pretrained(name_or_path)


def build_model(config: ProfileConfig) -> nn.Module:
    """The dense model: random weights (``shape_only``) or a local folder's weights."""
    from transformers import AutoModelForCausalLM

    device, dtype = torch.device(config.device), _dtype(config)
    if config.shape_only:
        torch.manual_seed(config.seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(
                shape_config(config.model),
                dtype=dtype,
                attn_implementation=config.attn_implementation,
            ).to(device)
    elif Path(config.model).is_dir():
        model = AutoModelForCausalLM.from_pretrained(
            config.model, dtype=dtype, attn_implementation=config.attn_implementation
        ).to(device)
    else:
        raise FileNotFoundError(
            f"{config.model!r} is not a local model folder; pass a folder, or shape_only=True "
            f"with one of {sorted(SHAPES)} for random weights"
        )
    return model.eval()


def shared_copy(model: nn.Module) -> nn.Module:
    """A deep copy of the module tree that shares every parameter and buffer tensor."""
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def _dtype(config: ProfileConfig) -> torch.dtype:
    if config.dtype is None:
        return torch.bfloat16 if config.device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def _lowest_capacity_layers(model: nn.Module) -> tuple[int, ...]:
    """The k least-executed routed layers, k = the realised number of skipped sublayers."""
    total = routing_stats(model).total
    k = round(sum(1.0 - c for c in total.values()))
    return tuple(sorted(sorted(total, key=lambda i: (total[i], i))[:k]))


def _variants(
    config: ProfileConfig,
    dense: nn.Module,
    methods: Mapping[str, Any],
    calibrate: Callable[[nn.Module], None],
) -> list[_Variant]:
    n = len(decoder_layers(dense))
    pattern = config.pattern(n)
    weights = "shape_only, random weights" if config.shape_only else "real weights"
    out = [_Variant("dense", "dense", dense, "none")]
    for unit in config.units:
        routed = config.routed_range(n)
        cfg = MindSkipConfig(unit=unit, routing=config.routing, layers=tuple({*routed, *pattern}))
        m = apply_mindskip(shared_copy(dense), cfg)
        set_thresholds(m, {i: 1.0 for i in pattern})  # zero routers: sigmoid(0)=0.5 < 1: skip
        label = f"forced pattern ({weights}; {len(cfg.layers)} routed, zero routers)"
        out.append(_Variant(unit, "mindskip", m, label, pattern, unit))
    for name, spec in methods.items():
        m = shared_copy(dense)
        if isinstance(spec, str):  # a trained routers folder
            load_routers(m, spec)
            label, unit = f"trained routers {spec} ({weights})", read_router_config(spec).unit
        else:  # a MethodSpec
            from .baselines import prepare_method

            prepare_method(m, spec)
            label, unit = f"{spec.kind} method {spec.slug} ({weights})", spec.unit
        if not mindskip_layers(m):  # a dense spec: dense is measured already
            continue
        reset_routing_stats(m)
        calibrate(m)
        out.append(_Variant(name, "mindskip", m, label, _lowest_capacity_layers(m), unit))
    if config.ceiling:
        for v in [v for v in out if v.variant == "mindskip"]:
            m = remove_sublayers(shared_copy(dense), v.pattern, v.unit)
            out.append(_Variant(v.method, "ceiling", m, "hand-removed", v.pattern, v.unit))
    return out


# ----------------------------------------------------------------------------- measuring
class _PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created while active (CPU memory has no allocator
    statistics), and the number of aten ops dispatched (overhead that timing noise hides)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}
        self.current = self.peak = self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            key = t.untyped_storage().data_ptr()
            entry = self.live.get(key)
            if entry is None:
                if key == 0 or key in inputs:  # a view of something made before the call
                    continue
                entry = self.live[key] = [t.untyped_storage().nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self.live[key]


def _cache_kwarg(model: nn.Module) -> str:
    """transformers 5.2x calls the cache argument ``cache``; older 5.x ``past_key_values``."""
    import inspect

    return (
        "cache"
        if "cache" in inspect.signature(type(model).forward).parameters
        else "past_key_values"
    )


def kv_cache_bytes(cache: Any) -> int:
    """Bytes of keys and values actually stored (allocated) in a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if getattr(layer, "is_initialized", True) and isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _new_cache(model: nn.Module, kind: str, max_len: int) -> Any:
    from transformers import DynamicCache, StaticCache

    if kind == "dynamic":
        return DynamicCache(config=model.config)
    return StaticCache(config=model.config, max_cache_len=max_len)


class _Runner:
    """Calls one variant in one regime; every call returns (seconds, tokens or None, cache)."""

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

        self.fresh = False  # True: new caches (the memory pass), else reuse static ones
        self._static: dict[tuple, Any] = {}
        self.compiled: dict[int, Callable] = {}
        self.reference: dict[tuple, torch.Tensor] = {}  # greedy tokens with a dynamic cache

    def cache(self, model: nn.Module, kind: str, batch: int, max_len: int) -> Any:
        """A new dynamic cache; a static one is reused (reset), as compiled decoding needs."""
        if kind == "dynamic" or self.fresh:
            return _new_cache(model, kind, max_len)
        key = (id(model), kind, batch, max_len)
        cache = self._static.get(key)
        if cache is None:
            cache = self._static[key] = _new_cache(model, kind, max_len)
        else:
            cache.reset()  # also drops the sequence decisions stored on it (the core)
        return cache

    def release(self) -> None:
        """Drop the reused static caches (at the end of a regime)."""
        self._static.clear()
        if self.cuda:
            torch.cuda.empty_cache()

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

    def prefill(self, model: nn.Module, ids: torch.Tensor) -> tuple[float, Any, Any]:
        cache = _new_cache(model, "dynamic", 0)
        kw = {_cache_kwarg(model): cache}
        with self.clock() as t:
            model(ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1, **kw)
        return t[0], None, cache

    def decode(
        self, model: nn.Module, ids: torch.Tensor, new: int, kind: str
    ) -> tuple[float, Any, Any]:
        if self.config.decode_timer == "generate":
            t1, _, _ = self._generate(model, ids, 1, kind)
            tn, toks, cache = self._generate(model, ids, new, kind)
            return tn - t1, toks, cache
        return self._loop(model, ids, new, kind)

    def _generate(self, model: nn.Module, ids: torch.Tensor, new: int, kind: str):
        from transformers import GenerationConfig

        cache = self.cache(model, kind, ids.shape[0], ids.shape[1] + new)
        gen = GenerationConfig(
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            pad_token_id=model.config.pad_token_id or 0,
            eos_token_id=model.config.eos_token_id,
            disable_compile=kind != "compiled",
        )
        if kind == "compiled":
            from transformers.generation.configuration_utils import CompileConfig

            gen.compile_config = CompileConfig(mode=self.compile_mode)
            gen.compile_config._compile_all_devices = True
        mask = torch.ones_like(ids)
        with self.clock() as t:
            out = model.generate(
                ids, attention_mask=mask, generation_config=gen, **{_cache_kwarg(model): cache}
            )
        return t[0], out[:, ids.shape[1] :], cache

    def _loop(self, model: nn.Module, ids: torch.Tensor, new: int, kind: str):
        cache = self.cache(model, kind, ids.shape[0], ids.shape[1] + new)
        kw = _cache_kwarg(model)
        step = model
        if kind == "compiled":
            step = self.compiled.get(id(model))
            if step is None:
                step = torch.compile(model, mode=self.compile_mode, dynamic=False)
                self.compiled[id(model)] = step
        mask = torch.ones_like(ids)
        out = model(ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **{kw: cache})
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        toks = [tok]
        self.sync()
        with self.clock() as t:
            for _ in range(new - 1):
                # no attention mask: no padding, and static shapes for the compiled step
                out = step(tok, use_cache=True, **{kw: cache})
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                toks.append(tok)
        return t[0], torch.cat(toks, dim=1), cache

    def memory(self, call: Callable[[], tuple[float, Any, Any]], compiled: bool) -> dict:
        """Peak and working bytes, aten ops, tokens and cache of one untimed call."""
        self.fresh = not compiled  # a new static cache would make compiled code recompile
        try:
            if compiled:  # dynamo does not trace under a Python dispatch mode
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                _, toks, cache = call()
                peak = torch.cuda.max_memory_allocated(self.device) if self.cuda else -1
                return dict(peak=peak, work=-1, ops=-1, toks=toks, cache=cache)
            tracker = _PeakTensorBytes()
            if self.cuda:
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device) if self.cuda else 0
            with tracker:
                _, toks, cache = call()
            if self.cuda:
                peak = torch.cuda.max_memory_allocated(self.device)
                work = peak - base
            else:
                peak, work = -1, tracker.peak
            return dict(peak=peak, work=work, ops=tracker.ops, toks=toks, cache=cache)
        finally:
            self.fresh = False


def _stats(xs: list[float]) -> tuple[float, float, float, float, float]:
    """median, min, max, q1, q3."""
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return statistics.median(xs), min(xs), max(xs), q1, q3


def _param_bytes(model: nn.Module) -> int:
    seen: dict[int, int] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


# ----------------------------------------------------------------------------- the run
def profile(
    config: ProfileConfig,
    model: nn.Module | None = None,
    methods: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> ProfileResult:
    """Measure every variant in every regime of ``config`` (see the module docstring).

    ``model``: the dense model (default: :func:`build_model`). ``methods``: more methods by
    name, each a trained routers folder or a :class:`mindskip.baselines.MethodSpec`
    (``config.routers`` adds folders too). ``out_dir``: write CSV, JSON and Markdown after
    every regime, so a run cut short keeps what it measured.
    """
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _profile(config, model, methods, out_dir, progress)
    finally:
        torch.set_num_threads(threads_before)


def _profile(
    config: ProfileConfig,
    model: nn.Module | None,
    methods: Mapping[str, Any] | None,
    out_dir: str | Path | None,
    progress: bool,
) -> ProfileResult:
    from tqdm.auto import tqdm

    device = torch.device(config.device)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    dense = build_model(config) if model is None else model.eval()
    vocab = int(dense.config.vocab_size)
    gen = torch.Generator().manual_seed(config.seed)

    def tokens(batch: int, length: int) -> torch.Tensor:
        return torch.randint(3, vocab, (batch, length), generator=gen).to(device)

    b0, p0, _ = config.grid[0]
    calib = tokens(b0, p0)
    all_methods = {Path(r).name: r for r in config.routers} | dict(methods or {})
    with torch.inference_mode():
        variants = _variants(
            config, dense, all_methods, lambda m: m(calib, attention_mask=torch.ones_like(calib))
        )
    runner = _Runner(config, device)
    kinds = {g: config.caches if g[2] else ("dynamic",) for g in config.grid}
    per_regime = len(variants) * (config.warmup + 1 + config.repeats)
    total = sum(len(k) for k in kinds.values()) * per_regime
    bar = tqdm(total=total, disable=not progress, desc="profile", unit="call")
    result = ProfileResult([], environment(config, dense), config.to_dict())
    result.env["loadavg_start"] = load_start
    weights = _param_bytes(dense)
    for (batch, prompt, new), regime_kinds in kinds.items():
        ids = tokens(batch, prompt)  # the same ids for every cache kind of this regime
        for kind in regime_kinds:
            if config.budget_s is not None and time.perf_counter() - t_start > config.budget_s:
                result.env["truncated"] = (
                    f"budget_s={config.budget_s} reached before {batch}x{prompt}x{new} {kind}"
                )
                break
            result.rows += _measure_regime(runner, variants, ids, new, kind, bar, weights)
            result.env["seconds"] = round(time.perf_counter() - t_start, 1)
            result.env["loadavg_end"] = os.getloadavg()
            if out_dir is not None:
                write_results(result, out_dir)
    bar.close()
    if out_dir is not None:
        write_results(result, out_dir)
    return result


def _measure_regime(
    runner: _Runner,
    variants: list[_Variant],
    ids: torch.Tensor,
    new: int,
    kind: str,
    bar: Any,
    weights: int,
) -> list[dict[str, Any]]:
    batch, prompt = ids.shape
    phase = "decode" if new else "prefill"

    def call(v: _Variant) -> tuple[float, Any, Any]:
        return runner.decode(v.model, ids, new, kind) if new else runner.prefill(v.model, ids)

    status = {v.key: "ok" for v in variants}

    def attempt(v: _Variant, fn: Callable[[], Any]) -> Any:
        """A path that does not work (e.g. compile) is a result, not a crash."""
        if status[v.key] == "ok":
            try:
                return fn()
            except Exception as e:
                status[v.key] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return None

    info: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {v.key: [] for v in variants}
    with torch.inference_mode():
        for _ in range(runner.config.warmup):  # interleaved too: compiled code settles here
            for v in variants:
                attempt(v, lambda v=v: call(v))
                bar.update()
        for v in variants:
            reset_routing_stats(v.model)
            got = attempt(v, lambda v=v: runner.memory(lambda: call(v), kind == "compiled"))
            got = got or dict(peak=-1, work=-1, ops=-1, toks=None, cache=None)
            peak, work, cache = got["peak"], got["work"], got["cache"]
            stats = routing_stats(v.model)
            bar.update()
            skip = stats.skip_ratio if stats.total else 0.0
            if v.variant == "ceiling":
                skip = len(v.pattern) / len(decoder_layers(v.model))
            info[v.key] = dict(
                peak=peak if peak >= 0 or work < 0 else weights + work,
                work=work,
                kv=kv_cache_bytes(cache) if cache is not None else -1,
                toks=got["toks"],
                ops=got["ops"],
                ids_shape=tuple(ids.shape),
                skip=skip,
            )
        for r in range(runner.config.repeats):
            live = [v for v in variants if status[v.key] == "ok"]
            for v in live[r % len(live) :] + live[: r % len(live)] if live else []:
                t = attempt(v, lambda v=v: call(v)[0])
                if t is not None:
                    times[v.key].append(t)
                bar.update()
        for v in variants:  # a variant that failed midway is not reported as timed
            if status[v.key] != "ok":
                times[v.key] = []
    runner.release()
    rows = []
    for v in variants:
        i, ts = info[v.key], times[v.key]
        steps = max(new - 1, 0)
        n_tokens = batch * (steps if new else prompt)
        row: dict[str, Any] = {
            "method": v.method,
            "variant": v.variant,
            "routers": v.routers,
            "pattern": ",".join(map(str, v.pattern)),
            "skipped": len(v.pattern),
            "skip_ratio": round(i["skip"], 4),
            "phase": phase,
            "cache": kind,
            "batch": batch,
            "prompt_len": prompt,
            "new_tokens": new,
            "steps": steps,
            "repeats": len(ts),
            "peak_mem_bytes": i["peak"],
            "work_mem_bytes": i["work"],
            "kv_cache_bytes": i["kv"],
            "aten_ops": i["ops"],
            "status": status[v.key],
            "check": _check(v, info, kind, runner.reference),
        }
        if ts:
            med, lo, hi, q1, q3 = _stats(ts)
            row.update(time_s=med, time_s_min=lo, time_s_max=hi, time_s_q1=q1, time_s_q3=q3)
            row.update(
                tokens_per_s=n_tokens / med,
                tokens_per_s_min=n_tokens / hi,
                tokens_per_s_max=n_tokens / lo,
                latency_ms=1e3 * med / (steps if new else 1),
            )
            row.update(_ratios("speedup", times.get("dense", []), ts))
            if v.variant == "mindskip":
                names = ("achieved_vs_ceiling", "achieved_min", "achieved_max")
                got = _ratios("x", times.get(f"ceiling:{v.method}", []), ts)
                row.update(dict(zip(names, got.values(), strict=True)))
        rows.append(row)
    return rows


def _ratios(name: str, ref: list[float], ts: list[float]) -> dict[str, float]:
    """Paired per-repeat ratios ref/t (interleaved repeats share their conditions)."""
    if not ref or len(ref) != len(ts):
        return {}
    rs = [a / b for a, b in zip(ref, ts, strict=True)]
    return {name: statistics.median(rs), f"{name}_min": min(rs), f"{name}_max": max(rs)}


def _check(v: _Variant, info: dict, kind: str, reference: dict) -> str:
    """Greedy tokens: a mindskip variant vs its ceiling; a static/compiled cache vs dynamic."""
    toks = info[v.key]["toks"]
    if toks is None:
        return ""
    notes = []
    ceiling = info.get(f"ceiling:{v.method}")
    if v.variant == "mindskip" and ceiling is not None and ceiling["toks"] is not None:
        same = torch.equal(toks, ceiling["toks"])
        notes.append("tokens == ceiling" if same else "tokens != ceiling")
    key = (v.key, *info[v.key]["ids_shape"], toks.shape[1])
    if kind == "dynamic":
        reference[key] = toks
    elif key in reference:
        same = torch.equal(toks, reference[key])
        notes.append("tokens == dynamic" if same else "tokens != dynamic")
    return "; ".join(notes)


# ----------------------------------------------------------------------------- output
def environment(config: ProfileConfig, model: nn.Module) -> dict[str, Any]:
    """Versions, machine, threads, date, and how each number was taken."""
    import platform

    import transformers

    from . import __version__

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cuda = config.device.startswith("cuda")
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "mindskip": __version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device=torch.device(config.device)) if cuda else None,
        "device": config.device,
        "dtype": str(_dtype(config)).removeprefix("torch."),
        "model": config.model,
        "num_layers": len(decoder_layers(model)),
        "shape_only": config.shape_only,
        "weights": "random (shape_only)" if config.shape_only else "real",
        "timer": "cuda events + synchronize" if cuda else "time.perf_counter",
        "memory": "torch.cuda.max_memory_allocated"
        if cuda
        else "weights + peak bytes of tensor storages created by the call (dispatch tracker)",
        "decode_timer": config.decode_timer,
        "inputs": f"random token ids, seed {config.seed}, no padding",
    }


def write_results(result: ProfileResult, out_dir: str | Path) -> Path:
    """``profile.csv`` (tidy), ``profile.json`` (rows + env + config), ``profile.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = result.env
    rows = [
        {
            "model": env["model"],
            "device": env["gpu"] or env["device"],
            "dtype": env["dtype"],
            "threads": env["torch_threads"],
            **r,
        }
        for r in result.rows
    ]
    with open(out / "profile.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, restval="")
        w.writeheader()
        w.writerows(rows)
    doc = {"env": env, "config": result.config, "rows": rows}
    (out / "profile.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "profile.md").write_text(to_markdown(result))
    return out


def _regime(r: Mapping[str, Any]) -> tuple:
    return (r["phase"], r["cache"], r["batch"], r["prompt_len"], r["new_tokens"])


def _label(r: Mapping[str, Any]) -> str:
    return "dense" if r["variant"] == "dense" else f"{r['method']} {r['variant']}"


def _cell(r: Mapping[str, Any] | None) -> str:
    if r is None or "time_s" not in r:
        return "" if r is None else str(r["status"])[:60]
    if r["variant"] == "dense":
        return f"{r['tokens_per_s']:,.0f} tok/s ({r['latency_ms']:.1f} ms)"
    c = f"{r['speedup']:.2f}x [{r['speedup_min']:.2f}-{r['speedup_max']:.2f}]"
    if "achieved_vs_ceiling" in r:
        c += f", {r['achieved_vs_ceiling']:.0%} of ceiling"
    return c


def to_markdown(result: ProfileResult) -> str:
    """One table per phase and cache: dense tokens/s, then speedups (achieved/ceiling)."""
    env, rows = result.env, result.rows
    out = [
        f"# Profile: {env['model']} ({env['weights']} weights), {env['dtype']}",
        "",
        f"{env['date']}; {env['gpu'] or env['cpu']}; torch {env['torch']}, "
        f"{env['torch_threads']} threads; transformers {env['transformers']}; mindskip "
        f"{env['mindskip']}. Load average at start/end: {env.get('loadavg_start')} / "
        f"{env.get('loadavg_end')}. Dense: tokens/s (latency). Others: speedup over dense "
        "and achieved/ceiling, medians of paired per-repeat ratios [min-max].",
    ]
    if env.get("truncated"):
        out.append(f"**Truncated**: {env['truncated']}.")
    by_key = {(_regime(r), _label(r)): r for r in rows}
    regimes = list(dict.fromkeys(_regime(r) for r in rows))
    labels = list(dict.fromkeys(_label(r) for r in rows))
    for phase, kind in dict.fromkeys(g[:2] for g in regimes):
        cols = [g for g in regimes if g[:2] == (phase, kind)]
        names = [f"b{b}x{p}" + (f"+{n}" if n else "") for _, _, b, p, n in cols]
        out += ["", f"## {phase}, {kind} cache", "", "| variant | " + " | ".join(names) + " |"]
        out.append("|---" * (len(cols) + 1) + "|")
        for label in labels:
            cells = [_cell(by_key.get((g, label))) for g in cols]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "## Memory, KV cache, aten ops, skip ratio, checks", ""]
    out.append(
        "| regime | variant | skip ratio | peak MiB | working MiB | KV MiB | aten ops | check |"
    )
    out.append("|---" * 8 + "|")
    for r in rows:
        p, c, b, t, n = _regime(r)
        mib = [r[k] / 2**20 for k in ("peak_mem_bytes", "work_mem_bytes", "kv_cache_bytes")]
        cells = [f"{m:.1f}" if m >= 0 else "" for m in mib]
        cells.append(str(r["aten_ops"]) if r["aten_ops"] >= 0 else "")
        out.append(
            f"| {p} {c} b{b}x{t}+{n} | {_label(r)} | {r['skip_ratio']:.3f} | "
            + " | ".join(cells)
            + f" | {r['check']} |"
        )
    out += ["", "Routers:", ""]
    out += sorted({f"- {_label(r)}: {r['routers']}" for r in rows}) + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- CLI
def _grid(text: str) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(int(v) for v in g.lower().split("x")) for g in text.split(","))  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mindskip.profile",
        description="Speed and memory of MindSkip vs dense vs the hand-removed ceiling.",
    )
    ap.add_argument("--model", default="smollm2-135m", help=f"a folder, or {sorted(SHAPES)}")
    ap.add_argument("--shape-only", action="store_true", help="random weights from the shape")
    ap.add_argument(
        "--units", default="attn,mlp,block", help="forced-pattern methods ('' for none)"
    )
    ap.add_argument(
        "--layers", default=None, help="skip pattern, e.g. 13,15 (default: every other routed)"
    )
    ap.add_argument("--num-routed", type=int, default=16)
    ap.add_argument("--routing", default="sequence", choices=("sequence", "token"))
    ap.add_argument("--routers", nargs="*", default=[], help="trained router folders")
    ap.add_argument("--grid", default="1x512x0,8x512x0,1x128x32,8x128x32", help="BxTxNEW,...")
    ap.add_argument("--caches", default="dynamic", help=f"comma list of {CACHES}")
    ap.add_argument("--decode-timer", default="generate", choices=TIMERS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype", default=None, help="float32 | bfloat16 | float16 (default by device)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (pinned)")
    ap.add_argument("--compile-mode", default=None)
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting regimes after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="folder for profile.{csv,json,md}")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config = ProfileConfig(
        model=a.model,
        shape_only=a.shape_only,
        units=tuple(u for u in a.units.split(",") if u),
        layers=tuple(int(i) for i in a.layers.split(",")) if a.layers else None,
        num_routed=a.num_routed,
        routing=a.routing,
        routers=tuple(a.routers),
        grid=_grid(a.grid),
        caches=tuple(a.caches.split(",")),
        decode_timer=a.decode_timer,
        repeats=a.repeats,
        warmup=a.warmup,
        ceiling=not a.no_ceiling,
        device=a.device,
        dtype=a.dtype,
        threads=a.threads,
        compile_mode=a.compile_mode,
        budget_s=a.budget_s,
        seed=a.seed,
    )
    result = profile(config, out_dir=a.out, progress=not a.no_progress)
    result.env["command"] = "python -m mindskip.profile " + " ".join(argv or sys.argv[1:])
    write_results(result, a.out)
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
