"""Router tuning that stays in control: the default start does not collapse at step 1, the
per-layer penalty, the distillation loss, and float32 decisions under bf16 autocast."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_model, randomise_routers
from test_train import FAST, make_records, make_tokenizer

from mindskip import (
    MindSkipConfig,
    Router,
    apply_mindskip,
    mindskip_layers,
    reset_routing_stats,
    routing_stats,
)
from mindskip.report import build_training_report
from mindskip.report.readme import capacity_readme
from mindskip.routing import masked_mean
from mindskip.train import (
    TrainConfig,
    capacity_multiplier,
    capacity_penalty,
    collate,
    encode_records,
    kl_sum,
    layer_capacities,
    teacher_hidden,
    train_routers,
)
from mindskip.train.objective import decoder_hidden

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
ROOT = Path(__file__).resolve().parents[1]

# lambda 10 against target 0.5, as the default run: the first step pushes every router down
PUSH = MindSkipConfig(num_routed=4, capacity_lambda=10.0, capacity_target=0.5)


def _two_steps(**recipe) -> list[dict]:
    model = make_model()
    recs = make_records(24)
    cfg = TrainConfig(**{**FAST, "lr": 1e-2, "warmup_ratio": 0.0, **recipe})
    m = train_routers(model, make_tokenizer(), recs[:16], recs[16:], PUSH, cfg)
    return m["log"]


def test_default_start_does_not_collapse_at_step_1():
    """Step 2's forward runs the routers after one full-lr update (no lr warm-up here)."""
    log = _two_steps()
    assert log[0]["capacity"] >= 0.9  # starts (nearly) dense: the spread puts a few below
    assert log[0]["lr"] > 0 and log[0]["capacity_loss"] > 0  # the update pushed down
    assert log[1]["capacity"] >= 0.8
    assert _two_steps(init_spread=0.0)[1]["capacity"] >= 0.9  # the margin alone
    # the paper's start (zero routers, every score on tau) flips nearly everything at once
    zero = _two_steps(init="zero")
    assert zero[0]["capacity"] == 1.0 and zero[1]["capacity"] <= 0.1


def test_margin_start_is_dense_and_recorded():
    model = apply_mindskip(make_model(), PUSH)
    recs = make_records(24)
    cfg = TrainConfig(**FAST, init_spread=0.0)
    m = train_routers(model, make_tokenizer(), recs[:16], recs[16:], PUSH, cfg)
    start = m["init"]
    assert start["init"] == "margin" and start["margin_steps"] == TrainConfig().init_margin
    for layer, spread in start["logit_above_tau"].items():
        assert spread["min"] > 0, layer  # every sequence starts above tau
        assert start["margin_logits"][layer] > 0


def test_spread_start_spreads_the_start_logits():
    from mindskip.train import encode_records, init_routers

    tok, recs = make_tokenizer(), make_records(32)
    examples = encode_records(tok, recs, 48)
    width = {}
    for spread in (0.0, 2.0):
        model = apply_mindskip(make_model(), PUSH)
        cfg = TrainConfig(**FAST, init_margin=6.0, init_spread=spread)
        start = init_routers(model, examples, tok, cfg, batch_size=8)
        assert start["spread_steps"] == spread
        layers = start["logit_above_tau"]
        width[spread] = sum(v["max"] - v["min"] for v in layers.values())
        steps = {k: start["margin_logits"][k] / 6.0 for k in layers}  # one step, in logits
        for k, v in layers.items():
            assert v["median"] == pytest.approx(6.0 * steps[k], rel=0.5)
    assert width[2.0] > 1.2 * width[0.0]


def _routers_only(cfg: MindSkipConfig):
    """A tiny model with random routers, every parameter frozen but the routers'."""
    model = apply_mindskip(make_model(), cfg)
    randomise_routers(model, scale=30.0)
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in mindskip_layers(model).values():
        layer.router.proj.weight.requires_grad_(True)
    return model


def _gated_forward(model, tok, n=8):
    batch = collate(encode_records(tok, make_records(n, seed=1), 48), tok, "cpu")
    model.train()
    reset_routing_stats(model)
    decoder_hidden(model, batch)
    return batch


def test_per_layer_penalty_is_a_sum_of_relus_over_layers():
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=2.0, capacity_target=0.5)
    model = _routers_only(cfg)
    _gated_forward(model, make_tokenizer())
    caps = {i: float(c.detach()) for i, c in layer_capacities(model).items()}
    assert caps == pytest.approx(routing_stats(model).total)
    assert len(set(caps.values())) > 1  # layers differ
    want = 2.0 * sum(max(c - 0.5, 0.0) for c in caps.values())
    assert float(capacity_penalty(model, cfg, "per_layer").detach()) == pytest.approx(want)
    overall = sum(caps.values()) / len(caps)
    assert float(capacity_penalty(model, cfg, "global").detach()) == pytest.approx(
        2.0 * max(overall - 0.5, 0.0)
    )
    assert capacity_penalty(model, cfg, "none") is None
    # a layer above target gets a gradient (a layer below it may too, through the hidden
    # states that its gate changes)
    capacity_penalty(model, cfg, "per_layer").backward()
    for i, layer in mindskip_layers(model).items():
        if caps[i] > 0.5:
            assert bool(layer.router.proj.weight.grad.abs().sum() > 0), i
    # every layer at or below target: nothing to penalise
    low = cfg.replace(capacity_target=1.0)
    assert float(capacity_penalty(model, low, "per_layer").detach()) == 0.0


