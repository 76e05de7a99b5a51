"""Threshold calibration: choose tau so that trained routers hit a requested skip ratio
on held-out text. This is ours, not the paper's (it describes no calibration).

One function per mode: :func:`calibrate_per_layer` (every routed layer skips the same
share) and :func:`calibrate_global` (one shared tau: the routers keep their own
allocation between layers); :func:`calibrate_thresholds` picks one by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..stats import reset_routing_stats
from ..surgery import decoder_layers, forced_decisions, get_config, mindskip_layers, set_thresholds
from .skip import (
    Batch,
    _decoder_forward,
    as_batches,
    max_skip_ratio,
    pad_batches,
    realised_skip_ratio,
)

log = logging.getLogger(__name__)
CALIBRATION_MODES = ("per_layer", "global")


def _cut(scores: torch.Tensor, k: int) -> float:
    """tau such that the ``k`` lowest ``scores`` fall below it (skip: s < tau).

    Tied scores cannot be split: then tau lets the whole tied block skip or execute,
    whichever count is closer to ``k``. Between two distinct scores, tau is the midpoint.
    """
    s = scores.detach().flatten().sort().values.double()
    n = s.numel()
    if k <= 0:
        return 0.0
    if k >= n:
        return 1.0
    if s[k - 1] < s[k]:
        return float((s[k - 1] + s[k]) / 2)
    v = s[k]
    below, upto = int((s < v).sum()), int((s <= v).sum())
    if k - below <= upto - k:  # the tied block executes
        return float((s[below - 1] + v) / 2) if below else 0.0
    return float((v + s[upto]) / 2) if upto < n else 1.0


def one_batch(batches: Sequence[Batch]) -> Batch:
    """Several batches as one right-padded batch of their real tokens."""
    rows = []
    for b in batches:
        mask = b.get("attention_mask")
        mask = torch.ones_like(b["input_ids"]) if mask is None else mask
        rows += [r[m.bool()].tolist() for r, m in zip(b["input_ids"], mask, strict=True)]
    return pad_batches(rows, max(1, len(rows)))[0]


def _per_layer_pass(model: nn.Module, batch: Batch, target: float) -> dict[int, float]:
    """One forward that sets each routed layer's tau from its own scores, lowest layer
    first, so that every layer sees the skipping of the layers below it as calibrated.

    A hook on each router reads the scores of the whole batch and sets ``threshold``
    before the wrapper compares the scores with it. The routed layers skip
    ``round(target * L * N)`` of their decisions (N each) in all: each layer takes an
    even share of what is left, so a layer that could not split tied scores is made up
    for by the layers above it.
    """
    layers = mindskip_layers(model)
    num_layers, taus = len(decoder_layers(model)), {}
    done = [0]

    def hook(i: int, rank: int, scores: torch.Tensor) -> None:
        layer = layers[i]
        if scores.dim() == 2:  # token routing: real tokens only
            mask = layer.context.token_mask(*scores.shape, scores.device)
            scores = scores if mask is None else scores[mask]
        left = round(target * num_layers * scores.numel()) - done[0]
        k = min(max(round(left / (len(layers) - rank)), 0), scores.numel())
        layer.threshold = taus[i] = _cut(scores, k)
        done[0] += int((scores < taus[i]).sum())

    handles = [
        layer.router.register_forward_hook(lambda _m, _a, out, i=i, r=r: hook(i, r, out))
        for r, (i, layer) in enumerate(sorted(layers.items()))
    ]
    try:
        reset_routing_stats(model)
        _decoder_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return taus


def _scores_pass(model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """One forward over ``batches`` with the current taus; every router score, pooled."""
    reset_routing_stats(model)
    scores = []
    for batch in batches:
        _decoder_forward(model, batch)
        for layer in mindskip_layers(model).values():
            scores.append(layer.last_scores[layer.last_weight > 0].float().cpu())
    return torch.cat(scores)


def calibrate_per_layer(
    model: nn.Module, batches: Sequence[Batch], target: float, history: list[float]
) -> dict[int, float]:
    """Every routed layer skips about the same share of sequences (``target * L / n``),
    through its own tau, set from the lowest routed layer up inside ONE forward over all
    texts as one batch (a quantile needs every score of a layer before it decides). On the
    N texts the realised ratio is ``round(target * L * N) / (L * N)``, unless tied scores
    (duplicate texts) at the top routed layers cannot be split."""
    taus = _per_layer_pass(model, one_batch(batches), target)
    set_thresholds(model, taus)
    history.append(realised_skip_ratio(model))
    log.info("calibration: realised %.4f (target %.4f)", history[-1], target)
    return taus


def calibrate_global(
    model: nn.Module,
    batches: Sequence[Batch],
    target: float,
    history: list[float],
    *,
    tol: float = 0.005,
    max_iter: int = 16,
) -> dict[int, float]:
    """One tau for all routed layers, so the routers keep their own allocation between
    layers. Each forward pools all scores and proposes the tau whose quantile hits the
    target; a bracket on tau (the ratio grows with tau) falls back to bisection. Stops
    within ``tol``; after ``max_iter`` forwards it keeps the closest tau."""
    layers = mindskip_layers(model)
    share = target * len(decoder_layers(model)) / len(layers)
    tau, lo, hi = get_config(model).threshold, 0.0, 1.0
    best = (float("inf"), tau)
    for _ in range(max_iter):
        set_thresholds(model, dict.fromkeys(layers, tau))
        scores = _scores_pass(model, batches)
        history.append(realised_skip_ratio(model))
        log.info("calibration: tau %.6f realised %.4f (target %.4f)", tau, history[-1], target)
        error = abs(history[-1] - target)
        best = min(best, (error, tau))
        if error <= tol:
            break
        lo, hi = (tau, hi) if history[-1] < target else (lo, tau)
        new = _cut(scores, round(share * scores.numel()))
        tau = new if lo < new < hi and new != tau else (lo + hi) / 2
    else:
        log.warning("calibration: %d forwards, still %.4f off", max_iter, best[0])
    taus = dict.fromkeys(layers, best[1])
    set_thresholds(model, taus)
    return taus


def calibrate_thresholds(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Sequence[Batch],
    target_skip_ratio: float,
    *,
    mode: str = "global",
    max_length: int = 256,
    batch_size: int = 8,
    tol: float = 0.005,
    max_iter: int = 16,
    history: list[float] | None = None,
) -> dict[int, float]:
    """Choose tau so that the realised skip ratio on ``texts`` is ``target_skip_ratio``,
    by :func:`calibrate_global` (``mode="global"``) or :func:`calibrate_per_layer`.

    A layer's router scores depend on what the layers below it skipped, so taus are
    chosen on real forwards, and the realised ratio is that of a forward with them set.
    Sets the taus on the model and returns them. ``tokenizer=None`` takes batches;
    ``history``, when given, receives the realised ratio of every forward.
    """
    layers = mindskip_layers(model)
    if not layers:
        raise ConfigError("calibration needs routed layers (apply or load routers first)")
    if mode not in CALIBRATION_MODES:
        raise ConfigError(f"mode must be one of {CALIBRATION_MODES}, got {mode!r}")
    num_layers, limit = len(decoder_layers(model)), max_skip_ratio(model)
    if not 0.0 <= target_skip_ratio <= limit + 1e-12:
        raise ConfigError(
            f"target_skip_ratio={target_skip_ratio} is out of reach: {len(layers)} routed "
            f"of {num_layers} layers can skip at most {limit:.4f}"
        )
    if not texts:
        raise ValueError("no calibration texts")
    target = min(target_skip_ratio, limit)
    history = [] if history is None else history
    with forced_decisions(model, None):
        if mode == "per_layer":
            batches = as_batches(tokenizer, texts, max_length, max(1, len(texts)))
            return calibrate_per_layer(model, batches, target, history)
        batches = as_batches(tokenizer, texts, max_length, batch_size)
        return calibrate_global(model, batches, target, history, tol=tol, max_iter=max_iter)


def calibration_record(
    model: nn.Module,
    tokenizer: Any,
    *,
    routers: str,
    target: float,
    fit: Sequence[str],
    check: Sequence[str],
    mode: str = "global",
    max_length: int = 256,
) -> dict[str, Any]:
    """Load ``routers``, calibrate them to ``target`` on ``fit`` and check the realised ratio
    on ``check`` (other held-out texts): the JSON record the workflow keeps. Its per-layer
    rates on ``check`` describe where the calibrated routers skip."""
    from ..checkpoint import load_routers, routers_hash
    from ..provenance import stamp
    from .skip import measure_skip_ratio, rates_from_stats

    load_routers(model, routers)
    history: list[float] = []
    taus = calibrate_thresholds(
        model, tokenizer, fit, target, mode=mode, max_length=max_length, history=history
    )
    realised = measure_skip_ratio(model, tokenizer, check, max_length=max_length)
    return {
        "requested_skip_ratio": target,
        "mode": mode,
        "thresholds": {str(i): t for i, t in sorted(taus.items())},
        "realised_skip_ratio_calibration": history[-1] if history else None,
        "realised_skip_ratio_heldout": realised,
        "rates_heldout": {str(i): r for i, r in sorted(rates_from_stats(model).items())},
        "history": history,
        "routers": routers,
        "routers_sha256": routers_hash(routers),
        "n_calibration": len(fit),
        "n_heldout": len(check),
        "max_length": max_length,
        **stamp(),
    }
