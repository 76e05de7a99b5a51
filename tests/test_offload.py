"""Models dispatched by accelerate (``device_map``, CPU or disk offload): the routed wrapper
and the hand-removed layer keep what accelerate's hook on the wrapped layer does (inputs
moved to its device, offloaded weights loaded), and ``load_model`` loads through
``device_map`` on CUDA and records what the model really is."""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import dispatch_model
from conftest import make_model, randomise_routers

from mindskip import MindSkipConfig, apply_mindskip, mindskip_layers, remove_sublayers
from mindskip.modeling import describe_model, load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
OFFLOADED = (2, 3, 4)


def ids(batch: int = 3, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 97, (batch, length), generator=g)


def device_map(layers: int = 6) -> dict[str, str]:
    m = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu"}
    m["lm_head"] = "cpu"
    m |= {f"model.layers.{i}": "disk" if i in OFFLOADED else "cpu" for i in range(layers)}
    return m


def disk_offloaded(model: torch.nn.Module, folder) -> torch.nn.Module:
    """Layers 2-4 offloaded to disk, each with one hook on the decoder layer that loads all
    its weights (``preload_module_classes``): a wrapper that bypassed it would compute
    with ``meta`` weights."""
    out = dispatch_model(
        copy.deepcopy(model),
        device_map(),
        offload_dir=str(folder),
        preload_module_classes=["LlamaDecoderLayer"],
    )
    layer = out.model.layers[3]
    assert layer._hf_hook.offload and layer.self_attn.q_proj.weight.device.type == "meta"
    return out


@torch.no_grad()
@pytest.mark.parametrize("unit", ["attn", "mlp", "block"])
@pytest.mark.parametrize("routing", ["sequence", "token"])
def test_offloaded_routed_model_equals_the_same_model_in_memory(tmp_path, unit, routing):
    dense = make_model()
    cfg = MindSkipConfig(unit=unit, routing=routing, num_routed=4)
    plain = apply_mindskip(copy.deepcopy(dense), cfg)
    off = apply_mindskip(disk_offloaded(dense, tmp_path), cfg)
    for m in (plain, off):
        randomise_routers(m, seed=1)
    routers = [layer.router.proj.weight for layer in mindskip_layers(off).values()]
    assert all(w.device.type == "cpu" for w in routers)  # the execution device, not meta
    x = ids()
    want = plain(x).logits
    exec_ = [layer.last_exec for layer in mindskip_layers(plain).values()]
    assert any(e.any() and not e.all() for e in exec_), "decisions should be mixed"
    torch.testing.assert_close(off(x).logits, want, rtol=0, atol=0)
    # cached greedy decoding: decisions stored at prefill, offloaded weights at every step
    gen = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(off.generate(x, **gen), plain.generate(x, **gen))


@torch.no_grad()
def test_offloaded_hand_removed_model_equals_in_memory(tmp_path):
    dense = make_model()
    want = remove_sublayers(copy.deepcopy(dense), OFFLOADED, "attn")(ids()).logits
    got = remove_sublayers(disk_offloaded(dense, tmp_path), OFFLOADED, "attn")(ids()).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _save_tiny(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    make_model().save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(97)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t2").save_pretrained(
        folder
    )


@torch.no_grad()
def test_load_model_with_an_offloading_device_map(tmp_path):
    """transformers' own dispatch (device_map + offload_folder), through load_model: the
    routed model equals the one loaded whole, and each routed layer's hook still runs."""
    _save_tiny(tmp_path / "m")
    whole, _ = load_model(tmp_path / "m", dtype="float32")
    off, tok = load_model(
        tmp_path / "m", dtype="float32", device_map=device_map(), offload_folder=tmp_path / "o"
    )
    assert tok.pad_token == "t0"
    info = describe_model(off)
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["device_map"]["model.layers.3"] == "disk"
    assert describe_model(whole) == {"dtype": "float32", "device": "cpu", "device_map": None}
    cfg = MindSkipConfig(unit="block", num_routed=4)
    for m in (whole, off):
        apply_mindskip(m, cfg)
        randomise_routers(m, seed=2)
    calls: list[int] = []
    for i, layer in mindskip_layers(off).items():
        hook, pre = layer.layer._hf_hook, layer.layer._hf_hook.pre_forward
        hook.pre_forward = lambda *a, _f=pre, _i=i, **k: calls.append(_i) or _f(*a, **k)
    x = ids()
    torch.testing.assert_close(off(x).logits, whole(x).logits, rtol=0, atol=0)
    assert calls == [1, 2, 3, 4]
    assert describe_model(off)["dtype"] == "float32"  # the float32 routers are not counted


def test_load_model_on_cuda_loads_through_device_map(monkeypatch):
    """On CUDA the weights go straight to the GPU (device_map), never CPU first then .to."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen: dict = {}

    class Fake(torch.nn.Module):
        def to(self, *a, **k):  # pragma: no cover - must not be called
            raise AssertionError("load_model moved the model after loading")

    class Tok:
        pad_token, eos_token = None, "</s>"

    def fake_model(source, **kwargs):
        seen.update(kwargs)
        return Fake()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda source: Tok())
    load_model("some/model", device="cuda:1")
    assert seen == {"dtype": torch.bfloat16, "device_map": {"": "cuda:1"}}
    load_model("some/model", device="cuda", device_map="auto", max_memory={0: "10GiB"})
    assert seen["device_map"] == "auto" and seen["max_memory"] == {0: "10GiB"}


def test_a_one_device_map_adds_no_hooks(tmp_path):
    """``{"": device}`` (what load_model uses on one GPU) puts no accelerate hook on any
    module, so nothing is moved per call and decode steps can be captured."""
    from mindskip.decode import CapturedDecoder

    _save_tiny(tmp_path / "m")
    model, _ = load_model(tmp_path / "m", dtype="float32", device_map={"": "cpu"})
    assert not any(hasattr(m, "_hf_hook") for m in model.modules())
    assert CapturedDecoder(model, mode="eager").generate(ids(), 3).tokens.shape == (3, 3)
