"""Behaviour of routed layers that could break: exactness, real skipping, padding,
cached generation, KV-cache size, save/load, and the decoder-layer contract."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from conftest import make_model, randomise_routers
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaDecoderLayer

from mindskip import (
    ConfigError,
    MindSkipConfig,
    RouterFileError,
    apply_mindskip,
    forced_decisions,
    load_routers,
    mindskip_layers,
    remove_mindskip,
    remove_sublayers,
    reset_routing_stats,
    routing_stats,
    save_routers,
    set_decisions,
)

UNITS = ["attn", "mlp", "block"]
ROUTINGS = ["sequence", "token"]


def ids(batch: int = 3, length: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 97, (batch, length), generator=g)


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_all_execute_equals_dense(family, unit, routing):
    dense = make_model(family)
    x = ids()
    want = dense(x).logits
    model = apply_mindskip(
        copy.deepcopy(dense), MindSkipConfig(unit=unit, routing=routing, num_routed=4)
    )
    # zero-initialised routers give sigmoid(0) = 0.5 >= tau: everything executes
    got = model(x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert routing_stats(model).capacity == 1.0
    randomise_routers(model)
    with forced_decisions(model, "execute"):
        torch.testing.assert_close(model(x).logits, want, rtol=0, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_all_skip_equals_hand_removal(family, unit, routing):
    dense = make_model(family)
    x = ids()
    cfg = MindSkipConfig(unit=unit, routing=routing, num_routed=4)
    routed = cfg.routed_layers(6)
    assert routed == (1, 2, 3, 4)
    want = remove_sublayers(copy.deepcopy(dense), routed, unit)(x).logits
    model = apply_mindskip(copy.deepcopy(dense), cfg)
    set_decisions(model, "skip")
    got = model(x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, dense(x).logits, atol=1e-3)
    stats = routing_stats(model)
    assert stats.capacity == 0.0
    assert stats.skip_ratio == pytest.approx(4 / 6)


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
def test_skipped_rows_are_not_computed(unit):
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, num_routed=4))
    target = {"attn": "self_attn", "mlp": "mlp", "block": "self_attn"}[unit]
    seen: list[int] = []
    sub = getattr(mindskip_layers(model)[2].layer, target).inner  # the stock submodule
    handle = sub.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(
            (args[0] if args else kwargs["hidden_states"]).shape[0]
        ),
        with_kwargs=True,
    )
    x = ids(batch=4)
    with forced_decisions(model, {2: torch.tensor([True, False, True, False])}):
        model(x)
    with forced_decisions(model, {2: False}):
        model(x)
    with forced_decisions(model, "execute"):
        model(x)
    handle.remove()
    # two of four rows, then no call at all, then all four rows
    assert seen == [2, 4]


@torch.no_grad()
def test_token_routing_gathers_tokens():
    model = apply_mindskip(make_model(), MindSkipConfig(unit="mlp", routing="token", num_routed=4))
    seen: list[tuple[int, ...]] = []
    mlp = mindskip_layers(model)[3].layer.mlp.inner
    h = mlp.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, 5:] = True
    with forced_decisions(model, {3: mask}):
        model(ids(batch=2))
    h.remove()
    assert seen == [(1, 8, 32)]  # the executing tokens, as one sequence


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_partial_skip_matches_per_row_reference(unit, routing):
    """Mixed decisions in one batch equal each row run alone with its own decision."""
    dense = make_model()
    x = ids(batch=4)
    cfg = MindSkipConfig(unit=unit, routing=routing, num_routed=4)
    model = apply_mindskip(copy.deepcopy(dense), cfg)
    randomise_routers(model, seed=1)
    got = model(x).logits
    decisions = {i: layer.last_exec.clone() for i, layer in mindskip_layers(model).items()}
    mixed = [d for d in decisions.values() if d.any() and not d.all()]
    assert mixed, "the routers should give mixed decisions for this test to mean anything"
    if routing == "token" and unit != "mlp":
        # token attention: compare to the gated dense computation (paper semantics)
        model.train()
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in mindskip_layers(model).values():
            layer.router.proj.weight.requires_grad_(True)
        with torch.enable_grad(), forced_decisions(model, None):
            ref = model(x).logits
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        return
    for b in range(4):
        with forced_decisions(model, {i: d[b : b + 1] for i, d in decisions.items()}):
            alone = model(x[b : b + 1]).logits
        torch.testing.assert_close(got[b : b + 1], alone, rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_decision_independent_of_batch_and_padding(family, unit, side):
    dense = make_model(family)
    model = apply_mindskip(dense, MindSkipConfig(unit=unit, routing="sequence", num_routed=4))
    randomise_routers(model, seed=2)
    target = ids(batch=1, length=7, seed=5)
    alone_logits = model(target).logits[0]
    alone_dec = {i: layer.last_exec.clone() for i, layer in mindskip_layers(model).items()}
    alone_scores = {i: layer.last_scores.clone() for i, layer in mindskip_layers(model).items()}

    others = [ids(batch=1, length=n, seed=10 + n)[0] for n in (12, 4)]
    seqs = [others[0], target[0], others[1]]
    width = max(len(s) for s in seqs)
    batch = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for r, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        batch[r, sl] = s
        mask[r, sl] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(batch, attention_mask=mask, position_ids=pos).logits[1]
    sl = slice(width - 7, width) if side == "left" else slice(0, 7)
    torch.testing.assert_close(out[sl], alone_logits, rtol=1e-4, atol=1e-4)
    for i, layer in mindskip_layers(model).items():
        assert bool(layer.last_exec[1]) == bool(alone_dec[i][0]), f"layer {i} flipped"
        torch.testing.assert_close(layer.last_scores[1], alone_scores[i][0], rtol=0, atol=1e-5)
    assert any(not bool(d.all()) for d in alone_dec.values()) or any(
        bool(layer.last_exec.any()) != bool(layer.last_exec.all())
        for layer in mindskip_layers(model).values()
    )


def _greedy_no_cache(model, x, mask, steps):
    """Recompute the whole prefix every step, without a cache."""
    x, mask = x.clone(), mask.clone()
    for _ in range(steps):
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(x, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    return x


@torch.no_grad()
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_cached_generation_equals_recomputation(unit, routing):
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, routing=routing, num_routed=4))
    randomise_routers(model, seed=3)
    x = ids(batch=4, length=8, seed=7)
    mask = torch.ones_like(x)
    mask[1, :3] = 0  # left padding
    mask[3, :5] = 0
    x = x.masked_fill(mask == 0, 0)
    steps = 6
    out = model.generate(
        x,
        attention_mask=mask,
        max_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    if routing == "sequence":
        decisions = {i: layer.last_exec.clone() for i, layer in mindskip_layers(model).items()}
        assert any(not d.all() and d.any() for d in decisions.values()), "need mixed decisions"
        # the recomputation must use the prefill decisions (a sequence routes on its prompt)
        with forced_decisions(model, decisions):
            want = _greedy_no_cache(model, x, mask, steps)
    else:
        want = _greedy_no_cache(model, x, mask, steps)
    assert torch.equal(out, want)


@torch.no_grad()
def test_kv_cache_smaller_by_skipped_share():
    model = apply_mindskip(make_model(), MindSkipConfig(unit="attn", num_routed=4))
    x = ids(batch=4)
    dec = {1: torch.tensor([1, 0, 1, 0]).bool(), 2: False, 3: torch.tensor([0, 0, 0, 1]).bool()}
    with forced_decisions(model, dec):
        cache = DynamicCache(config=model.config)
        model(x, past_key_values=cache, use_cache=True)

    def nbytes(layer) -> int:
        if not getattr(layer, "is_initialized", False) or layer.keys is None:
            return 0
        return layer.keys.numel() * layer.keys.element_size() * 2

    sizes = [nbytes(layer) for layer in cache.layers]
    full = sizes[0]
    assert full > 0
    # rows kept per layer: 4, 2, 0, 1, 4 (layer 4 routed but executes), 4
    assert sizes == [full, full // 2, 0, full // 4, full, full]
    # dense total is 6 * full; skipped share is (2 + 4 + 3) / 24 of it
    assert sum(sizes) == 6 * full - full * 9 // 4


@torch.no_grad()
def test_decode_step_of_a_skipped_unit_computes_nothing():
    """At decode, the stored decision is read before any compute: a layer every sequence
    skips never calls its attention (only the stock layer's own input norm runs, as the
    stock forward does), a half-skipped one attends only the executing rows, and a block
    that every sequence skipped runs nothing at all."""
    model = apply_mindskip(make_model(), MindSkipConfig(unit="attn", num_routed=4))
    x = ids(batch=2, length=6)
    calls: dict[str, list[int]] = {"norm2": [], "attn2": [], "norm3": [], "attn3": []}
    layers = mindskip_layers(model)
    for i in (2, 3):
        layers[i].layer.input_layernorm.register_forward_hook(
            lambda m, a, o, i=i: calls[f"norm{i}"].append(a[0].shape[0])
        )
        layers[i].layer.self_attn.inner.register_forward_hook(
            lambda m, a, k, o, i=i: calls[f"attn{i}"].append(k["hidden_states"].shape[0]),
            with_kwargs=True,
        )
    with forced_decisions(model, {2: False, 3: torch.tensor([False, True])}):
        model.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert calls["norm2"] == [2, 2, 2, 2]
    assert calls["attn2"] == []
    assert calls["attn3"] == [1, 1, 1, 1]

    model = apply_mindskip(make_model(), MindSkipConfig(unit="block", num_routed=4))
    ran: list[int] = []
    layer = mindskip_layers(model)[2].layer
    for sub in (layer.input_layernorm, layer.post_attention_layernorm):
        sub.register_forward_hook(lambda m, a, o: ran.append(a[0].shape[0]))
    with forced_decisions(model, {2: False}):
        model.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert ran == [2, 2]  # the prefill's norms (the router reads the first); no decode step


@torch.no_grad()
def test_reset_cache_decides_again():
    """A cache reused after reset() holds a new prompt: its old decisions must not stay."""
    model = apply_mindskip(make_model(), MindSkipConfig(unit="attn", num_routed=4))
    x = ids(batch=2, length=6)
    cache = DynamicCache(config=model.config)
    with forced_decisions(model, {2: False}):
        model(x, past_key_values=cache, use_cache=True)
    assert not getattr(cache.layers[2], "is_initialized", False) or cache.layers[2].keys is None
    cache.reset()
    with forced_decisions(model, True):
        model(x, past_key_values=cache, use_cache=True)
    assert cache.layers[2].keys.shape[0] == 2


@torch.no_grad()
def test_beam_search_with_skipped_rows_is_refused():
    model = apply_mindskip(make_model(), MindSkipConfig(unit="attn", num_routed=4))
    x = ids(batch=2, length=6)
    with forced_decisions(model, {2: torch.tensor([True, False, True, False])}):
        with pytest.raises(NotImplementedError, match="beam search"):
            model.generate(x, max_new_tokens=4, num_beams=2, do_sample=False, pad_token_id=0)


def test_save_load_roundtrip_and_mismatch(tmp_path):
    x = ids()
    cfg = MindSkipConfig(unit="attn", routing="sequence", num_routed=4)
    model = apply_mindskip(make_model(), cfg)
    randomise_routers(model, seed=4)
    with torch.no_grad():
        want = model(x).logits
    save_routers(model, tmp_path / "r")
    fresh = load_routers(make_model(), tmp_path / "r")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).logits, want, rtol=0, atol=0)

    with pytest.raises(RouterFileError, match="num_layers"):
        load_routers(make_model(num_hidden_layers=8), tmp_path / "r")
    with pytest.raises(RouterFileError, match="hidden_size"):
        load_routers(make_model(hidden_size=64, intermediate_size=64), tmp_path / "r")
    other = apply_mindskip(make_model(), cfg.replace(unit="mlp"))
    with pytest.raises(RouterFileError, match="routed with"):
        load_routers(other, tmp_path / "r")
    with pytest.raises(RouterFileError, match="no routers"):
        load_routers(make_model(), tmp_path / "missing")


def test_apply_twice_and_remove():
    dense = make_model()
    x = ids()
    with torch.no_grad():
        want = dense(x).logits
    model = apply_mindskip(copy.deepcopy(dense), MindSkipConfig(num_routed=4))
    with pytest.raises(ValueError, match="already applied"):
        apply_mindskip(model, MindSkipConfig(num_routed=4))
    remove_mindskip(model)
    assert not mindskip_layers(model)
    assert type(model.model.layers[2]) is LlamaDecoderLayer
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, want, rtol=0, atol=0)


def test_config_validation():
    with pytest.raises(ConfigError, match="unit"):
        MindSkipConfig(unit="ffn")
    with pytest.raises(ConfigError, match="routing"):
        MindSkipConfig(routing="batch")
    with pytest.raises(ConfigError, match="threshold"):
        MindSkipConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="capacity_target"):
        MindSkipConfig(capacity_target=-0.1)
    with pytest.raises(ConfigError, match="num_routed"):
        MindSkipConfig(num_routed=5).routed_layers(6)
    with pytest.raises(ConfigError, match="layer 0"):
        MindSkipConfig(layers=(0, 3)).routed_layers(6)
    assert MindSkipConfig(num_routed=16).routed_layers(32) == tuple(range(15, 31))
    cfg = MindSkipConfig(layer_thresholds=((3, 0.7),))
    assert cfg.threshold_for(3) == 0.7 and cfg.threshold_for(4) == 0.5
    assert MindSkipConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("unit", UNITS)
def test_router_gradients_in_training(unit, checkpointing):
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, num_routed=4))
    for name, p in model.named_parameters():
        p.requires_grad_(".router." in name)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    randomise_routers(model, seed=5, scale=0.5)
    x = ids(batch=4)
    loss = model(x, labels=x).loss
    loss.backward()
    grads = [layer.router.proj.weight.grad for layer in mindskip_layers(model).values()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("routing", ["sequence", "token"])
@pytest.mark.parametrize("unit", UNITS)
def test_executed_only_training_reaches_every_router_and_keeps_the_values(unit, routing):
    """``full_compute_in_training=False``: with every row executing, each router gets a
    non-zero LM gradient through the executing rows; with some rows skipped, the loss
    equals the full-compute path's (the same forward values) and the inference forward's."""
    cfg = MindSkipConfig(unit=unit, routing=routing, num_routed=4)
    torch.manual_seed(0)
    base = make_model()
    model = apply_mindskip(base, cfg)
    for layer in mindskip_layers(model).values():
        layer.full_compute_in_training = False
    for name, p in model.named_parameters():
        p.requires_grad_(".router." in name)
    model.train()
    x = ids(batch=4)
    # zero-initialised routers: sigmoid(0) = 0.5 >= tau, every row executes
    model(x, labels=x).loss.backward()
    grads = [layer.router.proj.weight.grad for layer in mindskip_layers(model).values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # some rows skip: the executed-only loss equals full compute's and inference's
    model.zero_grad()
    randomise_routers(model, seed=5, scale=0.5)
    loss = model(x, labels=x).loss
    skipped = [float(layer.last_exec.float().mean()) for layer in mindskip_layers(model).values()]
    assert min(skipped) < 1.0  # at least one layer skips some rows
    for layer in mindskip_layers(model).values():
        layer.full_compute_in_training = True
    full = model(x, labels=x).loss
    model.eval()
    with torch.no_grad():
        plain = model(x, labels=x).loss
    torch.testing.assert_close(loss, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.detach(), plain, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_stats_accumulate_and_reset():
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    with forced_decisions(model, {1: torch.tensor([True, False]), 2: False}):
        model(ids(batch=2))
    stats = routing_stats(model)
    assert stats.total == {1: 0.5, 2: 0.0, 3: 1.0, 4: 1.0}
    assert stats.capacity == pytest.approx(2.5 / 4)
    assert stats.skip_ratio == pytest.approx(1.5 / 6)
    reset_routing_stats(model)
    assert routing_stats(model).total == {}


def test_decoder_layer_contract():
    """Fails loudly when a transformers upgrade changes what the wrapper relies on."""
    params = inspect.signature(LlamaDecoderLayer.forward).parameters
    assert list(params)[:2] == ["self", "hidden_states"]
    assert {"attention_mask", "position_ids", "use_cache", "position_embeddings"} <= set(params)
    assert {"cache", "past_key_values"} & set(params)
    model = make_model()
    layer = model.model.layers[1]
    for name in ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm"):
        assert hasattr(layer, name)
    attn = layer.self_attn
    assert isinstance(attn, LlamaAttention)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling", "layer_idx"):
        assert hasattr(attn, name)
    import transformers.models.llama.modeling_llama as mod

    assert callable(mod.apply_rotary_pos_emb) and callable(mod.eager_attention_forward)
    # the layer returns a tensor; attention returns (output, weights)
    x = torch.randn(2, 5, 32)
    pos = torch.arange(5)[None]
    pe = model.model.rotary_emb(x, pos)
    with torch.no_grad():
        out = layer(x, position_embeddings=pe, position_ids=pos)
        a = attn(hidden_states=x, position_embeddings=pe, attention_mask=None)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    assert isinstance(a, tuple) and a[0].shape == x.shape
