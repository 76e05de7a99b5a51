"""One forward per batch of items: each context followed by all its choices in one row.

The row of an item is ``[left padding, context, choice_1[:-1], choice_2[:-1], ...,
right padding]``. A block-diagonal 4-D mask lets the context attend causally to itself and
each choice token attend to the context and to the earlier tokens of its own choice only;
positions restart after the context for every choice. Every choice thus sees exactly what
it would see as a continuation of the context's KV cache, so the log-likelihoods equal
those of prefill + teacher-forced continuation (the other path of
:class:`~mindskip.evaluate.shared_prefix.SharedPrefixScorer`), with no cache, no padding
between choices, and logits only from the last context token on.

Routing on the prompt: MindSkip pools its sequence decision over the tokens that the
2-D attention mask marks as real. A 4-D mask carries no such signal, so for the duration
of the call a forward pre-hook on the decoder (run after MindSkip's own) gives the
routing context a 2-D mask that marks the context tokens only. A row's decision then
depends on its context alone and covers its choices, as at decode.

Used where a custom 4-D mask reaches the attention unchanged (sdpa or eager attention, no
sliding window shorter than the row) and no layer routes tokens (token routing records
per-token statistics over the 2-D mask; it takes the cached path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .signatures import decision_signatures


def packable(model: nn.Module, row_length: int) -> bool:
    """Whether a packed row of ``row_length`` tokens gives exact scores for ``model``."""
    from mindskip.surgery import is_mindskip, mindskip_layers

    config = model.config
    window = getattr(config, "sliding_window", None)
    if not getattr(config, "use_sliding_window", True):
        window = None
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if window is not None and row_length > window:
        return False
    routed = mindskip_layers(model).values() if is_mindskip(model) else ()
    return all(layer.routing == "sequence" for layer in routed)


@contextlib.contextmanager
def pooling_mask(model: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """MindSkip layers pool over ``mask`` (B, T) during the block, whatever mask the model
    is called with (see the module docstring). A no-op for a model without routers."""
    from mindskip.surgery import is_mindskip, mindskip_layers

    if not is_mindskip(model):
        yield
        return
    context = next(iter(mindskip_layers(model).values())).context
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model

    def override(_module: nn.Module, _args: tuple, _kwargs: dict) -> None:
        context.attention_mask = mask

    handle = decoder.register_forward_pre_hook(override, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def build_rows(
    contexts: list[tuple[int, ...]], choices: list[list[tuple[int, list[int]]]], pad: int
):
    """Token ids, positions, the 4-D "may attend" mask, the context mask, the context
    width, and for each packed token its choice's id (-1: none) and target token.
    ``choices[b]`` lists ``(id, tokens)`` of the multi-token choices of item ``b``."""
    width_p = max(len(c) for c in contexts)
    spans = [sum(len(cont) - 1 for _, cont in members) for members in choices]
    total = width_p + max(spans)
    n = len(contexts)
    ids = torch.full((n, total), pad, dtype=torch.long)
    positions = torch.zeros((n, total), dtype=torch.long)
    in_context = torch.zeros((n, total), dtype=torch.bool)
    segment = torch.full((n, total), -1, dtype=torch.long)
    targets = torch.zeros((n, total), dtype=torch.long)
    for b, (ctx, members) in enumerate(zip(contexts, choices, strict=True)):
        ids[b, width_p - len(ctx) : width_p] = torch.tensor(ctx, dtype=torch.long)
        positions[b, width_p - len(ctx) : width_p] = torch.arange(len(ctx))
        in_context[b, width_p - len(ctx) : width_p] = True
        at = width_p
        for cid, cont in members:
            k = len(cont) - 1
            ids[b, at : at + k] = torch.tensor(cont[:-1], dtype=torch.long)
            positions[b, at : at + k] = len(ctx) + torch.arange(k)
            targets[b, at : at + k] = torch.tensor(cont[1:], dtype=torch.long)
            segment[b, at : at + k] = cid
            at += k
    steps = torch.arange(total)
    causal = steps[None, None, :] <= steps[None, :, None]  # key j <= query i
    keys_ctx = in_context[:, None, :]
    own = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0) & causal
    # context queries: causal over the context; the rest (choices, padding): the whole
    # context, plus a choice's own earlier tokens (padding rows never attend to nothing)
    allowed = (keys_ctx & (causal | ~in_context[:, :, None])) | own
    return ids, positions, allowed[:, None], in_context, width_p, segment, targets


def score_packed(scorer: Any, chunk: list[Any]) -> Iterator[tuple[int, tuple[float, bool]]]:
    """Score every request of ``chunk`` (prefix groups) in one forward."""
    dev = scorer.device
    rows = [(b, pos, cont) for b, g in enumerate(chunk) for pos, cont in g.members]
    members: list[list[tuple[int, list[int]]]] = [[] for _ in chunk]
    for r, (b, _, cont) in enumerate(rows):
        if len(cont) > 1:
            members[b].append((r, cont))
    ids, positions, allowed, in_context, width_p, segment, targets = build_rows(
        [g.context for g in chunk], members, scorer.pad_token_id
    )
    ids, positions, allowed, in_context = (t.to(dev) for t in (ids, positions, allowed, in_context))
    if scorer.model.config._attn_implementation != "sdpa":  # eager adds the mask
        allowed = torch.zeros(allowed.shape, device=dev).masked_fill(
            ~allowed, torch.finfo(torch.float32).min
        )
    keep = ids.shape[1] - width_p + 1  # from the last context token on
    with pooling_mask(scorer.model, in_context.long()):
        logits = scorer.forward_rows(ids, allowed, positions, keep)
    logp = F.log_softmax(logits, dim=-1, dtype=scorer.softmax_dtype)  # (B, keep, V)
    sigs = decision_signatures(scorer.model)

    seg = segment[:, width_p:].reshape(-1).to(dev)
    tgt = targets[:, width_p:].to(dev)
    valid = seg >= 0
    token_lp = logp[:, 1:].gather(-1, tgt[..., None]).reshape(-1).float()
    misses = (logp[:, 1:].argmax(-1) != tgt).reshape(-1).float()
    totals = torch.zeros(len(rows), device=dev).index_add_(0, seg[valid], token_lp[valid])
    wrong = torch.zeros(len(rows), device=dev).index_add_(0, seg[valid], misses[valid])
    b_idx = torch.tensor([b for b, _, _ in rows], device=dev)
    first = torch.tensor([cont[0] for _, _, cont in rows], device=dev)
    first_lp = (logp[:, 0][b_idx, first].float() + totals).tolist()
    best = logp[:, 0].argmax(-1).tolist()
    for (b, pos, cont), total, w in zip(rows, first_lp, wrong.tolist(), strict=True):
        if sigs is not None:
            scorer.signatures[pos] = sigs[b]
        yield pos, (float(total), best[b] == cont[0] and w == 0)
