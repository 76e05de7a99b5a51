"""LoRA as the paper runs it: a LoRA-only fine-tune, routers tuned on top of the frozen
adapters, and ``load_adapters`` giving the same model as loading everything by hand."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file
from test_train import FAST, make_records, make_tokenizer

from mindskip import MindSkipConfig, apply_mindskip, load_routers, mindskip_layers
from mindskip.checkpoint import ROUTERS_FILE
from mindskip.train import LORA_FILE, TrainConfig, load_adapters, train_lora, train_routers
from mindskip.train.lora import PEFT_PREFIX

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

CFG = MindSkipConfig(num_routed=4, capacity_lambda=5.0, capacity_target=0.5)
TARGETS = ("q_proj", "v_proj")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A LoRA-only fine-tune, then routers tuned on the LoRA-tuned model."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lora")
    recs = make_records(40)
    tok = make_tokenizer()
    tc = TrainConfig(**{**FAST, "lr": 2e-2, "lora_targets": TARGETS, "epochs": 2})
    lora_m = train_lora(make_model(), tok, recs[:32], recs[32:], tc, root / "lora", r=2)
    model = make_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rt = train_routers(
        model, tok, recs[:32], recs[32:], CFG, TrainConfig(**{**FAST, "lr": 1e-2}),
        root / "routers", lora_dir=root / "lora",
    )  # fmt: skip
    return {"root": root, "lora": lora_m, "routers": rt, "model": model, "before": before}


def _ids() -> torch.Tensor:
    return torch.randint(8, 97, (3, 12), generator=torch.Generator().manual_seed(0))


def test_lora_only_fine_tune(runs):
    m = runs["lora"]
    assert m["kind"] == "lora" and m["optimizer_steps"] == 8
    assert m["val"]["ppl_lora"] != m["val"]["ppl_base"]
    assert (runs["root"] / "lora" / LORA_FILE).is_file()
    keys = load_file(str(runs["root"] / "lora" / LORA_FILE))
    assert keys and all(".layer." not in k and ".inner." not in k for k in keys)  # canonical
    assert all(k.startswith(PEFT_PREFIX + "model.layers.") for k in keys)  # peft's names
    assert any(float(v.abs().sum()) > 0 for k, v in keys.items() if "lora_B" in k)


def test_routers_tune_on_frozen_adapters(runs):
    m, model = runs["routers"], runs["model"]
    assert m["lora"]["mode"] == "frozen" and len(m["lora"]["sha256"]) == 64
    assert m["trainable_parameters"] == m["router_parameters"] == 4 * 32
    saved = {
        k.removeprefix(PEFT_PREFIX): v
        for k, v in load_file(str(runs["root"] / "lora" / LORA_FILE)).items()
    }
    got = {k.replace(".layer.", ".").replace(".inner.", ".").replace(".default", ""): p
           for k, p in model.named_parameters() if "lora_" in k}  # fmt: skip
    assert set(got) == set(saved)
    for k, v in saved.items():
        assert torch.equal(got[k].detach(), v), k  # the adapters did not move
        assert not got[k].requires_grad


def _by_hand(root, adapters: bool) -> torch.nn.Module:
    """Routers and adapters copied into a fresh model without load_adapters/load_routers."""
    model = apply_mindskip(make_model(), CFG)
    if adapters:
        inject_adapter_in_model(
            LoraConfig(r=2, lora_alpha=16.0, target_modules=list(TARGETS)), model
        )
        params = dict(model.named_parameters())
        for key, value in load_file(str(root / "lora" / LORA_FILE)).items():
            name = (
                key.removeprefix(PEFT_PREFIX)
                .replace(".lora_A.", ".lora_A.default.")
                .replace(".lora_B.", ".lora_B.default.")
            )
            parts = name.split(".")
            if int(parts[2]) in mindskip_layers(model):  # the wrapper, then attention's unit
                name = ".".join([*parts[:3], "layer", parts[3], "inner", *parts[4:]])
            params[name].data.copy_(value)
    routers = load_file(str(root / "routers" / ROUTERS_FILE))
    for i, layer in mindskip_layers(model).items():
        layer.router.proj.weight.data.copy_(routers[f"layers.{i}.router.weight"])
    return model.eval()


@torch.no_grad()
def test_adapters_change_the_routed_model_and_load_like_by_hand(runs):
    root, x = runs["root"], _ids()
    with_adapters = load_routers(load_adapters(make_model(), root / "lora"), root / "routers")
    other_order = load_adapters(load_routers(make_model(), root / "routers"), root / "lora")
    routers_only = load_routers(make_model(), root / "routers")
    got = with_adapters.eval()(x).logits
    assert not torch.allclose(got, routers_only.eval()(x).logits, atol=1e-4)
    torch.testing.assert_close(got, _by_hand(root, adapters=True)(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(got, other_order.eval()(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(
        routers_only(x).logits, _by_hand(root, adapters=False)(x).logits, rtol=0, atol=0
    )
    # the trained model in memory is the one that was saved
    torch.testing.assert_close(runs["model"].eval()(x).logits, got, rtol=0, atol=0)
    merged = load_routers(load_adapters(make_model(), root / "lora", merge=True), root / "routers")
    torch.testing.assert_close(merged.eval()(x).logits, got, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_peft_loads_the_saved_adapters_into_a_stock_model(runs):
    """The folder is in peft's own layout: PeftModel.from_pretrained reads it and gives the
    model that load_adapters gives (and not the model without adapters)."""
    from peft import PeftModel

    x = _ids()
    ours = load_adapters(make_model(), runs["root"] / "lora").eval()(x).logits
    peft_model = PeftModel.from_pretrained(make_model(), str(runs["root"] / "lora")).eval()
    torch.testing.assert_close(peft_model(x).logits, ours, rtol=0, atol=0)
    assert not torch.allclose(make_model().eval()(x).logits, ours, atol=1e-4)


def test_load_adapters_refuses_what_does_not_fit(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        load_adapters(make_model(), tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        load_adapters(make_model(num_hidden_layers=4), runs["root"] / "lora")
    model = load_adapters(make_model(), runs["root"] / "lora")
    with pytest.raises(ValueError, match="already has LoRA"):
        load_adapters(model, runs["root"] / "lora")


def test_lora_dir_and_joint_lora_exclude_each_other(runs):
    recs = make_records(10)
    with pytest.raises(ValueError, match="exclude"):
        train_routers(
            make_model(), make_tokenizer(), recs[:8], recs[8:], CFG,
            TrainConfig(**{**FAST, "lora_r": 2}), lora_dir=runs["root"] / "lora",
        )  # fmt: skip


def test_a_profiled_lora_method_runs_merged_adapters_and_leaves_dense_alone(runs):
    """The profiler times routers on a LoRA model with the adapters merged (a deployed
    LoRA model costs what the base model costs; unmerged, the adapters' matmuls would be
    timed as the method's cost), on a copy that owns its weights: the dense model it is
    timed against keeps its own weights and outputs."""
    from peft.tuners.lora import LoraLayer

    from mindskip.methods import Routed
    from mindskip.profile.variants import method_variant

    dense = make_model().eval()
    x = _ids()
    before = {n: p.detach().clone() for n, p in dense.named_parameters()}
    logits = dense(x).logits
    spec = Routed(routers=str(runs["root"] / "routers"), lora=str(runs["root"] / "lora"))
    v = method_variant("r", spec, dense, "random weights", lambda m: m(x))
    layers = [m for m in v.model.modules() if isinstance(m, LoraLayer)]
    assert layers and all(m.merged for m in layers)
    assert "LoRA merged" in v.routers  # the record says how it ran
    for n, p in dense.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    torch.testing.assert_close(dense(x).logits, logits, rtol=0, atol=0)
    unmerged = load_adapters(make_model(), runs["root"] / "lora")
    load_routers(unmerged, runs["root"] / "routers")
    torch.testing.assert_close(v.model.eval()(x).logits, unmerged.eval()(x).logits)
