"""The ``profile()`` entry: every variant in every regime, interleaved, in one process.

Per regime (batch, prompt length, new tokens; and per cache kind of a decode regime):

1. warm-up: ``warmup`` untimed calls of every variant, interleaved, on the first batch;
2. memory: one untimed call per variant on the widest batch, each after the previous
   variant's outputs and caches are freed (:mod:`mindskip.profile.memory`);
3. timing: ``repeats`` rounds; round ``r`` calls every live variant once on batch ``r``,
   starting from a rotating variant, so paired per-repeat ratios share their conditions.
   The realised skip ratio is read from the routers over these calls.

A variant that raises fails the profile with a :class:`ProfileError` naming it and the
regime (``strict``, the default); with ``strict=False`` its rows say ``status=error: ...``
and keep the exact counts measured before the failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..stats import reset_routing_stats, routing_stats
from ..surgery import decoder_layers
from .config import ProfileConfig
from .inputs import Inputs, PromptInputs, RandomInputs, RegimeInputs, load_prompts
from .memory import Footprint, memory_pass, param_bytes
from .output import ProfileResult, measurement, write_results
from .stats import ratio_ci, summary
from .timing import Runner, decoder
from .variants import Applicable, Variant, as_spec, build_model, build_variants


class ProfileError(RuntimeError):
    """A variant failed in a regime of a strict profile."""


@dataclass(frozen=True)
class Regime:
    batch: int
    prompt: int
    new: int
    kind: str

    @property
    def phase(self) -> str:
        return "decode" if self.new else "prefill"

    @property
    def max_len(self) -> int:
        """Static caches hold the longest prompt of the regime plus the new tokens."""
        return self.prompt + self.new

    def __str__(self) -> str:
        return f"{self.phase} {self.kind} b{self.batch}x{self.prompt}+{self.new}"


class Attempts:
    """Calls of variants in one regime: strict, a failure raises; else it marks the variant
    (a path that does not work, e.g. compile, is then a result, not a crash)."""

    def __init__(self, variants: Sequence[Variant], strict: bool, regime: Regime) -> None:
        self.status = {v.key: "ok" for v in variants}
        self.strict, self.regime = strict, regime

    def ok(self, v: Variant) -> bool:
        return self.status[v.key] == "ok"

    def __call__(self, v: Variant, fn: Callable[[], Any]) -> Any:
        if not self.ok(v):
            return None
        try:
            return fn()
        except Exception as e:
            msg = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
            if self.strict:
                raise ProfileError(
                    f"variant {v.key!r} failed in regime {self.regime}: {msg} "
                    "(strict profile; --keep-going / strict=False marks the row instead)"
                ) from e
            self.status[v.key] = f"error: {msg}"
        return None


# ----------------------------------------------------------------------------- one regime
def _timed(
    variants: Sequence[Variant], inputs: RegimeInputs, call: Callable, try_: Attempts, bar: Any
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {v.key: [] for v in variants}
    for r, batch in enumerate(inputs.repeats):
        live = [v for v in variants if try_.ok(v)]
        for v in live[r % len(live) :] + live[: r % len(live)] if live else []:
            t = try_(v, lambda v=v, b=batch: call(v, b)[0])
            if t is not None:
                times[v.key].append(t)
            bar.update()
    for v in variants:  # a variant that failed midway is not reported as timed
        if not try_.ok(v):
            times[v.key] = []
    return times


def _skip_ratio(v: Variant) -> float:
    if v.variant == "ceiling":
        return len(v.pattern) / len(decoder_layers(v.model))
    stats = routing_stats(v.model)
    return stats.skip_ratio if stats.total else 0.0


def measure_regime(
    runner: Runner,
    variants: Sequence[Variant],
    inputs: RegimeInputs,
    regime: Regime,
    bar: Any,
    weights: int,
    reference: dict[tuple, torch.Tensor],
) -> list[dict[str, Any]]:
    """Warm-up, memory pass, interleaved timed repeats; one row per variant."""
    try_ = Attempts(variants, runner.config.strict, regime)

    def call(v: Variant, batch: Any) -> Any:
        return runner.call(v.model, batch, regime.new, regime.kind, regime.max_len)

    with torch.inference_mode():
        for _ in range(runner.config.warmup):  # interleaved too: compiled code settles here
            for v in variants:
                try_(v, lambda v=v: call(v, inputs.warm))
                bar.update()
        feet = memory_pass(
            runner.device,
            variants,
            lambda v: call(v, inputs.memory),
            try_,
            weights,
            traced=decoder(regime.kind).traced,
            release=lambda v: runner.release(v.model),
        )
        bar.update(len(variants))
        for v in variants:
            reset_routing_stats(v.model)
        times = _timed(variants, inputs, call, try_, bar)
        skips = {v.key: _skip_ratio(v) for v in variants}
    runner.release()
    ctx = dict(regime=regime, inputs=inputs, feet=feet, times=times, level=runner.config.ci_level)
    return [
        _row(v, skip=skips[v.key], status=try_.status[v.key], **ctx)
        | {"check": _check(v, feet, regime, reference)}
        for v in variants
    ]


# ----------------------------------------------------------------------------- rows
def _ratio_cells(
    names: Sequence[str], ref: list[float], ts: list[float], level: float
) -> dict[str, Any]:
    """``names`` = (median, min, max, ci_low, ci_high) of the paired ratios ``ref / ts``."""
    got = ratio_ci(ref, ts, level)
    if got is None:
        return {}
    med, lo, hi, ci_lo, ci_hi = names
    out: dict[str, Any] = {med: got.median, lo: got.low, hi: got.high}
    if got.ci_low is not None:
        out |= {ci_lo: got.ci_low, ci_hi: got.ci_high}
    return out


def _row(
    v: Variant,
    regime: Regime,
    inputs: RegimeInputs,
    feet: dict[str, Footprint],
    times: dict[str, list[float]],
    skip: float,
    status: str,
    level: float,
) -> dict[str, Any]:
    foot, ts = feet[v.key], times[v.key]
    steps = max(regime.new - 1, 0)
    row: dict[str, Any] = {
        "method": v.method,
        "variant": v.variant,
        "routers": v.routers,
        "pattern": ",".join(map(str, v.pattern)),
        "skipped": len(v.pattern),
        "skip_ratio": round(skip, 4),
        "inputs": inputs.label,
        "phase": regime.phase,
        "cache": regime.kind,
        "batch": regime.batch,
        "prompt_len": regime.prompt,
        "prompt_tokens": round(inputs.prompt_tokens, 2),
        "new_tokens": regime.new,
        "steps": steps,
        "repeats": len(ts),
        "peak_mem_bytes": foot.peak,
        "work_mem_bytes": foot.work,
        "kv_cache_bytes": foot.kv,
        "aten_ops": foot.ops,
        "status": status,
    }
    if not ts:
        return row
    med, lo, hi, q1, q3 = summary(ts)
    row.update(time_s=med, time_s_min=lo, time_s_max=hi, time_s_q1=q1, time_s_q3=q3)
    # real (unpadded) tokens; per repeat when the repeats' batches differ in size
    tokens = [regime.batch * steps if regime.new else b.real_tokens for b in inputs.repeats]
    if len(set(tokens)) == 1:
        tps_med, tps_lo, tps_hi = tokens[0] / med, tokens[0] / hi, tokens[0] / lo
    else:
        tps = [n / t for n, t in zip(tokens, ts, strict=True)]
        tps_med, tps_lo, tps_hi = summary(tps)[0], min(tps), max(tps)
    row.update(
        tokens_per_s=tps_med,
        tokens_per_s_min=tps_lo,
        tokens_per_s_max=tps_hi,
        latency_ms=1e3 * med / (steps if regime.new else 1),
    )
    names = ("speedup", "speedup_min", "speedup_max", "speedup_ci_low", "speedup_ci_high")
    row.update(_ratio_cells(names, times.get("dense", []), ts, level))
    speedup = ratio_ci(times.get("dense", []), ts, level)
    if speedup is not None:
        row["resolved"] = speedup.resolved
    if v.variant == "mindskip":
        names = ("achieved_vs_ceiling", "achieved_min", "achieved_max")
        names += ("achieved_ci_low", "achieved_ci_high")
        ref = times.get(f"ceiling:{v.method}", [])
        row.update(_ratio_cells(names, ref, ts, level))
    return row


def _check(v: Variant, feet: dict[str, Footprint], regime: Regime, reference: dict) -> str:
    """Greedy tokens: a mindskip variant vs its ceiling; a static/compiled cache vs dynamic."""
    toks = feet[v.key].toks
    if toks is None:
        return ""
    notes = []
    ceiling = feet.get(f"ceiling:{v.method}")
    if v.variant == "mindskip" and ceiling is not None and ceiling.toks is not None:
        same = torch.equal(toks, ceiling.toks)
        notes.append("tokens == ceiling" if same else "tokens != ceiling")
    key = (v.key, regime.batch, regime.prompt, toks.shape[1])
    if regime.kind == "dynamic":
        reference[key] = toks
    elif key in reference:
        same = torch.equal(toks, reference[key])
        notes.append("tokens == dynamic" if same else "tokens != dynamic")
    return "; ".join(notes)


# ----------------------------------------------------------------------------- the run
def _pad_id(model: nn.Module) -> int:
    cfg = model.config
    for tok in (cfg.pad_token_id, cfg.eos_token_id, 0):
        tok = tok[0] if isinstance(tok, list | tuple) else tok
        if tok is not None:
            return int(tok)
    return 0


def input_source(
    config: ProfileConfig,
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor] | None = None,
) -> Inputs:
    """Random ids, ``prompts``, or the token-id file ``config.inputs``."""
    device = torch.device(config.device)
    if prompts is None and config.inputs == "random":
        return RandomInputs(int(model.config.vocab_size), config.seed, device)
    if prompts is None:
        seqs, label = load_prompts(config.inputs), Path(config.inputs).name
    else:
        seqs = [p.flatten().tolist() if isinstance(p, torch.Tensor) else list(p) for p in prompts]
        label = "prompts"
    return PromptInputs(seqs, _pad_id(model), config.seed, device, label)


def profile(
    config: ProfileConfig,
    model: nn.Module | None = None,
    methods: Mapping[str, Applicable | str | Path] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    prompts: Sequence[Sequence[int] | torch.Tensor] | None = None,
    record: Mapping[str, Any] | None = None,
) -> ProfileResult:
    """Measure every variant in every regime of ``config`` (see the module docstring).

    ``model``: the dense model (default: :func:`build_model`). ``methods``: more methods by
    name, each a trained routers folder, a method spec (applied with ``prepare_method``),
    or a callable ``prepare(model) -> model`` (``config.routers`` adds folders too).
    ``prompts``: token-id sequences to run on (overrides ``config.inputs``). ``record``:
    more top-level entries of ``profile.json`` (the workflow stores its planned method
    under ``"method"``). ``out_dir``:
    write CSV, JSON and Markdown after every regime, so a run cut short keeps what it
    measured. Raises :class:`ProfileError` when a variant fails and ``config.strict``.
    """
    threads_before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _profile(config, model, methods, out_dir, progress, prompts, record)
    finally:
        torch.set_num_threads(threads_before)


def _profile(config, model, methods, out_dir, progress, prompts, record) -> ProfileResult:
    from tqdm.auto import tqdm

    t_start, load_start = time.perf_counter(), os.getloadavg()
    dense = build_model(config) if model is None else model.eval()
    source = input_source(config, dense, prompts)
    b0, p0, _ = config.grid[0]
    calib = source.calibration(b0, p0, config.repeats)  # drawn first (random: as before)

    def calibrate(m: nn.Module) -> None:
        for b in calib:
            m(b.ids, **b.forward_kwargs())

    given = {Path(r).name: r for r in config.routers} | dict(methods or {})
    all_methods = {name: as_spec(m) for name, m in given.items()}
    with torch.inference_mode():
        variants = build_variants(config, dense, all_methods, calibrate)
    runner = Runner(config, torch.device(config.device))
    kinds = {g: config.caches if g[2] else ("dynamic",) for g in config.grid}
    per_regime = len(variants) * (config.warmup + 1 + config.repeats)
    total = sum(map(len, kinds.values())) * per_regime
    bar = tqdm(total=total, disable=not progress, desc="profile", unit="call")
    env = measurement(config, dense, source)
    result = ProfileResult([], env, config.to_dict(), dict(record or {}))
    result.env["loadavg_start"] = load_start
    weights, reference = param_bytes(dense), {}
    for (batch, prompt, new), regime_kinds in kinds.items():
        inputs = source.regime(batch, prompt, config.repeats)  # shared by every cache kind
        for kind in regime_kinds:
            regime = Regime(batch, prompt, new, kind)
            if config.budget_s is not None and time.perf_counter() - t_start > config.budget_s:
                result.env["truncated"] = f"budget_s={config.budget_s} reached before {regime}"
                break
            result.rows += measure_regime(runner, variants, inputs, regime, bar, weights, reference)
            result.env["seconds"] = round(time.perf_counter() - t_start, 1)
            result.env["loadavg_end"] = os.getloadavg()
            if out_dir is not None:
                write_results(result, out_dir)
    bar.close()
    if out_dir is not None:
        write_results(result, out_dir)
    return result
