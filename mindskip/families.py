"""The family table: which decoder families MindSkip routes exactly, and why the others are
refused.

A family is a transformers ``model_type`` (``model.config.model_type``). An entry names the
decoder layer's attention and feed-forward submodules (no attribute guessing) and, where
MindSkip cannot be exact on the family, the reason. A family missing from the table is
refused too: it has not been checked. :func:`require` refuses before any compute, naming the
family and the reason; :func:`mindskip.apply_mindskip` and :func:`mindskip.remove_sublayers`
call it.

Every entry is checked by the contract test (``tests/test_families.py``, built on
:mod:`mindskip.contract`) on a tiny random model of the family: all-execute equals the dense
model, all-skip equals the sublayer removed by hand, mixed rows equal each row alone and
cached decode equals uncached. ``python -m mindskip.contract`` writes ``docs/families.md``
from the same checks.

The routed layer (:class:`mindskip.layers.MindSkipLayer`) runs the Llama layer's arithmetic
``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, with the norms ``input_layernorm`` and
``post_attention_layernorm``. A family whose layer computes anything else (a norm after a
sublayer, no pre-norm, parallel sublayers, a feed-forward that returns a tuple) is refused.
Token routing on attention (unit ``attn`` or ``block``) also re-computes the attention's
query side (:func:`mindskip.layers._token_attention`: ``q_proj``, ``k_proj``, ``v_proj``,
rotary embedding, ``o_proj``), so an attention with anything more (q/k norms, fused
projections) is refused for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

UNITS = ("attn", "mlp", "block")
ROUTINGS = ("sequence", "token")


class UnsupportedFamilyError(TypeError):
    """MindSkip would not be exact on this model family (or it was never checked)."""


@dataclass(frozen=True)
class Family:
    """One row of the table.

    ``attention`` / ``feed_forward``: the decoder layer's submodule names. ``refused``: why
    the family is refused for every unit and routing (None: routed exactly). ``token_attention``
    / ``token_feed_forward``: why token routing of ``attn`` and ``block`` / of ``mlp`` and
    ``block`` is refused (None: exact there too).
    """

    model_type: str
    attention: str = "self_attn"
    feed_forward: str = "mlp"
    refused: str | None = None
    token_attention: str | None = None
    token_feed_forward: str | None = None

    def refusal(self, unit: str, routing: str) -> str | None:
        """Why ``unit`` with ``routing`` is refused on this family (None: exact)."""
        if self.refused:
            return self.refused
        if routing != "token":
            return None
        if unit in ("attn", "block") and self.token_attention:
            return self.token_attention
        if unit in ("mlp", "block") and self.token_feed_forward:
            return self.token_feed_forward
        return None


_QK_NORM = (
    "token routing re-computes the attention's query side (q_proj, k_proj, v_proj, rotary, "
    "o_proj), and this attention also normalises queries and keys, which that path skips"
)
_OTHER_ATTN = (
    "token routing re-computes the attention's query side (q_proj, k_proj, v_proj, rotary, "
    "o_proj), and this attention is built otherwise (fused or gated projections, extra norms, "
    "differential or partial-rotary attention)"
)
_TOKEN_MOE = (
    "token routing hands the feed-forward a flat (tokens, hidden) batch, and this mixture of "
    "experts needs (batch, length, hidden)"
)
_SANDWICH = (
    "sandwich norms: a norm after each sublayer, on its output; the routed layer runs the "
    "Llama arithmetic, which has none (all-execute would differ from dense)"
)
_POST_NORM = (
    "post-norm only: the layer normalises each sublayer's output and has no input norm; "
    "the routed layer runs the Llama arithmetic"
)
_PARALLEL = (
    "parallel blocks: attention and feed-forward both read one input norm and are added "
    "together; the routed layer runs them one after the other"
)
_HYBRID = "hybrid layers (state-space or linear attention beside attention); not supported"


def _exact(model_type: str, attn: str | None = None, moe: str | None = None) -> Family:
    return Family(model_type, token_attention=attn, token_feed_forward=moe)


def _refused(model_type: str, reason: str, **names: str) -> Family:
    return Family(model_type, refused=reason, **names)


# Checked by tests/test_families.py on tiny random models. Families not listed are refused.
_TABLE: tuple[Family, ...] = (
    _refused("afmoe", _SANDWICH),
    _refused("apertus", "its norms are attention_layernorm/feedforward_layernorm, not the "
             "input_layernorm/post_attention_layernorm that the routed layer calls"),
    _exact("arcee"),
    _exact("aria_text"),
    _exact("bitnet", attn=_OTHER_ATTN),
    _refused("cohere", _PARALLEL),
    _refused("cohere2", _PARALLEL),
    _refused("cohere2_moe", _PARALLEL),
    _exact("cwm"),
    _exact("diffllama", attn=_OTHER_ATTN),
    _exact("doge", attn=_QK_NORM),
    _exact("dots1", attn=_QK_NORM),
    _exact("ernie4_5"),
    _exact("ernie4_5_moe", moe=_TOKEN_MOE),
    _exact("exaone"),
    _refused("exaone4", _POST_NORM),
    _exact("exaone_moe", attn=_QK_NORM),
    _refused("falcon_h1", _HYBRID, feed_forward="feed_forward"),
    _refused("flex_olmo", _POST_NORM),
    _exact("flint", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("gemma"),
    _refused("gemma2", _SANDWICH),
    _refused("gemma3_text", _SANDWICH),
    _exact("glm"),
    _refused("glm4", _SANDWICH),
    _exact("glm4_moe"),
    _refused("gpt_oss", "its feed-forward (a mixture of experts) returns a tuple "
             "(hidden states, router scores); the routed layer adds it as a tensor"),
    _exact("granite"),
    _exact("granite_swa"),
    _refused("granitemoe", "the feed-forward is block_sparse_moe, not mlp; not checked",
             feed_forward="block_sparse_moe"),
    _exact("helium"),
    _exact("hunyuan_v1_dense", attn=_QK_NORM),
    _exact("hunyuan_v1_moe", attn=_QK_NORM, moe=_TOKEN_MOE),
    _refused("hyperclovax", _SANDWICH),
    _exact("internlm3"),
    _exact("iquestcoder"),
    _exact("jais2"),
    _refused("kolibri1", _SANDWICH),
    _exact("laguna", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("llama"),
    _exact("mellum", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("mimo_v2_flash", attn=_OTHER_ATTN),
    _exact("minicpm5_moe", attn=_OTHER_ATTN),
    _exact("minimax_m2", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("minimax_m3_vl_text", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("ministral"),
    _exact("ministral3"),
    _exact("mistral"),
    _exact("mixtral", moe=_TOKEN_MOE),
    _exact("nanochat", attn=_QK_NORM),
    _exact("nemotron"),
    _exact("olmo"),
    _refused("olmo2", _POST_NORM),
    _refused("olmo3", _POST_NORM),
    _exact("olmoe", attn=_QK_NORM, moe=_TOKEN_MOE),
    _exact("param2moe", attn=_QK_NORM),
    _exact("persimmon", attn=_OTHER_ATTN),
    _refused("phi", _PARALLEL),
    _exact("phi3", attn=_OTHER_ATTN),
    _exact("phimoe", moe=_TOKEN_MOE),
    _exact("qwen2"),
    _exact("qwen2_moe", moe=_TOKEN_MOE),
    _exact("qwen3", attn=_QK_NORM),
    _exact("qwen3_moe", attn=_QK_NORM, moe=_TOKEN_MOE),
    _refused("qwen3_next", _HYBRID),
    _exact("sarvam_moe", attn=_QK_NORM),
    _exact("seed_oss"),
    _exact("smollm3"),
    _exact("solar_open"),
    _exact("stablelm", attn=_OTHER_ATTN),
    _exact("starcoder2"),
    _refused("vaultgemma", "its feed-forward norm is pre_feedforward_layernorm, not the "
             "post_attention_layernorm that the routed layer calls"),
)  # fmt: skip
FAMILIES: dict[str, Family] = {f.model_type: f for f in _TABLE}


def model_type(model: nn.Module) -> str:
    """The family of ``model`` (``config.model_type``; "" when it has none)."""
    return str(getattr(getattr(model, "config", None), "model_type", "") or "")


def family(model_type: str) -> Family:
    """The table's row for ``model_type``; a family that is not listed is refused."""
    found = FAMILIES.get(model_type)
    if found is not None:
        return found
    return Family(
        model_type,
        refused="not in MindSkip's family table (mindskip/families.py), so never checked; "
        "add it there and run tests/test_families.py",
    )


