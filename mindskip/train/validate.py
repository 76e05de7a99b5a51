"""Validation: the routed model against the dense one, on held-out records.

:func:`evaluate` scores response-token perplexity with the routers deciding (real skipping,
eval mode) or with decisions forced; :func:`validate` runs both and adds what says whether
the routers route: per-layer capacity, the logit margin from tau, the dynamic share, and
the KL from the dense model to the routed one on every real token.

The dynamic share of a layer is the share of its decisions that differ from its majority
decision, ``min(c_l, 1 - c_l)``: 0 for a layer that always (or never) runs, 0.5 for one
that runs for half of the sequences. Overall it is weighted by each layer's decisions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..capacity import dynamic_share
from ..stats import reset_routing_stats, routing_stats
from ..surgery import forced_decisions, mindskip_layers
from .examples import Example, eval_loader
from .objective import decoder_hidden, kl_sum, response_ce_sum
from .step import autocast, device_of


def _logit_margins(model: nn.Module) -> list[torch.Tensor]:
    """|router logit - logit(tau)| of the last forward's real decisions, every routed layer:
    how far decisions are from flipping (small margins flip under dtype or batch noise)."""
    out = []
    for layer in mindskip_layers(model).values():
        s, w = layer.last_scores, layer.last_weight
        if s is None or w is None:
            continue
        s = s.double().clamp(1e-12, 1 - 1e-12)
        tau = min(max(layer.threshold, 1e-12), 1 - 1e-12)
        logit = torch.log(s) - torch.log1p(-s) - math.log(tau / (1 - tau))
        out.append(logit.abs()[w.bool()].float().cpu())
    return out


def _summary(x: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(x, torch.tensor([0.1, 0.5])).tolist()
    return {"p10": q[0], "median": q[1], "below_1e-3": float((x < 1e-3).float().mean())}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    examples: Sequence[Example],
    tokenizer: Any,
    batch_size: int,
    decisions: str | None = None,
    *,
    bf16: bool = False,
    teachers: list[torch.Tensor] | None = None,
    kl_chunk: int = 1024,
    keep_hidden: bool = False,
) -> dict[str, Any]:
    """Response-token perplexity and realised capacity on ``examples`` (eval mode).

    ``decisions="execute"`` forces every routed unit to run (the dense model); None lets the
    routers decide, with real skipping. ``keep_hidden`` returns each batch's final hidden
    states (``"hidden"``); passed back as ``teachers`` (from a dense pass), they give the
    mean KL(dense || this) per real token.
    """
    was_training = model.training
    model.eval()
    device = device_of(model)
    nll, tokens, kl, kl_tokens = 0.0, 0, 0.0, 0
    reset_routing_stats(model)
    ctx = forced_decisions(model, decisions) if decisions else contextlib.nullcontext()
    margins: list[torch.Tensor] = []
    hiddens: list[torch.Tensor] = []
    with ctx, autocast(device, bf16):
        for k, batch in enumerate(eval_loader(examples, tokenizer, batch_size, device)):
            hidden = decoder_hidden(model, batch)
            loss, n = response_ce_sum(model, hidden, batch["labels"])
            nll, tokens = nll + float(loss), tokens + n
            margins += _logit_margins(model)
            if keep_hidden:
                hiddens.append(hidden)
            if teachers is not None:
                part, m = kl_sum(model, hidden, teachers[k], batch["attention_mask"], kl_chunk)
                kl, kl_tokens = kl + float(part), kl_tokens + m
    stats = routing_stats(model).to_dict()
    reset_routing_stats(model)
    model.train(was_training)
    mean = nll / max(tokens, 1)
    out = {
        "ppl": math.exp(mean),
        "nll_per_token": mean,
        "tokens": tokens,
        "sequences": len(examples),
        "capacity": stats["capacity"],
        "skip_ratio": stats["skip_ratio"],
        "capacity_per_layer": stats["capacity_per_layer"],
        "decisions_per_layer": stats["decisions_per_layer"],
        "logit_margin": _summary(torch.cat(margins)) if margins else None,
    }
    if teachers is not None:
        out["kl_to_dense"] = kl / max(kl_tokens, 1)
    if keep_hidden:
        out["hidden"] = hiddens
    return out


def validate(
    model: nn.Module,
    examples: Sequence[Example],
    tokenizer: Any,
    batch_size: int,
    *,
    bf16: bool,
    kl_chunk: int = 1024,
) -> dict[str, Any]:
    """Dense and routed scores on ``examples``; ``{"sequences": 0}`` when there are none."""
    val: dict[str, Any] = {"sequences": len(examples)}
    if not examples:
        return val
    dense = evaluate(model, examples, tokenizer, batch_size, "execute", bf16=bf16, keep_hidden=True)
    routed = evaluate(
        model,
        examples,
        tokenizer,
        batch_size,
        bf16=bf16,
        teachers=dense.pop("hidden"),
        kl_chunk=kl_chunk,
    )
    share = dynamic_share(routed["capacity_per_layer"], routed["decisions_per_layer"])
    val.update(
        ppl_dense=dense["ppl"],
        ppl_routed=routed["ppl"],
        nll_dense=dense["nll_per_token"],
        nll_routed=routed["nll_per_token"],
        kl_to_dense=routed["kl_to_dense"],
        tokens=routed["tokens"],
        capacity=routed["capacity"],
        skip_ratio=routed["skip_ratio"],
        capacity_per_layer=routed["capacity_per_layer"],
        dynamic_share=share.overall,
        dynamic_share_per_layer=share.per_layer,
        logit_margin=routed["logit_margin"],
    )
    return val