def test_per_layer_penalty_trains_every_layer_down(tmp_path):
    recs = make_records(40)
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=5.0, capacity_target=0.25)
    tc = TrainConfig(**{**FAST, "lr": 1e-2, "epochs": 3, "penalty": "per_layer"})
    m = train_routers(make_model(), make_tokenizer(), recs[:32], recs[32:], cfg, tc)
    assert m["penalty"] == "per_layer"
    assert all(c < 1.0 for c in m["val"]["capacity_per_layer"].values())


def test_distill_loss_is_zero_when_routed_equals_teacher():
    tok = make_tokenizer()
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    model.train()  # zero routers: everything executes, so the routed model is the teacher
    for layer in mindskip_layers(model).values():
        layer.router.proj.weight.requires_grad_(True)
    batch = collate(encode_records(tok, make_records(6), 48), tok, "cpu")
    teacher = teacher_hidden(model, batch)
    student = decoder_hidden(model, batch)
    kl, n = kl_sum(model, student, teacher, batch["attention_mask"], chunk=7)
    assert n == int(batch["attention_mask"].sum())
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-6)
    # a routed model that skips differs from its teacher, and the KL says so (chunked)
    randomise_routers(model, scale=30.0)
    student = decoder_hidden(model, batch)
    kl7, _ = kl_sum(model, student, teacher, batch["attention_mask"], chunk=7)
    kl_all, _ = kl_sum(model, student, teacher, batch["attention_mask"], chunk=10_000)
    assert float(kl7.detach()) > 1e-3
    assert float(kl7.detach()) == pytest.approx(float(kl_all.detach()), rel=1e-5)
    kl7.backward()  # through the checkpointed chunks, to the routers
    assert any(
        bool(layer.router.proj.weight.grad.abs().sum() > 0)
        for layer in mindskip_layers(model).values()
    )


def test_distill_objective_trains(tmp_path):
    recs = make_records(40)
    tc = TrainConfig(**{**FAST, "lr": 1e-2, "objective": "distill", "init_spread": 0.0})
    m = train_routers(make_model(), make_tokenizer(), recs[:32], recs[32:], PUSH, tc)
    assert m["objective"] == "distill"
    assert all("distill_loss" in e and e["distill_loss"] >= 0 for e in m["log"])
    assert m["log"][0]["distill_loss"] == pytest.approx(0.0, abs=1e-6)  # starts dense
    assert m["val"]["kl_to_dense"] >= 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_router_and_pooling_are_float32_under_autocast(dtype):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 7, 32, generator=g).to(dtype)
    mask = torch.ones(5, 7, dtype=torch.long)
    mask[1, 4:] = 0
    router = Router(32)
    with torch.no_grad():
        router.proj.weight.copy_(torch.randn(1, 32, generator=g) * 0.05)
    plain = router(masked_mean(h, mask))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = masked_mean(h, mask)
        auto = router(pooled)
    assert pooled.dtype == torch.float32 and auto.dtype == torch.float32
    assert torch.equal(plain, auto)  # bit for bit
    # bf16 arithmetic would round the scores: the float32 path is not a no-op
    bf = torch.sigmoid(
        torch.nn.functional.linear(h.mean(1).bfloat16(), router.proj.weight.bfloat16())
    )
    assert not torch.equal(bf.float().squeeze(-1), plain)


def test_layer_decisions_equal_under_autocast():
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, scale=3.0)
    h = torch.randn(6, 9, 32, generator=torch.Generator().manual_seed(1))
    for layer in mindskip_layers(model).values():
        layer.context.attention_mask = torch.ones(6, 9, dtype=torch.long)
        plain, _ = layer._decide_mask(h)
        scores = layer.last_scores.clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto, _ = layer._decide_mask(h)
        assert torch.equal(plain, auto)
        assert torch.equal(scores, layer.last_scores)


