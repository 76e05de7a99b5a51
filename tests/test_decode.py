"""Decode without host syncs, and decode steps captured with skipping (mindskip.decode):
the same greedy tokens as eager decoding, for every unit and routing with mixed decisions,
and at most one compile per (batch, decision pattern)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model, randomise_routers
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import DynamicCache

from mindskip import MindSkipConfig, apply_mindskip, forced_decisions, mindskip_layers
from mindskip.capture import cache_kwarg
from mindskip.decode import CapturedDecoder

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
UNITS = ["attn", "mlp", "block"]
ROUTINGS = ["sequence", "token"]
SYNCS = {"_local_scalar_dense", "nonzero", "is_nonzero", "item"}


def ids(batch: int = 4, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 97, (batch, length), generator=g)


def routed(unit: str, routing: str, seed: int = 1) -> torch.nn.Module:
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, routing=routing, num_routed=4))
    randomise_routers(model, seed=seed)
    return model


@torch.inference_mode()
def eager_greedy(model: torch.nn.Module, x: torch.Tensor, new: int) -> torch.Tensor:
    """The reference: a plain greedy loop over a DynamicCache, one forward per token."""
    kw, cache = cache_kwarg(model), DynamicCache(config=model.config)
    tok, toks = x, []
    for _ in range(new):
        tok = model(tok, use_cache=True, **{kw: cache}).logits[:, -1].argmax(-1, keepdim=True)
        toks.append(tok)
    return torch.cat(toks, dim=1)


def mixed(model: torch.nn.Module) -> bool:
    """Whether some routed layer's last decision had executing and skipping rows."""
    return any(m.last_exec.any() and not m.last_exec.all() for m in mindskip_layers(model).values())


class _Syncs(TorchDispatchMode):
    """Host-sync ops (item, nonzero, ...) dispatched while a routed layer runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inside, self.count = 0, 0
        for layer in mindskip_layers(model).values():
            layer.register_forward_pre_hook(lambda *_: setattr(self, "inside", self.inside + 1))
            layer.register_forward_hook(lambda *_: setattr(self, "inside", self.inside - 1))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.inside and func.__name__.split(".")[0] in SYNCS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@torch.inference_mode()
@pytest.mark.parametrize("unit", UNITS)
def test_token_decode_step_is_masked_without_host_sync(unit):
    """Token routing, one token per sequence: the masked step equals the gathering step
    (logits and tokens) and makes no host sync in the routed layers; gathering makes two."""
    model = routed(unit, "token")
    x = ids()
    kw = cache_kwarg(model)
    out = {}
    for masked in (True, False):
        for layer in mindskip_layers(model).values():
            layer.masked_decode = masked
        cache = DynamicCache(config=model.config)
        tok = model(x, use_cache=True, **{kw: cache}).logits[:, -1:].argmax(-1)
        steps, syncs = [], _Syncs(model)
        for _ in range(3):
            with syncs:
                logits = model(tok, use_cache=True, **{kw: cache}).logits
            assert mixed(model) or not masked  # the test means something
            steps.append(logits)
            tok = logits[:, -1:].argmax(-1)
        out[masked] = (torch.cat(steps, 1), syncs.count)
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-5, atol=1e-5)
    assert out[True][1] == 0
    assert out[False][1] >= 3 * len(mindskip_layers(model))


@torch.inference_mode()
def test_sequence_decode_step_makes_no_host_sync():
    model = routed("attn", "sequence")
    kw, cache = cache_kwarg(model), DynamicCache(config=model.config)
    tok = model(ids(), use_cache=True, **{kw: cache}).logits[:, -1:].argmax(-1)
    assert mixed(model)
    with _Syncs(model) as syncs:
        model(tok, use_cache=True, **{kw: cache})
    assert syncs.count == 0


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_static_slot_decode_equals_eager(unit, routing):
    """The decoder's own path uncaptured (prefill copied into a reused static cache, the
    persistent decisions refilled): the reference's tokens, call after call."""
    model = routed(unit, routing)
    decoder = CapturedDecoder(model, mode="eager")
    for seed in (0, 1, 0):
        x = ids(seed=seed)
        got = decoder.generate(x, 6)
        assert mixed(model)
        assert torch.equal(got.tokens, eager_greedy(model, x, 6))
        assert got.mode == "eager" and got.decode_s > 0


