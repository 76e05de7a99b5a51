"""Baselines through the wrapper: static drop (cosine ranking), random skipping, threshold
calibration to a skip ratio, applied through the typed method specs of mindskip.methods."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import make_model, randomise_routers
from torch.nn.functional import cosine_similarity

from mindskip import (
    ConfigError,
    MindSkipConfig,
    apply_mindskip,
    mindskip_layers,
    remove_sublayers,
    reset_routing_stats,
    routing_stats,
    save_routers,
)
from mindskip.baselines import (
    calibrate_thresholds,
    drop_layers,
    layer_similarities,
    load_ranking,
    measure_skip_ratio,
    pad_batches,
    rank_importance,
    ranking_record,
    rates_from_stats,
    realised_skip_ratio,
    save_ranking,
    sequence_skip_ratios,
    sequence_uniform,
    skip_summary,
)
from mindskip.files import ResultFileError
from mindskip.methods import Dense, RandomSkip, Routed, StaticDrop, prepare_method

UNITS = ["attn", "mlp", "block"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


def seqs(n: int, seed: int, lo: int = 3, hi: int = 12) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    return [torch.randint(3, 97, (int(k),), generator=g).tolist() for k in lengths]


def left_padded(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, r in enumerate(rows):
        ids[b, width - len(r) :] = torch.tensor(r)
        mask[b, width - len(r) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


class WordTokenizer:
    """Enough of a tokenizer for the text path: one id per character."""

    pad_token_id = 0

    def __call__(self, text: str, truncation: bool, max_length: int) -> dict[str, list[int]]:
        return {"input_ids": [3 + ord(c) % 90 for c in text][:max_length]}


@torch.no_grad()
def direct_similarities(model, rows: list[list[int]]) -> dict[str, list[float]]:
    """Each sequence alone, through the stock sublayers by hand."""
    layers = model.model.layers
    sums = {u: [0.0] * len(layers) for u in UNITS}
    tokens = 0
    for r in rows:
        ids = torch.tensor([r])
        x = model.model.embed_tokens(ids)
        pe = model.model.rotary_emb(x, torch.arange(len(r))[None])
        for i, layer in enumerate(layers):
            a = layer.self_attn(
                hidden_states=layer.input_layernorm(x), position_embeddings=pe, attention_mask=None
            )[0]
            mid = x + a
            y = mid + layer.mlp(layer.post_attention_layernorm(mid))
            for unit, (u, v) in {"attn": (x, mid), "mlp": (mid, y), "block": (x, y)}.items():
                sums[unit][i] += float(cosine_similarity(u, v, dim=-1).sum())
            x = y
        tokens += len(r)
    return {u: [s / tokens for s in v] for u, v in sums.items()}


@pytest.mark.parametrize("unit", UNITS)
def test_cosine_ranking_matches_direct_computation(family, unit):
    model = make_model(family)
    rows = seqs(9, seed=1)
    want = direct_similarities(model, rows)
    for batches in (pad_batches(rows, 4), [left_padded(rows[:5]), left_padded(rows[5:])]):
        got, tokens = layer_similarities(model, batches)
        assert tokens == sum(len(r) for r in rows)
        torch.testing.assert_close(got[unit], want[unit], rtol=0, atol=1e-5)
    ranking = rank_importance(model, None, pad_batches(rows, 4), unit)
    assert [r["layer"] for r in ranking] == sorted(range(1, 6), key=lambda i: -want[unit][i])
    assert [r["similarity"] for r in ranking] == sorted(
        [r["similarity"] for r in ranking], reverse=True
    )
    no_final = rank_importance(model, None, pad_batches(rows, 4), unit, include_final=False)
    assert {r["layer"] for r in no_final} == {1, 2, 3, 4}


def test_ranking_record_roundtrip(tmp_path):
    model = make_model()
    texts = ["the cat sat on the mat", "a b c", "routers decide per sequence"]
    record = ranking_record(model, WordTokenizer(), texts, "attn", 16, 2, model_id="tiny")
    assert record["calibration"]["n_samples"] == 3
    assert record["calibration"]["n_tokens"] == sum(min(len(t), 16) for t in texts)
    assert "0" in record["excluded"] and record["candidates"] == [1, 2, 3, 4, 5]
    path = save_ranking(record, tmp_path / "rank.json")
    loaded = load_ranking(path)
    assert loaded["ranking"] == record["ranking"]
    assert drop_layers(loaded, 2) == tuple(sorted(r["layer"] for r in record["ranking"][:2]))
    with pytest.raises(ConfigError, match="k=6"):
        drop_layers(loaded, 6)
    # a truncated or foreign file names itself and the fix, not a JSON parser's error
    path.write_text(path.read_text()[:50])
    with pytest.raises(ResultFileError, match=r"rank\.json is truncated or corrupt.*rerun"):
        load_ranking(path)
    path.write_text('{"format": 1, "ranking": []}')
    with pytest.raises(ResultFileError, match="rank_importance"):
        load_ranking(path)


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
def test_static_drop_equals_hand_removal(unit):
    dense = make_model()
    rows = seqs(6, seed=2)
    ranking = rank_importance(dense, None, pad_batches(rows, 3), unit)
    drop = drop_layers(ranking, 2)
    batch = left_padded(rows)
    pos = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
    want = remove_sublayers(copy.deepcopy(dense), drop, unit)(**batch, position_ids=pos).logits
    model = prepare_method(copy.deepcopy(dense), StaticDrop(unit, drop))
    got = model(**batch, position_ids=pos).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert realised_skip_ratio(model) == pytest.approx(2 / 6)
    assert skip_summary(model)["skip_ratio"] == pytest.approx(2 / 6)
    dense_logits = dense(**batch, position_ids=pos).logits
    assert not torch.allclose(got, dense_logits, atol=1e-3)
    # the same model object goes back to dense
    prepare_method(model, Dense())
    assert not mindskip_layers(model) and realised_skip_ratio(model) == 0.0
    torch.testing.assert_close(model(**batch, position_ids=pos).logits, dense_logits)


@torch.no_grad()
def test_random_skip_hits_rates_and_is_batch_invariant():
    rates = {1: 0.1, 2: 0.5, 3: 0.25, 4: 0.9}
    model = prepare_method(make_model(), RandomSkip("attn", rates, seed=7))
    rows = seqs(400, seed=3, lo=2, hi=6)
    ratio = measure_skip_ratio(model, None, pad_batches(rows, 50))
    realised = rates_from_stats(model)
    for i, r in rates.items():
        assert abs(realised[i] - r) <= 4 * math.sqrt(r * (1 - r) / len(rows)), (i, realised[i])
    assert ratio == pytest.approx(sum(realised.values()) / 6)
    sigma = math.sqrt(sum(r * (1 - r) for r in rates.values()) / len(rows)) / 6
    assert abs(ratio - sum(rates.values()) / 6) <= 4 * sigma

    some = rows[:6]
    expect = {i: [sequence_uniform(7, i, r) >= rates[i] for r in some] for i in rates}
    for batch in (left_padded(some), pad_batches(some, 6)[0]):
        model(**batch)
        order = [some.index(r) for r in _rows(batch)]
        for i, layer in mindskip_layers(model).items():
            assert layer.last_exec.tolist() == [expect[i][k] for k in order]
    batch = left_padded(some)  # cached generation reuses the prefill decisions
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (6, batch["input_ids"].shape[1] + 3)
    for i, layer in mindskip_layers(model).items():
        assert layer.last_exec.tolist() == expect[i]
    for k, r in enumerate(some):
        model(torch.tensor([r]))
        for i, layer in mindskip_layers(model).items():
            assert layer.last_exec.tolist() == [expect[i][k]]

    other = prepare_method(make_model(), RandomSkip("attn", rates, seed=8))
    measure_skip_ratio(other, None, pad_batches(rows, 50))
    assert rates_from_stats(other) != realised


def _rows(batch) -> list[list[int]]:
    return [
        row[m.bool()].tolist()
        for row, m in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]


@pytest.mark.parametrize(
    "mode, target",
    [("per_layer", 0.125), ("per_layer", 0.5), ("per_layer", 4 / 6), ("global", 0.25)],
)
def test_calibration_hits_ratio_on_held_out(mode, target):
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, seed=11)
    calib, held = pad_batches(seqs(800, seed=4), 100), pad_batches(seqs(800, seed=5), 100)
    history: list[float] = []
    taus = calibrate_thresholds(model, None, calib, target, mode=mode, history=history)
    if mode == "per_layer":  # exact in one forward, up to whole counts
        assert len(history) == 1 and abs(history[0] - target) <= 1 / (2 * 800 * 6)
    else:
        assert abs(history[-1] - target) <= 0.005
    assert set(taus) == {1, 2, 3, 4}
    if mode == "global":
        assert len(set(taus.values())) == 1
    assert [layer.threshold for layer in mindskip_layers(model).values()] == list(taus.values())
    assert abs(measure_skip_ratio(model, None, calib) - target) <= 0.01
    assert abs(measure_skip_ratio(model, None, held) - target) <= 0.02
    per_sequence = sequence_skip_ratios(model, None, held)
    assert per_sequence.shape == (800,)
    assert float(per_sequence.mean()) == pytest.approx(measure_skip_ratio(model, None, held))
    if mode == "per_layer":
        share = target * 6 / 4
        for c in routing_stats(model).total.values():
            assert abs((1 - c) - share) <= 0.06


def test_calibration_with_tied_scores_still_hits_total():
    """Duplicate texts give tied scores that no tau splits; later layers make up for it."""
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, seed=13)
    rows = [r for r in seqs(100, seed=7) for _ in range(3)]
    history: list[float] = []
    calibrate_thresholds(
        model, None, pad_batches(rows, 50), 0.25, mode="per_layer", history=history
    )
    assert abs(history[0] - 0.25) <= 2 / (300 * 6)


def test_calibration_refuses_unreachable_ratio_before_compute():
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    with pytest.raises(ConfigError, match="at most 0.6667"):
        calibrate_thresholds(model, None, ["not batches"], 0.7)
    with pytest.raises(ConfigError, match="mode"):
        calibrate_thresholds(model, None, [], 0.2, mode="bisect")


@torch.no_grad()
def test_router_spec_loads_routers_and_thresholds(tmp_path):
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, seed=12)
    save_routers(model, tmp_path / "r")
    x = left_padded(seqs(5, seed=6))
    want = model(**x).logits
    fresh = prepare_method(make_model(), Routed(tmp_path / "r"))
    torch.testing.assert_close(fresh(**x).logits, want, rtol=0, atol=0)
    spec = Routed(str(tmp_path / "r"), thresholds={2: 0.0, 3: 1.0})
    prepare_method(fresh, spec)
    reset_routing_stats(fresh)
    fresh(**x)
    assert routing_stats(fresh).total[2] == 1.0 and routing_stats(fresh).total[3] == 0.0
    with pytest.raises(ConfigError, match="attn/sequence routers"):
        prepare_method(make_model(), Routed(tmp_path / "r", "mlp"))
    with pytest.raises(ConfigError, match="not routed"):
        prepare_method(make_model(), Routed(tmp_path / "r", thresholds={5: 0.5}))
