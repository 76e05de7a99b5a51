"""Skip-ratio measurement shared by the baselines: batching texts, running the decoder
stack, and reading the realised skip ratio from the routing statistics.

The skip ratio is the same for every method: the fraction of *all* layers' ``unit``
sublayers skipped, averaged over sequences (``routing_stats(model).skip_ratio``; 0 for a
model without routers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..stats import reset_routing_stats, routing_stats
from ..surgery import decoder_layers, mindskip_layers

Batch = Mapping[str, torch.Tensor]  # input_ids (B, T) and attention_mask (B, T), 1 = real


def max_skip_ratio(model: nn.Module) -> float:
    """The largest skip ratio the routed layers allow: ``num_routed / num_layers``."""
    return len(mindskip_layers(model)) / len(decoder_layers(model))


def realised_skip_ratio(model: nn.Module) -> float:
    """Fraction of all layers' unit sublayers skipped, over the forwards since the last
    :func:`mindskip.reset_routing_stats` (``routing_stats(model).skip_ratio``).

    0 for a model without routed layers (dense). Raises when routed layers exist but no
    forward was recorded, rather than report a misleading 0.
    """
    if not mindskip_layers(model):
        return 0.0
    stats = routing_stats(model)
    if not stats.total:
        raise ValueError("no routed forward recorded since the last reset_routing_stats")
    return stats.skip_ratio


def skip_summary(model: nn.Module) -> dict[str, Any]:
    """The skip record to store with every evaluation and profile (JSON-ready)."""
    num_layers = len(decoder_layers(model))
    if not mindskip_layers(model):
        return {"num_layers": num_layers, "skip_ratio": 0.0, "capacity_per_layer": {}}
    out = routing_stats(model).to_dict()
    out["skip_ratio"] = realised_skip_ratio(model)
    return out


def rates_from_stats(model: nn.Module) -> dict[int, float]:
    """Per-layer skip rates that the model's routers realised (for a ``random`` spec)."""
    return {i: 1.0 - c for i, c in routing_stats(model).total.items()}


def pad_batches(
    sequences: Sequence[Sequence[int]], batch_size: int, pad_id: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of token id lists, sorted by length to waste little padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(s) == 0 for s in sequences):
        raise ValueError("an empty sequence cannot be routed")
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [list(sequences[i]) for i in order[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, : len(r)] = 1
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def as_batches(
    tokenizer: Any, data: Sequence[str] | Sequence[Batch], max_length: int, batch_size: int
) -> list[Batch]:
    """``data`` as model batches: texts are tokenised (truncated to ``max_length``);
    with ``tokenizer=None``, ``data`` must already be batches (input_ids, attention_mask)."""
    if tokenizer is None:
        if not all(isinstance(b, Mapping) and "input_ids" in b for b in data):
            raise TypeError("without a tokenizer, pass batches with input_ids/attention_mask")
        return list(data)  # type: ignore[arg-type]
    if not all(isinstance(t, str) for t in data):
        raise TypeError("with a tokenizer, pass a sequence of texts")
    seqs = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in data]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_batches(seqs, batch_size, pad)


@torch.no_grad()
def _decoder_forward(model: nn.Module, batch: Batch) -> None:
    """Run the decoder stack only (no LM head: routing and similarities do not need it)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.to(device)
    pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)


def measure_skip_ratio(
    model: nn.Module,
    tokenizer: Any,
    data: Sequence[str] | Sequence[Batch],
    max_length: int = 256,
    batch_size: int = 8,
) -> float:
    """Reset the routing statistics, run ``data`` and return :func:`realised_skip_ratio`."""
    reset_routing_stats(model)
    for batch in as_batches(tokenizer, data, max_length, batch_size):
        _decoder_forward(model, batch)
    return realised_skip_ratio(model)


@torch.no_grad()
def sequence_skip_ratios(
    model: nn.Module,
    tokenizer: Any,
    data: Sequence[str] | Sequence[Batch],
    max_length: int = 256,
    batch_size: int = 8,
) -> torch.Tensor:
    """Each sequence's own skip ratio (skipped unit sublayers / all layers; for token
    routing, averaged over its real tokens), in batch order (texts are sorted by length).

    Their mean is :func:`measure_skip_ratio`; their spread gives its sampling error.
    """
    num_layers, out = len(decoder_layers(model)), []
    for batch in as_batches(tokenizer, data, max_length, batch_size):
        _decoder_forward(model, batch)
        skipped = torch.zeros(batch["input_ids"].shape[0], dtype=torch.float64)
        for layer in mindskip_layers(model).values():
            e, w = layer.last_exec, layer.last_weight
            if e.dim() == 2:
                skipped += (((~e).float() * w).sum(1) / w.sum(1).clamp_min(1)).double().cpu()
            else:
                skipped += (~e).double().cpu()
        out.append(skipped / num_layers)
    return torch.cat(out)