def test_compiled_decode_equals_eager_and_compiles_once_per_pattern():
    """torch.compile of the decode step (dynamo's full graph; the eager backend keeps CPU
    test time down, the guards are the same): eager's tokens for every unit and routing
    with mixed decisions, no recompile for a new prompt with the same pattern (other rows
    executing, new Decision objects), one for a new pattern."""
    for unit in UNITS:
        for routing in ROUTINGS:
            model = routed(unit, routing)
            decoder = CapturedDecoder(model, mode="compile", backend="eager")
            x = ids()
            first = decoder.generate(x, 5)
            assert mixed(model), (unit, routing)
            assert (first.mode, first.reason) == ("compile", "")
            assert first.compiled >= 1
            assert torch.equal(first.tokens, eager_greedy(model, x, 5)), (unit, routing)
            if routing == "sequence":
                # the same number of executing rows per layer, other rows: forced
                flipped = {i: d.mask.flip(0) for i, d in decoder_decisions(decoder).items()}
                with forced_decisions(model, flipped):
                    again = decoder.generate(x, 5)
                    want = eager_greedy(model, x, 5)
                assert again.pattern == first.pattern and again.compiled == 0
                assert torch.equal(again.tokens, want)
                with forced_decisions(model, True):  # a new pattern: one compile
                    other = decoder.generate(x, 5)
                    want = eager_greedy(model, x, 5)
                assert other.pattern != first.pattern and other.compiled >= 1
                assert torch.equal(other.tokens, want)
            else:
                again = decoder.generate(ids(seed=3), 5)
                assert again.compiled == 0
                assert torch.equal(again.tokens, eager_greedy(model, ids(seed=3), 5))


def decoder_decisions(decoder: CapturedDecoder) -> dict:
    (slot,) = decoder._slots.values()
    return slot.decisions


def test_graph_mode_without_cuda_falls_back_and_says_why(caplog):
    model = routed("block", "sequence")
    x = ids()
    got = CapturedDecoder(model, mode="graph").generate(x, 4)
    assert got.mode == "eager" and "needs a CUDA device" in got.reason
    assert "needs a CUDA device" in caplog.text
    assert torch.equal(got.tokens, eager_greedy(model, x, 4))
    for layer in mindskip_layers(model := routed("mlp", "token")).values():
        layer.masked_decode = False
    got = CapturedDecoder(model, mode="compile", backend="eager").generate(x, 4)
    assert got.mode == "eager" and "masked_decode=False" in got.reason
    assert torch.equal(got.tokens, eager_greedy(model, x, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("routing", ROUTINGS)
def test_cuda_graph_decode_equals_eager(unit, routing):
    model = routed(unit, routing).cuda()
    decoder = CapturedDecoder(model, mode="graph")
    for seed in (0, 1):
        x = ids(seed=seed).cuda()
        got = decoder.generate(x, 8)
        assert got.mode == "graph", got.reason
        assert torch.equal(got.tokens, eager_greedy(model, x, 8))


def test_captured_cache_kind_in_the_profiler():
    """The profiler's ``captured`` cache kind (``mindskip.profile.captured``): its rows are
    measured (eagerly here, no CUDA) and decode the same tokens as dynamic."""
    from mindskip.profile import ProfileConfig, profile

    config = ProfileConfig(
        model="tiny", units=("attn", "block"), num_routed=4, grid=((2, 8, 4),),
        caches=("dynamic", "captured"), decode_timer="loop", repeats=1, warmup=0,
    )  # fmt: skip
    rows = profile(config, model=make_model(), progress=False).rows
    captured = [r for r in rows if r["cache"] == "captured"]
    assert len(captured) == 5 and all(r["status"] == "ok" for r in captured)
    assert all("tokens == dynamic" in r["check"] for r in captured)
