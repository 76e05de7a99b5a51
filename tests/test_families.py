"""The family contract: every causal-LM family of the installed transformers is either
routed exactly by MindSkip or refused before any compute, naming the family and the reason.

Families are enumerated from transformers itself, so a new release's families are covered
(refused until someone adds them to the table and this test passes on them). Table families
absent from an older transformers (the floor CI) are skipped. Tiny random models, float32:
about half a minute on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from mindskip import MindSkipConfig, apply_mindskip, remove_sublayers
from mindskip.contract import (
    ROUTED,
    Outcome,
    check,
    families_in_transformers,
    run_all,
    table,
)
from mindskip.families import FAMILIES, ROUTINGS, UNITS, UnsupportedFamilyError, family

pytestmark = pytest.mark.usefixtures("one_thread")
INSTALLED = families_in_transformers()
DOCS = __import__("pathlib").Path(__file__).resolve().parents[1] / "docs" / "families.md"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, list[Outcome]]:
    """Every table family's contract, checked once for the module."""
    got: dict[str, list[Outcome]] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the one_thread fixture
    for o in run_all([k for k in INSTALLED if k in FAMILIES]):
        got.setdefault(o.model_type, []).append(o)
    torch.set_num_threads(before)
    return got


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_table_family_is_exact_or_refused(kind, outcomes):
    if kind not in INSTALLED:
        pytest.skip(f"transformers {transformers.__version__} has no family {kind!r}")
    got = outcomes[kind]
    assert len(got) == len(UNITS) * len(ROUTINGS)
    failed = [f"{o.unit} {o.routing}: {o.detail}" for o in got if o.status != _expected(o)]
    assert not failed, f"{kind}: " + " | ".join(failed)


def _expected(o: Outcome) -> str:
    return "refused" if family(o.model_type).refusal(o.unit, o.routing) else "exact"


def test_the_llama_shape_is_exact_everywhere(outcomes):
    """The families the pipeline runs on (SmolLM2 is Llama, the second model is Gemma-3)
    stay exact in every mode, sandwich norms included."""
    for kind in ("llama", "mistral", "qwen2", "gemma3_text", "gemma2", "glm4"):
        if kind not in outcomes:
            continue  # an older transformers
        assert {o.status for o in outcomes[kind]} == {"exact"}, kind


@pytest.mark.parametrize(
    ("kind", "unit", "routing", "symptom"),
    [
        ("hunyuan_v1_dense", "attn", "token", "differs from it alone"),
        ("gpt_oss", "mlp", "sequence", "crashed"),
        ("qwen3_next", "attn", "sequence", "crashed"),
    ],
)
def test_the_contract_catches_a_wrong_family(kind, unit, routing, symptom):
    """Without its refusal, a family the table refuses fails the contract: the checks bite
    (token attention on an attention built otherwise; a feed-forward that returns a tuple;
    attention missing from some layers)."""
    if kind not in INSTALLED:
        pytest.skip(f"transformers {transformers.__version__} has no family {kind!r}")
    got = check(kind, unit, routing, enforce=False)
    assert got.status == "failed" and symptom in got.detail, got


@torch.no_grad()
def test_the_contract_catches_a_norm_that_leaks_past_a_skipped_unit():
    """A norm after the sublayer that maps zero to non-zero (a LayerNorm with a bias where
    Gemma-3 has an RMSNorm) would make a skipped unit add its bias: the contract fails it,
    although all-skip still equals the hand-removed reference built the same way."""
    if "gemma3_text" not in INSTALLED:
        pytest.skip("no gemma3_text in this transformers")
    from mindskip.contract import _check_exact, tiny_model

    model = tiny_model("gemma3_text")
    for layer in model.model.layers:
        norm = torch.nn.LayerNorm(model.config.hidden_size)
        torch.nn.init.normal_(norm.bias, std=0.1)
        layer.post_attention_layernorm = norm
    failures, _ = _check_exact(model, "attn", "sequence")
    assert any("post_attention_layernorm turns a skipped sublayer's zero" in f for f in failures)
    assert _check_exact(tiny_model("gemma3_text"), "attn", "sequence")[0] == []


def test_every_other_family_is_refused_before_any_compute():
    """A family missing from the table (a new transformers' family, say) is refused, from
    its model_type alone: the model is a bare module that cannot compute anything."""
    from mindskip.contract import _Bare

    unlisted = [k for k in INSTALLED if k not in FAMILIES]
    assert unlisted, "every installed family is in the table? then this test means nothing"
    for kind in unlisted:
        model = _Bare(kind)
        for unit in UNITS:
            with pytest.raises(UnsupportedFamilyError, match=f"'{kind}'.*not in MindSkip's"):
                apply_mindskip(model, MindSkipConfig(unit=unit, layers=ROUTED))
        with pytest.raises(UnsupportedFamilyError, match=f"'{kind}'"):
            remove_sublayers(model, ROUTED, "attn")


@torch.no_grad()
def test_refusal_names_family_and_reason_and_runs_nothing():
    if "gpt_oss" not in INSTALLED:
        pytest.skip("no gpt_oss in this transformers")
    from mindskip.contract import tiny_model

    model = tiny_model("gpt_oss")
    calls: list[int] = []
    for m in model.modules():
        m.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(UnsupportedFamilyError, match="'gpt_oss'.*returns a tuple"):
        apply_mindskip(model, MindSkipConfig(unit="mlp", layers=ROUTED))
    with pytest.raises(UnsupportedFamilyError, match="'gpt_oss'.*returns a tuple"):
        remove_sublayers(model, ROUTED, "block")
    assert not calls
    assert not hasattr(model, "_mindskip_state")


def test_docs_table_is_current(outcomes):
    """docs/families.md is what ``python -m mindskip.contract`` writes for this
    transformers (checked only on the version it was written for)."""
    text = DOCS.read_text()
    if f"transformers {transformers.__version__}." not in text:
        pytest.skip("docs/families.md was written for another transformers version")
    others = run_all([k for k in INSTALLED if k not in FAMILIES])
    flat = [o for kind in sorted(outcomes) for o in outcomes[kind]] + others
    assert table(flat, transformers.__version__) == text, (
        "docs/families.md is stale: run python -m mindskip.contract"
    )