def refusal(model_type: str, unit: str, routing: str) -> str | None:
    """Why ``unit`` routed by ``routing`` is refused on ``model_type`` (None: exact)."""
    return family(model_type).refusal(unit, routing)


def require(model: nn.Module, unit: str, routing: str | None = None) -> Family:
    """The model's family, or :class:`UnsupportedFamilyError` naming it and the reason.

    ``routing=None`` (hand removal, no router): only the family's own refusal counts.
    Reads the config only: nothing is computed.
    """
    kind = model_type(model)
    fam = family(kind)
    reason = fam.refused if routing is None else fam.refusal(unit, routing)
    if reason:
        what = f"unit={unit!r}" + ("" if routing is None else f", routing={routing!r}")
        raise UnsupportedFamilyError(
            f"MindSkip refuses model family {kind or '(no model_type)'!r} ({what}): {reason}"
        )
    return fam


def submodules(layer: nn.Module, fam: Family) -> tuple[nn.Module, nn.Module]:
    """The attention and feed-forward submodules of a decoder layer of family ``fam``."""
    found: list[Any] = [getattr(layer, name, None) for name in (fam.attention, fam.feed_forward)]
    if any(not isinstance(m, nn.Module) for m in found):
        raise UnsupportedFamilyError(
            f"{type(layer).__name__} of family {fam.model_type!r} lacks {fam.attention!r} or "
            f"{fam.feed_forward!r}: the family table does not match this transformers version"
        )
    return found[0], found[1]
