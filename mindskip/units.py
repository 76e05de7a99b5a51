"""Routed units: the modules put in place of a decoder layer's attention or feed-forward.

MindSkip routes at the sublayer. The stock decoder layer keeps its own forward (its norms,
residuals and whatever else its family computes); only its attention and/or feed-forward
submodule is replaced:

- :class:`RoutedUnit` runs the stock submodule on the rows (sequences, or tokens) that its
  layer's router executes and returns zero for the others, so the layer adds nothing for a
  skipped row. A norm after the sublayer (Gemma-2/3, GLM-4, OLMo-2) maps zero to zero
  (RMSNorm has no bias), so the layer is exact by construction on every family whose
  contract test passes (:mod:`mindskip.contract`).
- :class:`RemovedUnit` returns zero for every row without calling the stock submodule: the
  sublayer removed by hand (:class:`mindskip.layers.PrunedLayer`, the static baselines).

A unit's input is what the stock layer hands its submodule: the normed residual stream for
pre-norm families (Llama's ``input_layernorm`` / ``post_attention_layernorm``, Gemma's
``pre_feedforward_layernorm``), the raw residual stream for post-norm-only families
(OLMo-2). That input is also what the router reads.

Real skipping: only executing rows are gathered into the submodule, and its output is
scattered back into zeros. A sequence that skips attention writes no KV cache for it. Token
routing on attention skips the query side only (:func:`token_attention`): every token's
keys and values are still computed and cached, because later tokens attend to them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .decisions import Decision

CACHE_KEYS = ("cache", "past_key_values")  # transformers >= 5.2x renamed the argument


def cache_of(kwargs: dict) -> Any:
    """The KV cache among a layer's or an attention's keyword arguments (None: no cache)."""
    return next((kwargs[k] for k in CACHE_KEYS if kwargs.get(k) is not None), None)


class Owner(Protocol):
    """What a unit reads from its layer (:class:`mindskip.layers.MindSkipLayer`)."""

    unit: str  # attn | mlp | block
    routing: str  # sequence | token
    deciding_kind: str  # the unit kind that makes the layer's decision
    masked_decode: bool
    full_compute_in_training: bool

    def decision_for(
        self, h: torch.Tensor, deciding: bool
    ) -> tuple[Decision, torch.Tensor | None]: ...


class RoutedUnit(nn.Module):
    """The stock attention (``kind="attn"``) or feed-forward (``"mlp"``) of a routed layer,
    run on the executing rows only; zero for the rows that skip.

    The decision comes from the layer's :class:`~mindskip.layers.MindSkipLayer` (its
    ``owner``, which holds the router and is not a submodule of this unit). In training the
    unit scales its output by the straight-through gate (a ``block`` layer gates the whole
    layer instead: :meth:`MindSkipLayer.forward`).
    """

    def __init__(self, inner: nn.Module, kind: str, owner: Owner) -> None:
        super().__init__()
        self.inner = inner
        self.kind = kind
        self.__dict__["owner"] = owner  # a back reference, not a submodule (no cycle)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            h, rest = args[0], args[1:]
        else:  # called as the stock layer calls it: hidden_states by keyword
            h, rest = kwargs.pop("hidden_states"), None
        owner: Owner = self.__dict__["owner"]
        decision, gate = owner.decision_for(h, deciding=self.kind == owner.deciding_kind)
        scale = gate if owner.unit != "block" else None
        attn = self.kind == "attn"
        cache = cache_of(kwargs) if attn else None
        if decision.rows is None:
            # a decode step of token routing: every row computes, the mask selects (no
            # host sync, fixed shapes); see MindSkipLayer.masked_decode
            out = self._inner(h, rest, kwargs)
            return self._wrap(torch.where(decision.mask.view(-1, 1, 1), out, 0.0))
        if gate is not None and owner.full_compute_in_training:
            out = self._inner(h, rest, kwargs)
            return self._wrap(out if scale is None else broadcast_gate(scale, out) * out)
        if decision.all and gate is None:
            return self._call(h, rest, kwargs)  # exactly the stock submodule
        if owner.routing == "token":
            if attn:
                if decision.none and cache is None:
                    return self._wrap(torch.zeros_like(h))
                out = token_attention(self.inner, h, decision.mask, kwargs, cache)
                return self._wrap(out if scale is None else broadcast_gate(scale, out) * out)
            return self._wrap(self._tokens(h, decision, scale))
        if decision.none:
            return self._wrap(torch.zeros_like(h))
        return self._wrap(self._sequences(h, rest, kwargs, decision.rows, scale))

    def _call(self, h: torch.Tensor, rest: tuple | None, kwargs: dict) -> Any:
        """The stock submodule on ``h``, called the way the stock layer called the unit
        (``rest`` None: ``hidden_states`` by keyword)."""
        if rest is None:
            return self.inner(hidden_states=h, **kwargs)
        return self.inner(h, *rest, **kwargs)

    def _inner(self, h: torch.Tensor, rest: tuple | None, kwargs: dict) -> torch.Tensor:
        out = self._call(h, rest, kwargs)
        return out[0] if self.kind == "attn" else out

    def _wrap(self, out: torch.Tensor) -> Any:
        """What the stock submodule returns: attention ``(output, weights)``."""
        return (out, None) if self.kind == "attn" else out

    def _sequences(
        self,
        h: torch.Tensor,
        rest: tuple | None,
        kwargs: dict,
        rows: torch.Tensor,
        gate: torch.Tensor | None,
    ) -> torch.Tensor:
        batch = h.shape[0]
        out = self._inner(
            h.index_select(0, rows),
            gather_rows(rest, rows, batch),
            gather_rows(kwargs, rows, batch),
        )
        if gate is not None:
            out = gate.index_select(0, rows).to(out.dtype).view(-1, 1, 1) * out
        return out.new_zeros((batch, *out.shape[1:])).index_copy(0, rows, out)

    def _tokens(self, h: torch.Tensor, decision: Decision, gate: torch.Tensor | None):
        """Feed-forward on the executing tokens, handed over as one (1, tokens, hidden)
        sequence (a mixture of experts reads its input as (batch, length, hidden))."""
        batch, length, hidden = h.shape
        flat = decision.rows
        out = self.inner(h.reshape(-1, hidden).index_select(0, flat).unsqueeze(0))[0]
        if gate is not None:
            out = gate.reshape(-1, 1).index_select(0, flat).to(out.dtype) * out
        zeros = out.new_zeros(batch * length, out.shape[-1])
        return zeros.index_copy(0, flat, out).view(batch, length, -1)


class RemovedUnit(nn.Module):
    """A sublayer removed by hand: zero for every row, and the stock submodule (kept as
    ``inner``, so the weights and the state dict stay) is never called."""

    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner = inner
        self.kind = kind

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        return (torch.zeros_like(h), None) if self.kind == "attn" else torch.zeros_like(h)


def keep_offload_names(layer: nn.Module) -> None:
    """Let accelerate's hooks inside ``layer`` find their offloaded weights again.

    A dispatched model (``device_map`` with CPU or disk offload) keeps its hooks' weights
    under the names the weights had at dispatch (``self_attn.q_proj.weight``); a unit puts
    the stock submodule one level down (``self_attn.inner.q_proj.weight``). The hooks'
    weight maps are given a view that also answers to the new names."""
    for module in layer.modules():
        hook = getattr(module, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            weights = getattr(h, "weights_map", None)
            if weights is not None and not isinstance(weights, _UnitNames):
                h.weights_map = _UnitNames(weights)


class _UnitNames(Mapping):
    """A weight map that also answers to a name with the units' ``inner`` left out."""

    def __init__(self, base: Mapping) -> None:
        self.base = base

    @staticmethod
    def _stock(key: str) -> str:
        return ".".join(p for p in key.split(".") if p != "inner")

    def __getitem__(self, key: str) -> Any:
        if key in self.base:
            return self.base[key]
        return self.base[self._stock(key)]

    def __contains__(self, key: object) -> bool:
        return key in self.base or (isinstance(key, str) and self._stock(key) in self.base)

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def broadcast_gate(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A gate (B,) or (B, T) shaped to multiply ``like`` (B, T, hidden)."""
    return g.to(like.dtype).view(*g.shape, *([1] * (like.dim() - g.dim())))


def gather_rows(values: Any, idx: torch.Tensor, batch: int) -> Any:
    """Rows ``idx`` of every batch-first tensor in ``values`` (a dict, tuple or tensor:
    masks, positions, RoPE tables); anything else is passed as it is."""
    if isinstance(values, dict):
        return {k: gather_rows(v, idx, batch) for k, v in values.items()}
    if isinstance(values, torch.Tensor):
        if values.dim() >= 2 and values.shape[0] == batch:
            return values.index_select(0, idx)
        return values
    if isinstance(values, tuple) and all(isinstance(t, torch.Tensor) for t in values):
        return tuple(gather_rows(t, idx, batch) for t in values)
    return values


def token_attention(
    attn: nn.Module, h: torch.Tensor, exec_: torch.Tensor, kwargs: dict, cache: Any
) -> torch.Tensor:
    """Attention output (B, T, hidden) with queries computed for executing tokens only,
    zero for the others.

    Keys and values are computed (and cached) for every token. Executing queries are
    packed per sequence, keep their own positions (RoPE) and their own rows of the
    causal mask, and attend through the model's configured attention function. The
    attention must be built like Llama's (``q_proj``, ``k_proj``, ``v_proj``, rotary,
    ``o_proj``), optionally with per-head ``q_norm`` / ``k_norm`` (Qwen3, Gemma-3) and a
    logit soft cap (Gemma-2); :mod:`mindskip.families` refuses the others.
    """
    module = sys.modules[type(attn).__module__]
    batch, length, hidden = h.shape
    head_dim = attn.head_dim
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    cos, sin = kwargs["position_embeddings"]
    cos, sin = cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)

    k = attn.k_proj(h).view(batch, length, -1, head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(batch, length, -1, head_dim).transpose(1, 2)
    if k_norm is not None:
        k = k_norm(k)
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
    if q_norm is not None:
        q = q_norm(q)
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
    extra = {}
    softcap = getattr(attn, "attn_logit_softcapping", None)
    if softcap is not None:
        extra["softcap"] = softcap
    o, _ = fn(
        attn,
        q,
        k,
        v,
        mask,
        dropout=0.0,
        scaling=attn.scaling,
        sliding_window=getattr(attn, "sliding_window", None),
        **extra,
    )
    o = attn.o_proj(o.reshape(batch, n_q, -1))
    flat = (order + torch.arange(batch, device=h.device)[:, None] * length)[valid]
    return out.view(-1, hidden).index_copy(0, flat, o[valid]).view(batch, length, hidden)
