"""Router-Tuning: only routers move, the capacity penalty works, labels cover the response
only, metrics are complete, runs are deterministic. Tiny random models, offline tokenizer.

``train_routers`` takes its training and validation records from the caller (the held-out
split is :func:`mindskip.data.split.split_records`); here the last 8 records validate."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import make_model
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mindskip import MindSkipConfig, apply_mindskip, load_routers, mindskip_layers
from mindskip.train import (
    IGNORE_INDEX,
    METRICS_FILE,
    TrainConfig,
    encode_record,
    format_record,
    records_sha256,
    train_routers,
)

SPECIAL = ["<pad>", "<s>", "</s>", "[UNK]", "<|user|>", "<|assistant|>", "<|end|>", "###"]
WORDS = (
    "the a cat dog sat ran on under mat tree red blue big small one two three four five "
    "yes no answer question what is which and or not sort count these words Instruction: "
    "Input: Response: please list"
).split()
CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate([*SPECIAL, *WORDS])}
    assert len(vocab) <= 97
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="[UNK]",
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[4:7]})
    if chat:
        fast.chat_template = CHAT
    return fast


def make_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    content = WORDS[:28]
    out = []
    for _ in range(n):
        out.append(
            {
                "instruction": " ".join(rng.choices(content, k=rng.randint(3, 6))),
                "input": " ".join(rng.choices(content, k=rng.randint(0, 8))),
                "output": " ".join(rng.choices(content, k=rng.randint(1, 5))),
            }
        )
    return out


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


FAST = dict(global_batch=8, micro_batch=4, max_length=48, progress=False)


def test_label_mask_is_response_only():
    tok = make_tokenizer()
    rec = {"instruction": "sort these words", "input": "cat dog", "output": "the cat sat"}
    prompt, response = format_record(tok, rec)
    assert prompt == "<|user|> sort these words\n\ncat dog <|end|> <|assistant|> "
    assert response.startswith("the cat sat")
    ex = encode_record(tok, rec, max_length=64)
    labelled = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert tok.decode(labelled, skip_special_tokens=True) == rec["output"]
    assert tok.convert_ids_to_tokens(labelled)[-1] == "<|end|>"  # the end-of-turn is learnt
    n_prompt = ex["labels"].index(labelled[0])
    assert (
        tok.decode(ex["input_ids"][:n_prompt], skip_special_tokens=True)
        == "sort these words cat dog"
    )
    assert len(ex["input_ids"]) == len(ex["labels"])
    # no input: the user turn is the instruction alone
    assert (
        format_record(tok, {**rec, "input": ""})[0]
        == "<|user|> sort these words <|end|> <|assistant|> "
    )
    # truncation: the response is cut first; a record with no response left is dropped
    short = encode_record(tok, rec, max_length=n_prompt + 1)
    assert [t for t in short["labels"] if t != IGNORE_INDEX] == labelled[:1] and short["truncated"]
    assert encode_record(tok, rec, max_length=n_prompt) is None


def test_plain_template_without_chat_template():
    tok = make_tokenizer(chat=False)
    rec = {"instruction": "count these words", "input": "", "output": "two"}
    prompt, response = format_record(tok, rec)
    assert prompt == "### Instruction:\ncount these words\n\n### Response:\n"
    assert response == "two</s>" or response == "two" + tok.eos_token
    ex = encode_record(tok, rec, max_length=64)
    labelled = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert tok.decode(labelled, skip_special_tokens=True) == "two"
    assert labelled[-1] == tok.eos_token_id


def test_trains_on_the_records_it_is_given(tmp_path):
    recs = make_records(40)
    _, _, m = _train(tmp_path, MindSkipConfig(num_routed=4), "given")
    assert m["data"]["sha256"] == records_sha256(recs[:32])
    assert m["data"]["val_sha256"] == records_sha256(recs[32:])
    assert m["data"]["train_records"] == 32 and m["data"]["val_records"] == 8


def _train(tmp_path, cfg: MindSkipConfig, name: str, **train_kwargs):
    model = make_model()
    apply_mindskip(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tc = TrainConfig(**{**FAST, "lr": 1e-2, **train_kwargs})
    recs = make_records(40)
    metrics = train_routers(model, make_tokenizer(), recs[:32], recs[32:], cfg, tc, tmp_path / name)
    return model, before, metrics


def test_only_routers_move_and_metrics_complete(tmp_path):
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=1.0, capacity_target=0.5)
    model, before, metrics = _train(tmp_path, cfg, "run")
    changed_routers = 0
    for name, p in model.named_parameters():
        if ".router." in name:
            changed_routers += not torch.equal(p, before[name])
        else:
            assert torch.equal(p, before[name]), name  # bit-identical
            assert not p.requires_grad
    assert changed_routers == 4
    assert metrics["autograd_below_lowest_routed"] is False
    assert metrics["trainable_parameters"] == metrics["router_parameters"] == 4 * 32

    on_disk = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    for key in (
        "loss_curve",
        "log",
        "final_capacity",
        "val",
        "target_reached",
        "tokens_seen",
        "wall_time_s",
        "train_time_s",
        "peak_memory",
        "seed",
        "train_config",
        "mindskip_config",
        "versions",
        "data",
        "routers_sha256",
        "objective",
        "penalty",
        "init",
        "provenance",
        "response_tokens_seen",
        "min_capacity_after_warmup",
    ):
        assert key in on_disk, key
    assert len(on_disk["loss_curve"]) == on_disk["optimizer_steps"] == 4  # 32 train / 8
    assert set(on_disk["log"][0]["capacity_per_layer"]) == {"1", "2", "3", "4"}
    for key in (
        "ppl_dense",
        "ppl_routed",
        "capacity",
        "capacity_per_layer",
        "logit_margin",
        "dynamic_share",
        "dynamic_share_per_layer",
        "kl_to_dense",
    ):
        assert key in on_disk["val"], key
    for entry in on_disk["log"]:
        for key in ("step", "lr", "loss", "lm_loss", "capacity_loss", "capacity", "grad_norm"):
            assert key in entry, key
    per = on_disk["val"]["capacity_per_layer"]
    assert on_disk["val"]["dynamic_share_per_layer"] == {k: min(c, 1 - c) for k, c in per.items()}
    assert on_disk["objective"] == "lm" and on_disk["penalty"] == "global"
    assert on_disk["init"]["init"] == TrainConfig().init
    assert set(on_disk["provenance"]) >= {"versions", "environment", "seed"}
    assert on_disk["val"]["sequences"] == 8
    assert set(on_disk["versions"]) >= {"torch", "transformers", "mindskip"}
    assert on_disk["data"]["train_examples"] == 32 and len(on_disk["data"]["sha256"]) == 64
    assert on_disk["peak_memory"]["bytes"] > 0
    assert TrainConfig.from_dict(on_disk["train_config"]).lr == 1e-2
    assert MindSkipConfig.from_dict(on_disk["mindskip_config"]) == cfg
    assert isinstance(on_disk["target_reached"], bool)

    # the saved routers reproduce the trained ones
    reloaded = load_routers(make_model(), tmp_path / "run")
    for i, layer in mindskip_layers(model).items():
        assert torch.equal(
            mindskip_layers(reloaded)[i].router.proj.weight, layer.router.proj.weight
        )


def test_capacity_penalty_lowers_capacity(tmp_path):
    caps = {}
    for lam in (0.0, 5.0):
        cfg = MindSkipConfig(num_routed=4, capacity_lambda=lam)
        _, _, m = _train(tmp_path, cfg, f"lam{lam}", epochs=3)
        caps[lam] = m["val"]["capacity"]
    assert caps[5.0] < caps[0.0] - 0.2


def test_relu_target_penalises_only_capacity_above_target(tmp_path):
    # target 1.0: relu(capacity - 1) is always 0, so training equals lambda = 0 training
    free, _, m_free = _train(tmp_path, MindSkipConfig(num_routed=4), "free")
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=5.0, capacity_target=1.0)
    capped, _, m_capped = _train(tmp_path, cfg, "capped")
    assert m_capped["loss_curve"] == m_free["loss_curve"]
    assert all(e["capacity_loss"] == 0.0 for e in m_capped["log"])
    for i, layer in mindskip_layers(free).items():
        assert torch.equal(layer.router.proj.weight, mindskip_layers(capped)[i].router.proj.weight)
    # a target below the capacity: the term is lambda * (capacity - target) and pushes down
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=5.0, capacity_target=0.5)
    _, _, m = _train(tmp_path, cfg, "target", epochs=3, init_spread=0.0)  # starts fully dense
    first = m["log"][0]
    assert first["capacity"] == 1.0 and first["capacity_loss"] == pytest.approx(5.0 * 0.5)
    assert m["val"]["capacity"] < 0.9
    assert m["target_reached"] == (abs(m["val"]["capacity"] - 0.5) <= 0.05)


def test_missed_target_is_flagged(tmp_path, caplog):
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=0.0, capacity_target=0.1)
    with caplog.at_level("WARNING"):
        _, _, m = _train(tmp_path, cfg, "miss", lr=1e-6)
    assert m["target_reached"] is False
    assert "TARGET NOT REACHED" in caplog.text


def test_deterministic_for_a_seed(tmp_path):
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=1.0)
    a, _, ma = _train(tmp_path, cfg, "a")
    b, _, mb = _train(tmp_path, cfg, "b")
    assert ma["loss_curve"] == mb["loss_curve"]
    for i, layer in mindskip_layers(a).items():
        assert torch.equal(layer.router.proj.weight, mindskip_layers(b)[i].router.proj.weight)


def test_token_routing_trains(tmp_path):
    cfg = MindSkipConfig(routing="token", num_routed=2, capacity_lambda=5.0)
    _, _, m = _train(tmp_path, cfg, "token", epochs=2)
    assert m["val"]["capacity"] < 1.0
    assert 0.0 <= m["final_capacity"] <= 1.0


def test_existing_routers_must_match_config():
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    with pytest.raises(ValueError, match="already has routers"):
        train_routers(
            model,
            make_tokenizer(),
            make_records(8),
            make_records(2),
            MindSkipConfig(num_routed=2),
            TrainConfig(**FAST),
        )


def test_train_config_validation():
    with pytest.raises(ValueError, match="global_batch"):
        TrainConfig(global_batch=10, micro_batch=4)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    for field, bad in (
        ("objective", "mse"),
        ("penalty", "sum"),
        ("init", "random"),
        ("init_margin", -1.0),
        ("penalty_warmup_ratio", 1.0),
        ("distill_chunk", 0),
    ):
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{field: bad})
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_lora_with_routers(tmp_path):
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=1.0)
    model, before, m = _train(tmp_path, cfg, "lora", lora_r=2)
    params = dict(model.named_parameters())
    lora_b = [p for n, p in params.items() if "lora_B" in n]
    assert lora_b and any(bool(p.abs().sum() > 0) for p in lora_b)  # B starts at zero
    for name, old in before.items():
        key = name if name in params else name.replace("_proj.weight", "_proj.base_layer.weight")
        new = params[key]
        assert torch.equal(new, old) or ".router." in name, name
    assert m["trainable_parameters"] > m["router_parameters"]
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert m["lora"]["mode"] == "joint" and len(m["lora"]["sha256"]) == 64


def test_routed_validation_matches_training_forward(tmp_path):
    """Validation (eval mode, real skipping) scores what training saw (gated full compute)."""
    from conftest import randomise_routers

    from mindskip.train import collate, evaluate, lm_loss_sum

    cfg = MindSkipConfig(num_routed=4)
    model = apply_mindskip(make_model(), cfg)
    randomise_routers(model, scale=30.0)
    tok = make_tokenizer()
    examples = [encode_record(tok, r, 48) for r in make_records(8)]
    got = evaluate(model, examples, tok, batch_size=8)
    assert 0.0 < got["capacity"] < 1.0  # some sequences skip
    model.train()
    loss, n = lm_loss_sum(
        model, collate(sorted(examples, key=lambda e: len(e["input_ids"])), tok, "cpu")
    )
    assert all(layer.last_gate is not None for layer in mindskip_layers(model).values())
    assert got["nll_per_token"] == pytest.approx(float(loss.detach()) / n, rel=1e-5)


def test_benchmark_training_cost_runs_both_modes():
    from mindskip.train import benchmark_training_cost

    model = make_model()
    res = benchmark_training_cost(
        model, make_tokenizer(), make_records(8), MindSkipConfig(num_routed=4), steps=1
    )
    assert res["routers"]["trainable_parameters"] == 4 * 32
    assert res["full"]["trainable_parameters"] > 1000
    assert res["routers"]["autograd_below_lowest_routed"] is False
    assert res["full"]["autograd_below_lowest_routed"] is True
    assert res["routers"]["step_s_mean"] > 0 and res["routers"]["peak_bytes"] > 0
    assert not any(p.requires_grad for p in model.parameters())