def test_dual_multiplier_is_a_signed_lagrangian_moved_by_the_capacity_error():
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=2.0, capacity_target=0.5)
    model = _routers_only(cfg)
    _gated_forward(model, make_tokenizer())
    caps = {str(i): float(c.detach()) for i, c in layer_capacities(model).items()}
    assert len(set(caps.values())) > 1
    per = capacity_multiplier(cfg, "per_layer", "dual", lr=4.0)
    per.values = {k: (-3.0 if j % 2 else 7.0) for j, k in enumerate(caps)}
    want = sum(per.values[k] * (c - 0.5) for k, c in caps.items())  # no relu: signed
    assert float(per.penalty(model).detach()) == pytest.approx(want)
    glob = capacity_multiplier(cfg, "global", "dual", lr=4.0)
    overall = sum(caps.values()) / len(caps)
    assert float(glob.penalty(model).detach()) == pytest.approx(
        2.0 * (overall - 0.5)
    )  # starts at lambda
    # one dual step: up while capacity is above the target
    glob.update(0.8, {})
    assert glob.values == {"all": pytest.approx(2.0 + 4.0 * 0.3)}
    glob.update(0.6, {})
    assert glob.values["all"] == pytest.approx(3.2 + 4.0 * 0.1)
    # the target crossed: restart at -start on the new side (no windup), then integrate
    glob.update(0.25, {})
    assert glob.values["all"] == pytest.approx(-2.0 - 4.0 * 0.25)
    glob.update(0.4, {})
    assert glob.values["all"] == pytest.approx(-3.0 - 4.0 * 0.1)
    glob.update(0.75, {})  # crossed back up
    assert glob.values["all"] == pytest.approx(2.0 + 4.0 * 0.25)
    k0, k1 = list(caps)[:2]
    per.update(float("nan"), {int(k0): 1.0, int(k1): float("nan")})
    assert per.values[k0] == pytest.approx(7.0 + 4.0 * 0.5)
    assert per.values[k1] == -3.0  # no decision this step: unchanged
    with pytest.raises(ValueError, match="capacity_target"):
        capacity_multiplier(cfg.replace(capacity_target=None), "global", "dual", lr=1.0)
    assert capacity_multiplier(cfg, "global", "fixed", lr=1.0) is None
    with pytest.raises(ValueError, match="needs a penalty"):
        TrainConfig(capacity_control="dual", penalty="none")


@pytest.mark.parametrize("penalty", ["global", "per_layer"])
def test_dual_control_records_each_step_multiplier_and_its_update(penalty, tmp_path):
    recs = make_records(40)
    cfg = MindSkipConfig(num_routed=4, capacity_lambda=1.0, capacity_target=0.5)
    tc = TrainConfig(
        **{**FAST, "lr": 1e-2, "epochs": 2, "penalty": penalty},
        capacity_control="dual",
        dual_lr=3.0,
    )
    out = tmp_path / "routers" / "m" / "dual"
    m = train_routers(make_model(), make_tokenizer(), recs[:32], recs[32:], cfg, tc, out)
    log = m["log"]
    assert len(log) >= 4
    first = log[0]["lambda"]
    assert set(first.values()) == {1.0}  # every multiplier starts at capacity_lambda
    for a, b in zip(log, log[1:], strict=False):
        caps = {"all": a["capacity"]} if penalty == "global" else a["capacity_per_layer"]
        assert set(b["lambda"]) == set(caps)
        for k, c in caps.items():
            v = a["lambda"][k]
            v = v if v * (c - 0.5) >= 0 else math.copysign(1.0, c - 0.5)  # crossed: restart
            assert b["lambda"][k] == pytest.approx(v + 3.0 * (c - 0.5))
    assert m["capacity_multipliers"] != first  # it moved
    fixed = tmp_path / "routers" / "m" / "fixed"
    assert "capacity_multipliers" not in train_routers(
        make_model(), make_tokenizer(), recs[:16], recs[32:], cfg, TrainConfig(**FAST), fixed
    )
    # the report reads what the runner wrote: the capacity table and its README
    build_training_report(
        sorted(str(p) for p in tmp_path.glob("routers/*/*/metrics.json")),
        paper_dir=ROOT / "resources" / "paper",
        tables_dir=tmp_path / "tables",
        figures_dir=tmp_path / "figures",
    )
    table = pd.read_csv(tmp_path / "tables" / "capacity.csv").set_index("run")
    assert table.loc["fixed", "control"] == "fixed"
    assert table.loc["fixed", "lambda end (max)"] == 1.0
    ends = m["capacity_multipliers"].values()
    assert table.loc["dual", "control"] == "dual"
    assert table.loc["dual", "lambda end (min)"] == pytest.approx(min(ends), abs=1e-3)
    assert table.loc["dual", "lambda end (max)"] == pytest.approx(max(ends), abs=1e-3)
    assert table.loc["dual", "capacity (val)"] == pytest.approx(m["val"]["capacity"], abs=1e-3)
    assert bool(table.loc["dual", "reached"]) == m["target_reached"]
    text = capacity_readme(tmp_path, {}, "tiny", Path("config/capacity.yaml"))
    assert "dual (lambda 1 -> " in text and "fixed (lambda 1)" in text
    assert f"capacity {m['val']['capacity']:.3f} for target 0.5" in text
