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

MindSkip routes at the sublayer (:mod:`mindskip.units`): the stock decoder layer runs its
own forward and only the submodules named here are replaced, so sandwich norms (Gemma-2/3,
GLM-4), post-norm-only layers (OLMo-2/3, EXAONE-4) and parallel blocks (Cohere, Phi) are
exact by construction; what is refused is what that cannot cover: a feed-forward that
returns a tuple, attention that is not one submodule in every layer, a block beside a
state-space mixer. Token routing on attention (unit ``attn`` or ``block``) also re-computes
the attention's query side (:func:`mindskip.units.token_attention`), so an attention built
otherwise than Llama's (with optional per-head q/k norms) is refused for it.
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
    the family is refused for every unit and routing (None: routed exactly).
    ``refused_units``: (unit, why) for units refused with either routing. ``token_attention``:
    why token routing of ``attn`` and ``block`` is refused (None: exact there too).
    """

    model_type: str
    attention: str = "self_attn"
    feed_forward: str = "mlp"
    refused: str | None = None
    refused_units: tuple[tuple[str, str], ...] = ()
    token_attention: str | None = None

    def refusal(self, unit: str, routing: str | None) -> str | None:
        """Why ``unit`` with ``routing`` is refused on this family (None: exact).
        ``routing=None`` (a unit removed by hand): the family's and the unit's refusals."""
        if self.refused:
            return self.refused
        reason = dict(self.refused_units).get(unit)
        if reason or routing != "token":
            return reason
        return self.token_attention if unit in ("attn", "block") else None


_TOKEN_ATTN = (
    "token routing re-computes the attention's query side for the executing tokens only "
    "(q_proj, k_proj, v_proj, per-head q/k norms, rotary, o_proj), and this attention is "
    "built otherwise (fused or gated projections, q/k norms across heads or after the "
    "rotary embedding, differential or partial-rotary attention): the contract test finds "
    "it inexact"
)
_FF_TUPLE = (
    "its feed-forward (a mixture of experts) returns a tuple (hidden states, router scores) "
    "that the layer unpacks; a routed feed-forward returns the hidden states only"
)
_HYBRID = (
    "hybrid layers: a state-space mixer runs beside attention (and the floor transformers "
    "5.17 cannot build its tiny model in memory to check it); not supported"
)
_HYBRID_ATTN = (
    "hybrid layers: some layers hold linear attention (linear_attn) instead of self_attn, so "
    "attention is not one submodule in every layer"
)


def _exact(model_type: str, token_attn: str | None = None, **names: str) -> Family:
    return Family(model_type, token_attention=token_attn, **names)


def _units(model_type: str, reason: str, units: tuple[str, ...], **names: str) -> Family:
    return Family(model_type, refused_units=tuple((u, reason) for u in units), **names)


def _refused(model_type: str, reason: str, **names: str) -> Family:
    return Family(model_type, refused=reason, **names)


# Checked by tests/test_families.py on tiny random models. Families not listed are refused.
_TABLE: tuple[Family, ...] = (
    _exact("afmoe", _TOKEN_ATTN),
    _exact("apertus"),
    _exact("arcee"),
    _exact("aria_text"),
    _exact("bitnet", _TOKEN_ATTN),
    _exact("cohere"),
    _exact("cohere2"),
    _exact("cohere2_moe"),
    _exact("cwm"),
    _exact("diffllama", _TOKEN_ATTN),
    _exact("doge", _TOKEN_ATTN),  # exact on transformers 5.25, not on the floor 5.17
    _exact("dots1"),
    _exact("ernie4_5"),
    _exact("ernie4_5_moe"),
    _exact("exaone"),
    _exact("exaone4"),
    _exact("exaone_moe"),
    _refused("falcon_h1", _HYBRID, feed_forward="feed_forward"),
    _exact("flex_olmo", _TOKEN_ATTN),
    _exact("flint", _TOKEN_ATTN),
    _exact("gemma"),
    _exact("gemma2"),
    _exact("gemma3_text"),
    _exact("glm"),
    _exact("glm4"),
    _exact("glm4_moe"),
    _units("gpt_oss", _FF_TUPLE, ("mlp", "block")),
    _exact("granite"),
    _exact("granite_swa"),
    _exact("granitemoe", feed_forward="block_sparse_moe"),
    _exact("helium"),
    _exact("hunyuan_v1_dense", _TOKEN_ATTN),
    _exact("hunyuan_v1_moe", _TOKEN_ATTN),
    _exact("hyperclovax"),
    _exact("internlm3"),
    _exact("iquestcoder"),
    _exact("jais2"),
    _exact("kolibri1"),
    _exact("laguna", _TOKEN_ATTN),
    _exact("llama"),
    _exact("mellum"),
    _exact("mimo_v2_flash", _TOKEN_ATTN),
    _exact("minicpm5_moe", _TOKEN_ATTN),
    _exact("minimax_m2", _TOKEN_ATTN),
    _exact("minimax_m3_vl_text"),
    _exact("ministral"),
    _exact("ministral3"),
    _exact("mistral"),
    _exact("mixtral"),
    _exact("nanochat"),
    _exact("nemotron"),
    _exact("olmo"),
    _exact("olmo2", _TOKEN_ATTN),
    _exact("olmo3", _TOKEN_ATTN),
    _exact("olmoe", _TOKEN_ATTN),
    _exact("param2moe"),
    _exact("persimmon", _TOKEN_ATTN),
    _exact("phi", _TOKEN_ATTN),
    _exact("phi3", _TOKEN_ATTN),
    _exact("phimoe"),
    _exact("qwen2"),
    _exact("qwen2_moe"),
    _exact("qwen3"),
    _exact("qwen3_moe"),
    _units("qwen3_next", _HYBRID_ATTN, ("attn", "block")),
    _exact("sarvam_moe"),
    _exact("seed_oss"),
    _exact("smollm3"),
    _exact("solar_open"),
    _exact("stablelm", _TOKEN_ATTN),
    _exact("starcoder2"),
    _exact("vaultgemma"),
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
    reason = fam.refusal(unit, routing)
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
