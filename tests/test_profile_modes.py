"""Profiling modes: a strict profile fails loudly on an error row (``--keep-going`` marks
it); peak memory does not depend on the order variants are measured in; real prompts are
batched by length and the realised skip ratio on them is recorded."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from conftest import make_model, randomise_routers

from mindskip import (
    MindSkipConfig,
    apply_mindskip,
    mindskip_layers,
    reset_routing_stats,
    routing_stats,
    save_routers,
)
from mindskip.profile import ProfileConfig, ProfileError, input_source, load_prompts, profile
from mindskip.profile.__main__ import config_from_args, parser
from mindskip.profile.inputs import left_pad, length_groups, spread
from mindskip.profile.memory import memory_pass, param_bytes
from mindskip.profile.run import Attempts, Regime
from mindskip.profile.timing import Runner
from mindskip.profile.variants import build_variants

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
CPU = torch.device("cpu")


def _tiny(**kw) -> torch.nn.Module:
    return make_model("llama", num_hidden_layers=8, max_position_embeddings=256, **kw)


def _fails_on_batch(n: int):
    """A method whose routers raise on a batch of ``n`` sequences (and skip otherwise)."""

    def boom(model: torch.nn.Module) -> torch.nn.Module:
        apply_mindskip(model, MindSkipConfig(unit="attn", num_routed=4))

        def force(layer, batch: int, length: int) -> bool:
            if batch == n:
                raise RuntimeError("boom: the routers broke")
            return layer.layer_idx % 2 == 0

        for layer in mindskip_layers(model).values():
            layer.force = force
        return model

    return boom


# ----------------------------------------------------------------------------- strict
def test_strict_profile_fails_on_an_error_row_and_keep_going_marks_it(tmp_path):
    cfg = ProfileConfig(
        model="tiny", units=(), grid=((2, 8, 0), (3, 8, 0)), repeats=1, warmup=0, threads=1
    )
    methods = {"boom": _fails_on_batch(3)}
    assert cfg.strict  # the library's (and the workflow's) default
    with pytest.raises(ProfileError, match=r"'mindskip:boom'.*prefill dynamic b3x8\+0.*boom"):
        profile(cfg, model=_tiny(), methods=methods, out_dir=tmp_path, progress=False)
    loose = dataclasses.replace(cfg, strict=False)
    rows = profile(loose, model=_tiny(), methods=methods, progress=False).rows
    bad = [r for r in rows if r["status"] != "ok"]
    assert [(r["variant"], r["batch"]) for r in bad] == [("mindskip", 3)]
    assert bad[0]["status"].startswith("error: RuntimeError: boom") and "time_s" not in bad[0]
    assert all("time_s" in r for r in rows if r["status"] == "ok") and len(rows) == 6


def test_cli_is_strict_unless_keep_going(tmp_path):
    args = ["--model", "tiny", "--units", "attn", "--out", str(tmp_path)]
    assert config_from_args(parser().parse_args(args)).strict is True
    loose = config_from_args(parser().parse_args([*args, "--keep-going", "--inputs", "p.jsonl"]))
    assert loose.strict is False and loose.inputs == "p.jsonl"
    with pytest.raises(ValueError, match="inputs must be"):
        ProfileConfig(inputs="prompts.txt")


# ----------------------------------------------------------------------------- memory
@pytest.mark.parametrize(("new", "kind"), [(0, "dynamic"), (4, "dynamic"), (4, "static")])
def test_peak_memory_does_not_depend_on_the_measuring_order(new, kind):
    """Each variant is measured from a clean baseline (the previous variants' outputs and
    caches are freed), so its peak is the same whichever variant came before it."""
    model = _tiny()
    cfg = ProfileConfig(model="tiny", units=("attn", "mlp", "block"), num_routed=5, warmup=0)
    variants = build_variants(cfg, model, {}, lambda m: None)
    inputs = input_source(cfg, model).regime(3, 10, 1)
    regime = Regime(3, 10, new, kind)
    runner, weights = Runner(cfg, CPU), param_bytes(model)

    def call(v):
        return runner.call(v.model, inputs.memory, new, kind, regime.max_len)

    def measured(order):
        with torch.inference_mode():
            return memory_pass(CPU, order, call, Attempts(order, True, regime), weights)

    forward, backward = measured(variants), measured(variants[::-1])
    rotated = measured(variants[3:] + variants[:3])
    for v in variants:
        a, b, c = forward[v.key], backward[v.key], rotated[v.key]
        assert a.peak == b.peak == c.peak and a.work == b.work == c.work, v.key
        assert a.ops == b.ops == c.ops and a.kv == b.kv == c.kv
        # what earlier variants leave alive: at most the routing context of each routed
        # model (the core keeps the last decode step's input ids and mask, a few bytes)
        context = 3 * 8 * 3 * (1 + regime.max_len)  # 3 routed variants, batch 3, int64
        assert max(a.baseline, b.baseline, c.baseline) <= (context if new else 0), v.key
        assert a.peak == weights + a.work and a.work > 0
    if new:  # skipping attention or the block writes no KV for those layers
        assert forward["mindskip:attn"].kv < forward["dense"].kv
        assert forward["mindskip:mlp"].kv == forward["dense"].kv


# ----------------------------------------------------------------------------- real prompts
def _prompts(n: int, seed: int = 3) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 30, (n,), generator=g).tolist()
    return [torch.randint(3, 97, (k,), generator=g).tolist() for k in lengths]


def test_prompt_files_and_batches(tmp_path):
    prompts = _prompts(11)
    (tmp_path / "p.jsonl").write_text(
        "".join(json.dumps(p if i % 2 else {"input_ids": p}) + "\n" for i, p in enumerate(prompts))
    )
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    torch.save([torch.tensor(p) for p in prompts], tmp_path / "p.pt")
    for name in ("p.jsonl", "p.json", "p.pt"):
        assert load_prompts(tmp_path / name) == prompts
    groups = length_groups(prompts, 4, 12, seed=0)
    assert len(groups) == 2 and all(len(g) == 4 for g in groups)  # 3 left over
    cut = [s for g in groups for s in g]
    assert [len(s) for s in cut] == sorted(len(s) for s in cut)  # grouped by length
    for s in cut:  # left-cut: the last prompt_len tokens of some prompt
        assert len(s) <= 12 and any(p[-len(s) :] == s and len(p[-12:]) == len(s) for p in prompts)
    assert spread(10, 3) == [1, 5, 8] and spread(2, 5) == [0, 1, 0, 1, 0]
    cfg = ProfileConfig(model="tiny", inputs=str(tmp_path / "p.jsonl"), seed=0)
    regime = input_source(cfg, _tiny()).regime(4, 12, 3)
    for b in regime.repeats:
        assert b.ids.shape[0] == 4 and b.ids.shape[1] <= 12
        assert torch.equal(b.mask.flip(1).cummin(1).values.flip(1), b.mask)  # left padding
        assert (b.ids[b.mask == 0] == 0).all()  # the model's pad id
    assert regime.prompt_tokens == pytest.approx(sum(b.real_tokens for b in regime.repeats) / 12)


def test_real_prompts_realise_the_routers_skip_ratio(tmp_path):
    """The skip ratio recorded in a row is routing_stats on a direct forward of the same
    batches, and equals the one of each prompt alone (padding never enters a decision)."""
    model = _tiny()
    routed = apply_mindskip(copy.deepcopy(model), MindSkipConfig(unit="attn", num_routed=5))
    randomise_routers(routed, seed=1)
    save_routers(routed, tmp_path / "r")
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in _prompts(23)))
    cfg = ProfileConfig(
        model="tiny",
        units=("attn",),
        routers=(str(tmp_path / "r"),),
        grid=((4, 16, 0), (3, 12, 5)),
        repeats=4,
        warmup=0,
        threads=1,
        inputs=str(path),
    )
    rows = profile(cfg, model=model, progress=False).rows
    assert {r["inputs"] for r in rows} == {"prompts.jsonl"} and all(
        r["status"] == "ok" for r in rows
    )
    source = input_source(cfg, model)
    for batch, prompt, _new in cfg.grid:
        inputs = source.regime(batch, prompt, cfg.repeats)
        reset_routing_stats(routed)
        alone = copy.deepcopy(routed)
        with torch.inference_mode():
            for b in inputs.repeats:
                routed(b.ids, **b.forward_kwargs())
                for ids, mask in zip(b.ids, b.mask, strict=True):
                    alone(ids[mask == 1][None])
        want = routing_stats(routed).skip_ratio
        assert 0 < want < 5 / 8
        assert routing_stats(alone).skip_ratio == pytest.approx(want, abs=1e-12)
        got = [r for r in rows if r["batch"] == batch and r["method"] == "r"]
        assert got[0]["variant"] == "mindskip" and got[0]["skip_ratio"] == round(want, 4)
        assert got[0]["prompt_tokens"] == round(inputs.prompt_tokens, 2) < prompt
        forced = [r for r in rows if r["batch"] == batch and r["method"] == "attn"]
        assert forced[0]["skip_ratio"] == pytest.approx(3 / 8)  # the forced pattern, exactly
    decode = [r for r in rows if r["phase"] == "decode" and r["variant"] == "mindskip"]
    assert all("tokens == ceiling" in r["check"] for r in decode if r["method"] == "attn")


def test_prompts_argument_overrides_config_inputs_and_the_record_is_written(tmp_path):
    cfg = ProfileConfig(model="tiny", units=("block",), grid=((2, 8, 0),), repeats=2, warmup=0)
    prompts = [torch.tensor(p) for p in _prompts(5)]
    method = {"spec": {"name": "x", "kind": "static", "ratio": "0.250"}}
    result = profile(
        cfg,
        model=_tiny(),
        prompts=prompts,
        progress=False,
        out_dir=tmp_path,
        record={"method": method},
    )
    assert {r["inputs"] for r in result.rows} == {"prompts"}
    assert all(r["prompt_tokens"] <= 8 for r in result.rows)
    doc = json.loads((tmp_path / "profile.json").read_text())
    assert doc["method"] == method and "versions" in doc and "environment" in doc
    how = doc["measurement"]
    assert len(how["inputs_sha256"]) == 64 and "left-cut" in how["inputs"]


@pytest.mark.parametrize(("unit", "routing"), [("attn", "sequence"), ("attn", "token")])
def test_decode_of_padded_prompts_matches_each_prompt_alone(unit, routing):
    """Left padding with a mask and positions: the loop timer and generate give every
    prompt the greedy tokens it gets alone, with a dynamic or a static cache."""
    model = apply_mindskip(_tiny(), MindSkipConfig(unit=unit, routing=routing, num_routed=5))
    randomise_routers(model, seed=1)
    seqs = [p[-12:] for p in _prompts(4, seed=5)]
    batch = left_pad(seqs, 0, CPU)
    assert batch.padded
    kw = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        alone = [model.generate(torch.tensor([s]), **kw)[0, len(s) :] for s in seqs]
        for timer in ("generate", "loop"):
            runner = Runner(ProfileConfig(decode_timer=timer, caches=("static",)), CPU)
            for kind in ("dynamic", "static"):
                _, toks, _ = runner.decode(model, batch, 5, kind, max_len=12 + 5)
                assert torch.equal(toks, torch.stack(alone)), (timer, kind)
