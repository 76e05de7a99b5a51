"""The authors' released recipes as presets, and the settings they need: the executed-only
training forward (tests/test_core.py), the bf16 router, the per-sequence loss and the
authors' text template."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_model
from test_train import make_records, make_tokenizer

from mindskip import MindSkipConfig, apply_mindskip, mindskip_layers
from mindskip.config import ConfigError
from mindskip.plan import plan
from mindskip.presets import PRESETS, expand_preset
from mindskip.routing import Router, masked_mean
from mindskip.schema import validated
from mindskip.train import TrainConfig, encode_record
from mindskip.train.objective import response_ce_by_sequence, response_ce_sum

ROOT = Path(__file__).resolve().parents[1]


def _config(*entries) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["routers"] = [*config["routers"][:1], *entries]
    return validated(config)


ENTRY = {"unit": "attn", "routing": "sequence", "num_routed": 16, "data": "long"}


def test_a_preset_entry_runs_the_released_recipe_and_is_a_variant():
    p = plan(_config({**ENTRY, "preset": "authors", "train_samples": 1000, "ratios": [0.25]}))
    ours, authors = p.runs.values()
    assert "-authors-" in authors.slug and "authors" not in ours.slug
    e = authors.entry
    assert (e["capacity_lambda"], e["capacity_target"]) == (0.0, None)
    assert e["full_compute_in_training"] is False and e["router_dtype"] == "bfloat16"
    recipe = yaml.safe_load((ROOT / "config.yaml").read_text())["recipe"] | e["recipe"]
    cfg = TrainConfig.from_dict({k: v for k, v in recipe.items() if k != "val_count"})
    assert (cfg.lr, cfg.adam_beta1, cfg.global_batch, cfg.micro_batch) == (1e-5, 0.9, 64, 1)
    assert (cfg.init, cfg.loss_reduction, cfg.template, cfg.max_length) == (
        "zero", "sequence", "authors", 2048,
    )  # fmt: skip
    router = p.method(authors.slug)
    assert router.variant == "authors"  # not a standard run: the claims compare ours
    # the entry's own changes lie on top of the preset and name the run
    p2 = plan(_config({**ENTRY, "preset": "authors-v2", "recipe": {"lr": 1e-4}}))
    v2 = list(p2.runs.values())[1]
    assert v2.entry["recipe"]["lr"] == 1e-4 and v2.entry["recipe"]["penalty"] == "per_layer"
    assert v2.entry["full_compute_in_training"] is True
    assert p2.method(v2.slug).variant == "authors-v2,lr=0.0001"
    # an entry without a preset is untouched
    assert expand_preset(ENTRY) == ENTRY


def test_an_unknown_preset_is_refused_before_any_compute():
    with pytest.raises(Exception, match="authors"):
        _config({**ENTRY, "preset": "authors-v3"})
    with pytest.raises(ValueError, match="unknown recipe preset"):
        expand_preset({**ENTRY, "preset": "nope"})
    assert set(PRESETS) == {"authors", "authors-v2"}


def test_a_bf16_router_rounds_a_score_near_tau_to_tau_and_a_float32_one_does_not():
    x = torch.full((1, 1, 8), 1.0)
    for dtype, executes in ((torch.float32, False), (torch.bfloat16, True)):
        r = Router(8, compute_dtype=dtype)
        torch.nn.init.constant_(r.proj.weight, -1e-4)  # logit -8e-4: sigmoid 0.4998
        score = r(masked_mean(x, None, dtype))
        assert score.dtype == torch.float32 and r.proj.weight.dtype == torch.float32
        assert bool(score >= 0.5) is executes
    with pytest.raises(ConfigError, match="router_dtype"):
        MindSkipConfig(router_dtype="float16")
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=2, router_dtype="bfloat16"))
    assert {m.router.compute_dtype for m in mindskip_layers(model).values()} == {torch.bfloat16}
    again = MindSkipConfig.from_dict(MindSkipConfig(router_dtype="bfloat16").to_dict())
    assert again.router_dtype == "bfloat16"


def test_the_authors_template_is_plain_text_with_the_loss_on_the_answer():
    tok = make_tokenizer(chat=True)  # a chat template exists and is not used
    record = {"instruction": "the cat sat", "input": "", "output": "red dog"}
    ex = encode_record(tok, record, 64, template="authors")
    text = tok.decode(ex["input_ids"])
    assert text.startswith("<|user|>") and "<|assistant|>" in text and "<|end|>" not in text
    answer = [t for t, y in zip(ex["input_ids"], ex["labels"], strict=True) if y != -100]
    assert tok.decode(answer).split() == ["red", "dog", "</s>"]
    chat = encode_record(tok, record, 64)
    assert chat["input_ids"] != ex["input_ids"]
    with pytest.raises(ValueError, match="template"):
        TrainConfig(template="alpaca")


def test_the_per_sequence_loss_weighs_every_sequence_the_same():
    torch.manual_seed(0)
    model = make_model()
    hidden = torch.randn(2, 6, model.config.hidden_size)
    labels = torch.tensor([[-100, 5, 6, 7, 8, 9], [-100, -100, -100, -100, 3, -100]])
    seq, total, n = response_ce_by_sequence(model, hidden, labels)
    ref, n_ref = response_ce_sum(model, hidden, labels)
    assert n == n_ref == 6 and torch.allclose(total, ref)
    # the long sequence's 5 tokens and the short one's 1 token each count as one mean
    logits = model.get_output_embeddings()(hidden[:, :-1]).float()
    ce = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
    )
    expected = ce[0, :].sum() / 5 + ce[1, 3]
    assert torch.allclose(seq, expected)
    with pytest.raises(ValueError, match="loss_reduction"):
        TrainConfig(loss_reduction="mean")


def test_records_stay_unchanged_by_formatting():
    records = make_records(3)
    before = copy.deepcopy(records)
    tok = make_tokenizer()
    for r in records:
        encode_record(tok, r, 32, template="authors")
    assert records == before


def test_the_authors_recipe_trains_end_to_end_and_keeps_capacity_at_one(tmp_path):
    """lambda 0 and a zero start: every router starts at exactly tau and nothing pushes it
    down, so the released recipe skips nothing in training (the paper's 50% is reached
    only by a threshold afterwards)."""
    from test_train import FAST

    from mindskip.train import train_routers

    preset = PRESETS["authors"]
    cfg = MindSkipConfig(num_routed=4, **preset.routing)
    recipe = {**preset.recipe, **FAST, "global_batch": 8, "micro_batch": 1}
    model = apply_mindskip(make_model(), cfg)
    recs = make_records(40)
    m = train_routers(model, make_tokenizer(), recs[:32], recs[32:], cfg, TrainConfig(**recipe))
    assert m["optimizer_steps"] == 4
    assert m["final_capacity"] == m["min_capacity_after_warmup"] == 1.0
    assert m["mindskip_config"]["router_dtype"] == "bfloat16"
    assert m["mindskip_config"]["full_compute_in_training"] is False


def test_a_routing_setting_given_on_the_entry_departs_from_its_preset():
    entry = {**ENTRY, "preset": "authors", "router_dtype": "float32"}
    p = plan(_config({**ENTRY, "preset": "authors"}, entry))
    _, released, fp32 = p.runs.values()
    assert released.entry["router_dtype"] == "bfloat16"
    assert fp32.entry["router_dtype"] == "float32" and "-authors-float32-" in fp32.slug
    assert fp32.entry["full_compute_in_training"] is False  # the rest stays the preset's
    assert p.method(fp32.slug).variant == "authors,router_dtype=float32"


def test_a_capacity_penalty_given_on_the_entry_departs_from_its_preset():
    penalised = {**ENTRY, "preset": "authors", "capacity_target": 0.5, "capacity_lambda": 10.0}
    p = plan(_config({**ENTRY, "preset": "authors"}, penalised))
    _, released, pen = p.runs.values()
    assert released.entry["capacity_lambda"] == 0.0 and released.entry["capacity_target"] is None
    assert "-capacity" not in released.slug  # leaving them out keeps the preset's
    assert pen.entry["capacity_lambda"] == 10.0 and pen.entry["capacity_target"] == 0.5
    assert pen.entry["router_dtype"] == "bfloat16"  # the rest stays the preset's
    assert "-c0.5-" in pen.slug and "capacity_lambda10.0" in pen.slug
    assert p.method(pen.slug).variant == "authors,capacity_lambda=10.0,capacity_target=0.5"


def test_dual_control_without_a_target_is_refused_by_the_plan():
    dual = {**ENTRY, "recipe": {"capacity_control": "dual"}}
    with pytest.raises(ValueError, match="entry 1: capacity_control='dual' .*capacity_target"):
        plan(_config(dual))
    plan(_config({**dual, "capacity_target": 0.5, "capacity_lambda": 10.0}))  # with one: fine
