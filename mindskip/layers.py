"""The routed decoder layer: a wrapper that owns a router and calls the stock sublayers.

It is swapped into ``model.model.layers[i]`` by :func:`mindskip.apply_mindskip`. It works
on the Llama-style decoder layer shared by Llama, Mistral and Qwen2 in transformers 5.x:
``input_layernorm -> self_attn -> residual -> post_attention_layernorm -> mlp -> residual``.

Real skipping: only the rows that execute (sequences, or tokens for token routing) are
gathered into the sublayer, and its output is scattered back. When no row executes, the
sublayer is not called. A sequence that skips a layer's attention writes no KV cache for
it. Sequence decisions are made once, at prefill, and stored on the cache object, so every
decode step reuses them.

Token routing on attention (and on the attention half of a block) skips the query side
only: every token's keys and values are still computed and cached, because later tokens
attend to them. That is the paper's semantics (the output of attention is gated per
token), computed without the skipped queries, projections and attention rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .routing import Router, RoutingContext, masked_mean, straight_through_gate

# A forced decision: True (execute), False (skip), a bool tensor (B,) or (B, T), or a
# callable (layer, batch, length) -> such a tensor. None means: the router decides.
Force = bool | torch.Tensor | Callable[["MindSkipLayer", int, int], torch.Tensor] | None

_CACHE_KEYS = ("cache", "past_key_values")  # transformers >= 5.2x renamed the argument
_DECISIONS_ATTR = "_mindskip_decisions"


@dataclass(frozen=True)
class Decision:
    """One layer's execute mask, with what the forward needs from it read once.

    ``rows`` are the executing sequences (sequence routing) or flat token indices (token
    routing). Building it costs the one host sync that gathering needs anyway; a stored
    sequence decision is then reused at every decode step with no sync at all.
    """

    mask: torch.Tensor
    rows: torch.Tensor
    all: bool
    none: bool

    @classmethod
    def of(cls, mask: torch.Tensor) -> Decision:
        rows = mask.reshape(-1).nonzero().squeeze(1)
        n = rows.numel()
        return cls(mask, rows, all=n == mask.numel(), none=n == 0)


class MindSkipLayer(GradientCheckpointingLayer):
    """A decoder layer whose ``unit`` runs only where its router says so."""

    def __init__(
        self,
        layer: nn.Module,
        layer_idx: int,
        hidden_size: int,
        unit: str,
        routing: str,
        threshold: float,
        context: RoutingContext,
    ) -> None:
        super().__init__()
        self.layer = layer
        self.layer_idx = layer_idx
        self.unit = unit
        self.routing = routing
        self.threshold = threshold
        self.context = context
        self.router = Router(hidden_size, device=execution_device(layer))
        self.full_compute_in_training = True
        # token routing, one token per sequence: compute every row and select (no host
        # sync, capturable); False: gather the executing rows (see _run_masked)
        self.masked_decode = True
        self.force: Force = None
        self.reset_stats()

    # ------------------------------------------------------------------ statistics
    def reset_stats(self) -> None:
        self.last_exec: torch.Tensor | None = None
        self.last_weight: torch.Tensor | None = None
        self.last_scores: torch.Tensor | None = None
        self.last_gate: torch.Tensor | None = None
        # running sums stay on the device (no host sync per forward); read as floats
        self._sums: torch.Tensor | None = None

    @property
    def executed_total(self) -> float:
        return 0.0 if self._sums is None else float(self._sums[0])

    @property
    def decisions_total(self) -> float:
        return 0.0 if self._sums is None else float(self._sums[1])

    def _record(self, exec_: torch.Tensor, weight: torch.Tensor, scores: torch.Tensor | None):
        self.last_exec = exec_.detach()
        self.last_weight = weight
        self.last_scores = None if scores is None else scores.detach()
        w = weight.detach().double()
        sums = torch.stack(((exec_.detach().double() * w).sum(), w.sum()))
        self._sums = sums if self._sums is None else self._sums + sums

    # ------------------------------------------------------------------ decisions
    def _forced(self, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
        f = self.force
        if f is None:
            return None
        if callable(f) and not isinstance(f, torch.Tensor):
            f = f(self, batch, length)
        shape = (batch,) if self.routing == "sequence" else (batch, length)
        if isinstance(f, bool):
            return torch.full(shape, f, dtype=torch.bool, device=device)
        f = f.to(device=device, dtype=torch.bool)
        if f.shape != shape:
            raise ValueError(
                f"layer {self.layer_idx}: forced decisions have shape {tuple(f.shape)}, "
                f"expected {shape} for {self.routing} routing"
            )
        return f

    def _stored(self, cache: Any, batch: int) -> Decision | None:
        """The sequence decision made at prefill for this cache, if any."""
        if self.routing != "sequence" or cache is None:
            return None
        stored = getattr(cache, _DECISIONS_ATTR, None)
        decision = None if stored is None else stored.get(self.layer_idx)
        if decision is not None and decision.mask.shape[0] != batch:
            raise RuntimeError(
                f"MindSkip: the cache holds decisions for {decision.mask.shape[0]} sequences "
                f"but the batch has {batch}; cache reordering or batch expansion after "
                "prefill is not supported with sequence routing"
            )
        return decision

    def _decide(self, h: torch.Tensor, cache: Any) -> tuple[Decision, torch.Tensor | None]:
        """A new decision for ``h`` (the unit's normed input), and the straight-through
        gate when training."""
        exec_, gate = self._decide_mask(h)
        decision = Decision.of(exec_)
        if self.routing == "sequence" and cache is not None:
            _store_decision(cache, self.layer_idx, decision)
        return decision, gate

    def _decide_mask(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The execute mask for ``h`` (recorded in the statistics, no host sync) and the
        straight-through gate when training."""
        batch, length, _ = h.shape
        token_mask = self.context.token_mask(batch, length, h.device)
        if self.routing == "sequence":
            weight = torch.ones(batch, device=h.device)
        else:
            weight = (
                torch.ones(batch, length, device=h.device)
                if token_mask is None
                else token_mask.float()
            )

        gate = None
        scores = None
        exec_ = self._forced(batch, length, h.device)
        if exec_ is None:
            dtype = self.router.compute_dtype
            x = masked_mean(h, token_mask, dtype) if self.routing == "sequence" else h
            train = (
                self.training and torch.is_grad_enabled() and self.router.proj.weight.requires_grad
            )
            with torch.set_grad_enabled(train):
                scores = self.router(x)
            exec_ = scores >= self.threshold
            if train:
                gate = straight_through_gate(scores, self.threshold)
        self.last_gate = gate
        self._record(exec_, weight, scores)
        return exec_.detach(), gate

    # ------------------------------------------------------------------ forward
    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return with_accelerate_hook(self.layer, self._routed_forward, hidden_states, args, kwargs)

    def _routed_forward(
        self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        if args:
            raise TypeError("MindSkipLayer takes hidden_states positionally, the rest by keyword")
        cache = next((kwargs[k] for k in _CACHE_KEYS if kwargs.get(k) is not None), None)
        x = hidden_states
        layer = self.layer
        if self.unit == "mlp":
            x = x + layer.self_attn(hidden_states=layer.input_layernorm(x), **kwargs)[0]
            norm = layer.post_attention_layernorm
        else:
            norm = layer.input_layernorm

        # decode: the sequence decision stored at prefill is looked up before any compute,
        # so a skipped unit costs nothing (not even its norm) and no host sync
        decision = self._stored(cache, x.shape[0])
        if decision is not None:
            if decision.none:
                return self._skip_all(x)
            if decision.all:
                return self._run_all(x, norm(x), kwargs)
            rows = decision.rows
            return self._run_sequences(x, norm(x.index_select(0, rows)), rows, kwargs)

        h = norm(x)
        if self.routing == "token" and x.shape[1] == 1 and self.masked_decode:
            if not (self.training and torch.is_grad_enabled()):
                return self._run_masked(x, h, self._decide_mask(h)[0], kwargs)
        decision, gate = self._decide(h, cache)
        if gate is not None and self.full_compute_in_training:
            return self._gated_full(x, h, gate, kwargs)
        # training on the executing rows only (the paper-era release) takes the gathering
        # path below with the gate (exactly 1 forward, so the values equal inference): the
        # LM loss reaches each router through the rows that execute; skipped rows cost
        # nothing and send the router no gradient
        if decision.all and gate is None:
            return self._run_all(x, h, kwargs)
        if self.routing == "token":
            return self._run_tokens(x, h, decision, kwargs, cache, gate)
        if decision.none:
            return self._skip_all(x)
        rows = decision.rows
        return self._run_sequences(x, h.index_select(0, rows), rows, kwargs, gate)

    def _run_masked(
        self, x: torch.Tensor, h: torch.Tensor, exec_: torch.Tensor, kwargs: dict
    ) -> torch.Tensor:
        """Token routing with one token per sequence (a decode step): every row computes the
        unit and ``exec_`` (B, 1) selects, so no host sync is needed (the gathering path
        needs two per layer: the executing rows and their count) and the step has fixed
        shapes (CUDA graphs). Keys and values are cached for every token, as on the
        gathering path. The cost: rows that skip are computed too (cheap at decode, where
        the weights are read once for all rows), and a step where no row executes still
        reads the unit's weights; set ``masked_decode = False`` to gather instead."""
        m = exec_.view(-1, 1, 1)
        if self.unit == "mlp":
            return torch.where(m, x + self.layer.mlp(h), x)
        x_attn = x + self._attn(h, kwargs)
        if self.unit == "attn":
            return self._mlp_tail(torch.where(m, x_attn, x))
        return torch.where(m, self._mlp_tail(x_attn), x)

    def _skip_all(self, x: torch.Tensor) -> torch.Tensor:
        """No row executes the unit: what is left of the layer."""
        return self._mlp_tail(x) if self.unit == "attn" else x

    def _attn(self, h: torch.Tensor, kwargs: dict) -> torch.Tensor:
        return self.layer.self_attn(hidden_states=h, **kwargs)[0]

    def _run_all(self, x: torch.Tensor, h: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """Every row executes: exactly the stock layer's arithmetic."""
        if self.unit == "mlp":
            return x + self.layer.mlp(h)
        return self._mlp_tail(x + self._attn(h, kwargs))  # attn, and block (the same ops)

    def _mlp_tail(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer.mlp(self.layer.post_attention_layernorm(x))

    def _gated_full(self, x: torch.Tensor, h: torch.Tensor, gate: torch.Tensor, kwargs: dict):
        """Training: compute the unit for all rows, multiply by the straight-through gate."""
        g = gate.to(x.dtype).view(*gate.shape, *([1] * (x.dim() - gate.dim())))
        if self.unit == "block":
            return x + g * (self._mlp_tail(x + self._attn(h, kwargs)) - x)
        if self.unit == "mlp":
            return x + g * self.layer.mlp(h)
        return self._mlp_tail(x + g * self._attn(h, kwargs))

    def _run_sequences(
        self,
        x: torch.Tensor,
        h_rows: torch.Tensor,
        idx: torch.Tensor,
        kwargs: dict,
        gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Some sequences execute: ``h_rows`` is the normed input of rows ``idx`` only.
        ``gate`` (training, executed rows only): the unit's contribution on those rows is
        scaled by their straight-through gate."""
        g = None if gate is None else gate.index_select(0, idx).to(x.dtype).view(-1, 1, 1)
        if self.unit == "mlp":
            return x.index_add(0, idx, _scaled(g, self.layer.mlp(h_rows)))
        out = self._attn(h_rows, _gather_kwargs(kwargs, idx, x.shape[0]))
        if self.unit == "attn":
            return self._mlp_tail(x.index_add(0, idx, _scaled(g, out)))
        x_rows = x.index_select(0, idx)
        new = self._mlp_tail(x_rows + out)
        return x.index_copy(0, idx, new if g is None else x_rows + g * (new - x_rows))

    def _run_tokens(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        decision: Decision,
        kwargs: dict,
        cache: Any,
        gate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Some tokens execute (``gate``: as in :meth:`_run_sequences`, per token)."""
        batch, length, hidden = x.shape
        flat = decision.rows
        layer = self.layer
        g = None if gate is None else gate.reshape(-1, 1).index_select(0, flat).to(x.dtype)
        if self.unit == "mlp":
            out = _scaled(g, layer.mlp(h.reshape(-1, hidden).index_select(0, flat)))
            return x.reshape(-1, hidden).index_add(0, flat, out).view(batch, length, hidden)
        if decision.none and cache is None:
            return self._skip_all(x)
        attn = _token_attention(layer.self_attn, h, decision.mask, kwargs, cache).to(x.dtype)
        if self.unit == "attn":  # zero on skipped tokens: a gate only scales the rest
            per_token = None if gate is None else gate.to(x.dtype).unsqueeze(-1)
            return self._mlp_tail(x + _scaled(per_token, attn))
        # block: the MLP half runs on executing tokens only; skipped tokens keep x
        xf = (x + attn).reshape(-1, hidden).index_select(0, flat)
        out = xf + layer.mlp(layer.post_attention_layernorm(xf))
        if g is not None:
            x0 = x.reshape(-1, hidden).index_select(0, flat)
            out = x0 + g * (out - x0)
        return x.reshape(-1, hidden).index_copy(0, flat, out).view(batch, length, hidden)


def _scaled(g: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    """``g * t``, or ``t`` itself without a gate (no extra op at inference)."""
    return t if g is None else g * t


def execution_device(layer: nn.Module) -> torch.device:
    """Where ``layer`` computes: its accelerate hook's execution device when it was
    dispatched (``device_map``; its weights may sit on ``meta`` when offloaded), else the
    device of its weights."""
    for hook in _hooks(getattr(layer, "_hf_hook", None)):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device)
    return next(layer.parameters()).device


def _hooks(hook: Any) -> list[Any]:
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])  # accelerate's SequentialHook


def with_accelerate_hook(
    layer: nn.Module, forward: Callable[..., Any], hidden_states: Any, args: tuple, kwargs: dict
) -> Any:
    """Call ``forward`` the way accelerate's hook on ``layer`` would call ``layer.forward``.

    ``device_map`` dispatch (``"auto"``, multi-GPU, CPU or disk offload) puts a hook on each
    decoder layer: before the forward it moves the inputs to the layer's device and loads
    offloaded weights, after it offloads them again. A wrapper that calls the layer's
    sublayers directly bypasses that hook, so it runs the hook's two halves itself.
    """
    hook = getattr(layer, "_hf_hook", None)
    if hook is None:
        return forward(hidden_states, *args, **kwargs)
    args, kwargs = hook.pre_forward(layer, hidden_states, *args, **kwargs)
    return hook.post_forward(layer, forward(*args, **kwargs))


def _store_decision(cache: Any, layer_idx: int, decision: Decision) -> None:
    stored = getattr(cache, _DECISIONS_ATTR, None)
    if stored is None:
        stored = {}
        setattr(cache, _DECISIONS_ATTR, stored)
        _guard_reordering(cache, stored)
    stored[layer_idx] = decision


def _guard_reordering(cache: Any, stored: dict[int, Decision]) -> None:
    """Refuse cache reordering (beam search, contrastive search) when rows are compacted.

    A layer that some sequences skipped holds fewer cache rows than the batch, so a
    reorder by batch index would scramble it. Refusing is better than wrong output.
    """

    def clear_then(original: Callable) -> Callable:
        def wrapped(*a: Any, **k: Any):
            stored.clear()  # a reset or cropped cache starts a new prompt: decide again
            return original(*a, **k)

        return wrapped

    for name in ("reset", "crop"):
        if getattr(cache, name, None) is not None:
            setattr(cache, name, clear_then(getattr(cache, name)))
    if getattr(cache, "reset", None) is not None:
        cache.reset = _dropping_dynamic_layers(cache, cache.reset)
    for name in ("reorder_cache", "batch_select_indices", "batch_repeat_interleave"):
        original = getattr(cache, name, None)
        if original is None:
            continue

        def guarded(*a: Any, _original: Callable = original, _name: str = name, **k: Any):
            if any(not d.all for d in stored.values()):
                raise NotImplementedError(
                    f"MindSkip: {_name} on a KV cache with skipped layers is not supported "
                    "(beam search, contrastive search). Use greedy or sampling decoding."
                )
            return _original(*a, **k)

        setattr(cache, name, guarded)


def _dropping_dynamic_layers(cache: Any, reset: Callable) -> Callable:
    """``reset`` that also empties the cache's dynamic layers, as transformers >= 5.2x does.

    transformers 5.17's ``DynamicLayer.reset()`` zeroes its tensors but keeps their length,
    so the next prompt is appended after the old one. A stock model hides that (it attends
    to zeros); here, a layer that the old prompt skipped (no KV) and the new one executes
    would hold fewer positions than layer 0 and the mask.
    """

    def wrapped(*a: Any, **k: Any):
        out = reset(*a, **k)
        for layer in getattr(cache, "layers", ()):
            if type(layer).__name__ == "DynamicLayer" and getattr(layer, "is_initialized", 0):
                layer.keys = layer.values = None
                layer.is_initialized = False
        return out

    return wrapped


def _gather_kwargs(kwargs: dict, idx: torch.Tensor, batch: int) -> dict:
    """Select rows ``idx`` of every batch-first tensor argument (masks, positions, RoPE)."""

    def pick(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[0] == batch:
            return v.index_select(0, idx)
        if isinstance(v, tuple) and v and all(isinstance(t, torch.Tensor) for t in v):
            return tuple(pick(t) for t in v)
        return v

    return {k: pick(v) for k, v in kwargs.items()}


def _token_attention(
    attn: nn.Module, h: torch.Tensor, exec_: torch.Tensor, kwargs: dict, cache: Any
) -> torch.Tensor:
    """Attention output (B, T, hidden) with queries computed for executing tokens only.

    Keys and values are computed (and cached) for every token. Executing queries are
    packed per sequence, keep their own positions (RoPE) and their own rows of the
    causal mask, and attend through the model's configured attention function.
    """
    module = sys.modules[type(attn).__module__]
    batch, length, hidden = h.shape
    head_dim = attn.head_dim
    cos, sin = kwargs["position_embeddings"]
    cos, sin = cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)

    k = attn.k_proj(h).view(batch, length, -1, head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(batch, length, -1, head_dim).transpose(1, 2)
    _, k = module.apply_rotary_pos_emb(k, k, cos, sin)
    # tokens already cached for this layer (a static cache is pre-sized, so not kv_len - length)
    past = cache.get_seq_length(attn.layer_idx) if cache is not None else 0
    if cache is not None:
        k, v = cache.update(k, v, attn.layer_idx)

    counts = exec_.sum(dim=1)
    n_q = int(counts.max())
    out = h.new_zeros(batch, length, hidden)
    if n_q == 0:
        return out
    ar = torch.arange(length, device=h.device)
    # executing positions first, in order; the rest after (they fill the padding slots)
    order = torch.argsort(torch.where(exec_, ar, ar + length), dim=1, stable=True)[:, :n_q]
    valid = torch.arange(n_q, device=h.device) < counts.unsqueeze(1)

    hq = h.gather(1, order.unsqueeze(-1).expand(-1, -1, hidden))
    q = attn.q_proj(hq).view(batch, n_q, -1, head_dim).transpose(1, 2)
    idx3 = order.unsqueeze(-1).expand(-1, -1, cos.shape[-1])
    q, _ = module.apply_rotary_pos_emb(q, q, cos.gather(1, idx3), sin.gather(1, idx3))

    kv_len = k.shape[-2]
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        mask = mask.expand(batch, -1, -1, -1)
        mask = mask.gather(2, order[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[-1]))
    elif mask is None:
        mask = torch.arange(kv_len, device=h.device)[None, None, :] <= (order + past)[:, :, None]
        mask = mask.unsqueeze(1)
    else:
        raise NotImplementedError(
            "MindSkip token routing on attention needs a 4-D attention mask (sdpa or eager); "
            f"got a {mask.dim()}-D mask"
        )
    impl = attn.config._attn_implementation
    fn = (
        module.eager_attention_forward if impl in (None, "eager") else ALL_ATTENTION_FUNCTIONS[impl]
    )
    o, _ = fn(
        attn,
        q,
        k,
        v,
        mask,
        dropout=0.0,
        scaling=attn.scaling,
        sliding_window=getattr(attn, "sliding_window", None),
    )
    o = attn.o_proj(o.reshape(batch, n_q, -1))
    flat = (order + torch.arange(batch, device=h.device)[:, None] * length)[valid]
    return out.view(-1, hidden).index_copy(0, flat, o[valid]).view(batch, length, hidden)
