"""Profiling: every field is there, the ceiling really does less work, KV bytes shrink
exactly, and the static cache gives the same greedy tokens as the dynamic one with compacted
rows. Strict mode, memory, real prompts: test_profile_modes.py; CIs: test_profile_stats.py."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
from conftest import make_model, randomise_routers
from transformers import StaticCache

from mindskip import (
    MindSkipConfig,
    apply_mindskip,
    forced_decisions,
    mindskip_layers,
    save_routers,
    set_decisions,
)
from mindskip.profile import (
    FIELDS,
    SHAPES,
    ProfileConfig,
    cache_kwarg,
    kv_cache_bytes,
    main,
    profile,
    shape_config,
    shared_copy,
)

TIMED = [  # numbers whose values are not asserted (a decode time is a difference of two)
    "time_s", "time_s_min", "time_s_max", "time_s_q1", "time_s_q3", "tokens_per_s",
    "tokens_per_s_min", "tokens_per_s_max", "latency_ms", "speedup", "speedup_min",
    "speedup_max",
]  # fmt: skip
COUNTS = ["peak_mem_bytes", "work_mem_bytes", "kv_cache_bytes", "skip_ratio", "aten_ops"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


def _tiny(**kw) -> torch.nn.Module:
    return make_model("llama", num_hidden_layers=8, max_position_embeddings=256, **kw)


def test_profile_produces_every_field(tmp_path):
    model = _tiny()
    cfg = ProfileConfig(
        model="tiny",
        units=("attn", "block"),
        num_routed=5,
        grid=((2, 16, 0), (2, 8, 4)),
        caches=("dynamic", "static"),
        repeats=2,
        warmup=0,
        threads=1,
    )
    result = profile(cfg, model=model, out_dir=tmp_path, progress=False)
    # regimes: prefill dynamic, decode dynamic, decode static; variants: dense + 2 x (ms, ceiling)
    assert len(result.rows) == 3 * 5
    assert cfg.pattern(8) == (2, 4, 6)  # every other layer of the routed range 2..6
    for r in result.rows:
        assert r["status"] == "ok", r
        for k in TIMED:
            assert isinstance(r[k], int | float) and math.isfinite(r[k]), (k, r)
        for k in COUNTS:
            assert isinstance(r[k], int | float) and r[k] >= 0, (k, r)
        assert r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
        if r["variant"] == "mindskip":
            assert r["achieved_min"] <= r["achieved_vs_ceiling"] <= r["achieved_max"]
            assert r["skip_ratio"] == pytest.approx(3 / 8)
            assert r["routers"].startswith("forced pattern")
        if r["variant"] == "dense":
            assert r["speedup"] == 1.0 and r["skip_ratio"] == 0.0
        if r["phase"] == "decode":
            assert r["steps"] == 3 and r["kv_cache_bytes"] > 0
            if r["variant"] == "mindskip":
                assert "tokens == ceiling" in r["check"]
            if r["cache"] == "static":
                assert "tokens == dynamic" in r["check"]
    with open(tmp_path / "profile.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) and set(rows[0]) == set(FIELDS)
    doc = json.loads((tmp_path / "profile.json").read_text())
    # one provenance stamp (versions, machine, date), and how it was measured beside it
    assert {"torch", "transformers", "mindskip"} <= set(doc["versions"])
    assert {"date", "cpu", "torch_threads"} <= set(doc["environment"])
    assert not {"torch", "date", "cpu", "torch_threads"} & set(doc["measurement"])
    assert doc["environment"]["torch_threads"] == 1 and rows[0]["threads"] == "1"
    assert doc["config"]["grid"] == [[2, 16, 0], [2, 8, 4]]
    md = (tmp_path / "profile.md").read_text()
    assert "of ceiling" in md and "not resolved (2 repeats < 6)" in md  # 2 repeats: no CI
    assert all(r["resolved"] is False and "speedup_ci_low" not in r for r in result.rows)
    assert {r["inputs"] for r in result.rows} == {"random"}
    assert doc["config"]["strict"] is True and doc["measurement"]["inputs"].startswith("random")


def test_hand_removed_ceiling_does_less_work_than_dense():
    """Exact counts, not timings: 2 of 8 blocks remain, so the ceiling and the forced
    pattern dispatch fewer aten ops and need less working memory than dense."""
    model = make_model(
        "llama", hidden_size=256, intermediate_size=1024, num_hidden_layers=8, vocab_size=512
    )
    cfg = ProfileConfig(
        model="h256",
        units=("block",),
        layers=(1, 2, 3, 4, 5, 6),  # 2 of 8 blocks remain: about 4x less work
        grid=((4, 128, 0),),
        repeats=6,
        warmup=1,
        threads=1,
    )
    rows = {r["variant"]: r for r in profile(cfg, model=model, progress=False).rows}
    dense, ms, ceiling = rows["dense"], rows["mindskip"], rows["ceiling"]
    assert ceiling["aten_ops"] < 0.5 * dense["aten_ops"], (ceiling, dense)
    assert ceiling["aten_ops"] < ms["aten_ops"] < dense["aten_ops"]  # routers cost a few ops
    assert ceiling["work_mem_bytes"] <= dense["work_mem_bytes"]
    for r in (ms, ceiling):  # 6 repeats: a 95% CI exists (its values are not asserted)
        assert r["speedup_ci_low"] <= r["speedup"] <= r["speedup_ci_high"]
        assert isinstance(r["resolved"], bool)


def test_kv_bytes_smaller_by_exactly_the_skipped_share():
    model = _tiny()
    cfg = ProfileConfig(
        model="tiny",
        units=("attn", "mlp"),
        layers=(1, 3, 5),
        grid=((3, 8, 4),),
        caches=("dynamic", "static"),
        repeats=1,
        warmup=0,
        threads=1,
        decode_timer="loop",
    )
    rows = profile(cfg, model=model, progress=False).rows
    for kind in ("dynamic", "static"):
        kv = {(r["method"], r["variant"]): r["kv_cache_bytes"] for r in rows if r["cache"] == kind}
        dense = kv[("dense", "dense")]
        assert dense > 0
        assert kv[("attn", "mindskip")] * 8 == dense * 5  # 3 of 8 layers write no KV
        assert kv[("attn", "ceiling")] == kv[("attn", "mindskip")]
        assert kv[("mlp", "mindskip")] == dense == kv[("mlp", "ceiling")]


@pytest.mark.parametrize("unit", ["attn", "block"])
def test_static_cache_matches_dynamic_with_compacted_rows(unit):
    """StaticLayer allocates with the batch of its first update: a layer that some sequences
    skip holds fewer rows. Greedy output must still equal the dynamic cache's."""
    model = apply_mindskip(_tiny(), MindSkipConfig(unit=unit, num_routed=5))
    randomise_routers(model, seed=1)
    x = torch.randint(3, 97, (4, 12), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    want = model.generate(x, **kw)
    cache = StaticCache(config=model.config, max_cache_len=18)
    got = model.generate(x, **{cache_kwarg(model): cache}, **kw)  # 5.17: past_key_values
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    rows = [layer.keys.shape[0] for layer in cache.layers if layer.is_initialized]
    assert min(rows) < 4  # some layer really holds compacted rows


def test_static_cache_token_routing_matches_dynamic():
    model = apply_mindskip(_tiny(), MindSkipConfig(unit="attn", routing="token", num_routed=5))
    randomise_routers(model, seed=1)
    x = torch.randint(3, 97, (4, 12), generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    want = model.generate(x, **kw)
    got = model.generate(x, cache_implementation="static", **kw)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_trained_routers_and_their_ceiling(tmp_path):
    model = _tiny()
    routed = apply_mindskip(copy.deepcopy(model), MindSkipConfig(unit="attn", num_routed=5))
    randomise_routers(routed, seed=1)
    save_routers(routed, tmp_path / "r")
    cfg = ProfileConfig(
        model="tiny",
        units=(),
        routers=(str(tmp_path / "r"),),
        grid=((4, 16, 0),),
        repeats=1,
        threads=1,
    )
    rows = {r["variant"]: r for r in profile(cfg, model=model, progress=False).rows}
    ms, ceiling = rows["mindskip"], rows["ceiling"]
    assert ms["method"] == "r" and ms["routers"].startswith("trained routers")
    assert 0 < ms["skip_ratio"] < 5 / 8
    # the ceiling removes the least-executed layers, as many as were skipped on average
    assert ceiling["skipped"] == round(ms["skip_ratio"] * 8) and ceiling["pattern"]


def test_shared_copy_shares_weights_and_kv_bytes_helper():
    model = _tiny()
    twin = shared_copy(model)
    assert twin is not model
    assert all(a is b for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    apply_mindskip(twin, MindSkipConfig(num_routed=2))
    assert not mindskip_layers(model) and mindskip_layers(twin)
    x = torch.randint(3, 97, (2, 5))
    with torch.no_grad(), forced_decisions(twin, False):
        out = twin(x, use_cache=True)
    dense = model(x, use_cache=True)
    head = model.config.hidden_size // model.config.num_attention_heads
    per_layer = 2 * 2 * model.config.num_key_value_heads * 5 * head * 4
    assert kv_cache_bytes(dense.cache if hasattr(dense, "cache") else dense.past_key_values) == (
        8 * per_layer
    )
    assert kv_cache_bytes(getattr(out, "cache", None) or out.past_key_values) == 6 * per_layer


# The released models' parameter counts (their model cards / safetensors index): a shape
# that builds another count has a wrong width, head layout, vocabulary or embedding tie.
PUBLISHED_PARAMETERS = {"llama3-8b": 8_030_261_248, "smollm2-135m": 134_515_008}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_named_shape_builds_the_published_model(name):
    """The model that ``shape_only`` profiles (built from :func:`shape_config`, here on the
    meta device: no memory) has exactly the released model's parameter count."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape_config(name))
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS[name]


def test_every_named_shape_is_checked():
    assert set(SHAPES) == set(PUBLISHED_PARAMETERS)


def test_pattern_and_cli_help(capsys):
    assert ProfileConfig().pattern(30) == tuple(range(13, 28, 2))
    assert ProfileConfig().pattern(32) == tuple(range(15, 30, 2))
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--shape-only" in capsys.readouterr().out
    with pytest.raises(ValueError):
        ProfileConfig(grid=((1, 8, 1),))  # one new token has no decode step


def test_method_spec_is_profiled_against_its_ceiling():
    from mindskip.methods import Dense, StaticDrop

    cfg = ProfileConfig(model="tiny", units=(), grid=((2, 16, 0),), repeats=1, threads=1)
    drop, dense = StaticDrop(unit="block", layers=(2, 4)), Dense()
    methods = {"drop": drop, "dense-spec": dense}
    rows = profile(cfg, model=_tiny(), methods=methods, progress=False).rows
    assert [(r["method"], r["variant"]) for r in rows] == [
        ("dense", "dense"),
        ("drop", "mindskip"),
        ("drop", "ceiling"),
    ]
    assert rows[1]["pattern"] == rows[2]["pattern"] == "2,4"
    assert rows[1]["skip_ratio"] == pytest.approx(2 / 8)
    assert rows[1]["routers"].startswith(f"method {drop.slug}")


def test_a_callable_method_is_profiled_like_a_spec():
    """``methods`` also takes ``prepare(model) -> model``: here the static drop by hand."""

    def drop_blocks(model: torch.nn.Module) -> torch.nn.Module:
        apply_mindskip(model, MindSkipConfig(unit="block", layers=(2, 4)))
        set_decisions(model, False)
        return model

    cfg = ProfileConfig(model="tiny", units=(), grid=((2, 16, 0),), repeats=1, threads=1)
    rows = profile(cfg, model=_tiny(), methods={"mine": drop_blocks}, progress=False).rows
    assert [(r["method"], r["variant"]) for r in rows] == [
        ("dense", "dense"),
        ("mine", "mindskip"),
        ("mine", "ceiling"),
    ]
    assert rows[1]["pattern"] == rows[2]["pattern"] == "2,4"
    assert rows[1]["routers"].startswith("callable drop_blocks")
    assert rows[1]["skip_ratio"] == pytest.approx(2 / 8)
    assert rows[2]["aten_ops"] < rows[0]["aten_ops"]
