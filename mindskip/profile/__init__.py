"""Speed and memory that tell the truth: each method next to dense and next to its ceiling.

For every regime (batch, prompt length, new tokens) of :class:`ProfileConfig` and every
cache kind, all variants are measured in one process, interleaved, after warm-up:

- ``dense``: the stock model;
- ``mindskip``: routed layers whose decisions skip a pattern (forced: zero routers with
  threshold 1 on the pattern layers, so the routers really run), trained routers, a
  method spec, or any callable ``prepare(model) -> model``;
- ``ceiling``: the same sublayers removed by hand (:func:`mindskip.remove_sublayers`).

All variants share one copy of the weights. Reported per row: median time and its spread
over repeats, tokens/s, latency, speedup over dense and achieved/ceiling (medians of
paired per-repeat ratios, with min/max and an order-statistic CI; ``resolved`` is False
when the speedup's CI contains 1.0), peak memory (weights plus the call's peak above the
baseline before it), KV-cache bytes actually stored, aten ops, and the realised skip ratio
on the profiled inputs (:func:`mindskip.routing_stats`). Inputs are random token ids or
real prompts (e.g. the tokenised evaluation prompts), so that a routed model skips as
much as it does when scored. A failed variant raises :class:`ProfileError` (``strict``).

- ``prefill`` rows (``new_tokens == 0``): one forward over the prompt with a fresh cache
  and ``logits_to_keep=1``, as ``generate`` does. ``latency_ms`` is the whole prefill.
- ``decode`` rows: ``steps = new_tokens - 1`` one-token forwards, timed either as
  ``generate(N) - generate(1)`` (``decode_timer="generate"``) or as a greedy loop after an
  untimed prefill (``"loop"``). ``latency_ms`` is one step (one new token per sequence).
- caches: ``dynamic``; ``static`` (``StaticCache``, eager); ``compiled`` (``StaticCache``
  with the decode forward under ``torch.compile``); ``captured`` (``StaticCache``, each
  decode step a CUDA graph; loop timer only). Those rows say whether their greedy tokens
  equal the dynamic cache's (``check``).

Modules: :mod:`.config` (what to measure), :mod:`.inputs` (random ids or real prompts),
:mod:`.variants` (the models), :mod:`.timing` (the runner, clocks, caches, and the decode
seam), :mod:`.captured` (the ``captured`` cache kind), :mod:`.memory` (bytes and ops),
:mod:`.stats` (spread and CIs), :mod:`.run` (the entry), :mod:`.output` (files),
``__main__`` (the command line)::

    python -m mindskip.profile --model smollm2-135m --shape-only --out results/profile/x
"""

from __future__ import annotations

from typing import Any

from .config import CACHES, SHAPES, TIMERS, ProfileConfig
from .inputs import Batch, load_prompts
from .memory import PeakTensorBytes, kv_cache_bytes
from .output import FIELDS, measurement, to_markdown, write_results
from .run import ProfileError, ProfileResult, input_source, profile
from .stats import RatioCI, median_ci, ratio_ci
from .timing import DECODERS, CacheKind, CachePolicy, Runner, cache_kwarg
from .variants import Variant, build_model, shape_config, shared_copy

__all__ = [
    "CACHES",
    "DECODERS",
    "FIELDS",
    "SHAPES",
    "TIMERS",
    "Batch",
    "CacheKind",
    "CachePolicy",
    "PeakTensorBytes",
    "ProfileConfig",
    "ProfileError",
    "ProfileResult",
    "RatioCI",
    "Runner",
    "Variant",
    "build_model",
    "cache_kwarg",
    "measurement",
    "input_source",
    "kv_cache_bytes",
    "load_prompts",
    "main",
    "median_ci",
    "profile",
    "ratio_ci",
    "shape_config",
    "shared_copy",
    "to_markdown",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name == "main":  # lazily, so ``python -m mindskip.profile`` imports __main__ once
        from .__main__ import main

        return main
    raise AttributeError(f"module 'mindskip.profile' has no attribute {name!r}")
