"""LoRA as the paper runs it: a LoRA-only fine-tune, then routers tuned on top of it.

- :func:`train_lora`: the dense model (no routers), LoRA adapters (peft) on the attention
  projections, LM loss on responses; writes an :class:`~mindskip.artefacts.AdapterFolder`
  (peft's layout: ``adapter_model.safetensors`` + ``adapter_config.json``; + ``metrics.json``).
- :func:`load_adapters`: puts saved adapters into a model, with or without routers, before
  or after :func:`mindskip.apply_mindskip`, frozen. Evaluation and profiling call it.
- :func:`mindskip.train.train_routers` with ``lora_dir=`` loads them first and keeps them
  frozen; ``TrainConfig.lora_r > 0`` instead trains adapters jointly with the routers (the
  adapters are saved beside the routers, in the same format).

Adapter state goes through ``peft.get_peft_model_state_dict`` /
``set_peft_model_state_dict``. Keys are stored as peft stores them for the model's own
module names with the routing wrappers taken out
(``base_model.model.model.layers.13.self_attn.q_proj.lora_A.weight``), so adapters trained
on the dense model load into a routed one and the other way round, and peft's
``PeftModel.from_pretrained(model, folder)`` loads them into a stock model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artefacts import AdapterFolder
from ..files import atomic_path, write_json
from ..surgery import is_mindskip
from .examples import encode_records, records_sha256
from .recipe import TrainConfig
from .step import device_of, freeze_except, make_setup, train_step
from .validate import evaluate

log = logging.getLogger(__name__)

LORA_FILE = AdapterFolder.weights_file
LORA_CONFIG_FILE = AdapterFolder.config_file
METRICS_FILE = AdapterFolder.metrics_file
PEFT_PREFIX = "base_model.model."  # what a PeftModel puts before the model's own names


def _wrapper_prefixes(model: nn.Module) -> set[str]:
    """The module names that canonical keys leave out: the stock layer inside a routing
    wrapper (``layers.3.layer``) and the stock submodule inside a unit
    (``layers.3.layer.self_attn.inner``)."""
    from ..layers import MindSkipLayer, PrunedLayer
    from ..units import RemovedUnit, RoutedUnit

    inner = {
        MindSkipLayer: "layer",
        PrunedLayer: "layer",
        RoutedUnit: "inner",
        RemovedUnit: "inner",
    }
    return {f"{n}.{inner[type(m)]}" for n, m in model.named_modules() if type(m) in inner}


def _canonical(key: str, wrapped: set[str]) -> str:
    """``key`` with the wrapped module names left out."""
    kept, path = [], ""
    for part in key.split("."):
        path = f"{path}.{part}" if path else part
        if path not in wrapped:
            kept.append(part)
    return ".".join(kept)


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if "lora_" in n]


def add_lora(
    model: nn.Module, *, r: int, alpha: float, dropout: float, targets: Sequence[str]
) -> list[nn.Parameter]:
    """Inject fresh LoRA adapters (peft, in place) and return their parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    if lora_parameters(model):
        raise ValueError("the model already has LoRA adapters")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets))
    inject_adapter_in_model(config, model)
    params = lora_parameters(model)
    if not params:
        raise ValueError(f"no LoRA module matched lora_targets={list(targets)}")
    return params


def save_adapters(model: nn.Module, folder: str | Path) -> Path:
    """Write the model's adapters and their LoRA config to ``folder`` in peft's layout."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = AdapterFolder(folder)
    prefixes = _wrapper_prefixes(model)
    state = {
        PEFT_PREFIX + _canonical(k, prefixes): v.detach().cpu().contiguous()
        for k, v in get_peft_model_state_dict(model).items()
    }
    with atomic_path(out.weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    config = model.peft_config["default"].to_dict()
    config["peft_type"] = "LORA"
    config["target_modules"] = sorted(config["target_modules"])
    config["inference_mode"] = True
    config["base_model_name_or_path"] = getattr(model.config, "_name_or_path", None) or None
    write_json(out.config, config)
    return out.path


def load_adapters(model: nn.Module, folder: str | Path, *, merge: bool = False) -> nn.Module:
    """Load adapters saved by :func:`save_adapters` (or :func:`train_lora`) into ``model``.

    Works with and without routers. The adapters are frozen. ``merge=True`` folds them into
    the base weights (faster to run; logits equal up to rounding). Raises when the file
    does not fit the model (missing or unexpected keys).
    """
    from peft import (
        LoraConfig,
        get_peft_model_state_dict,
        inject_adapter_in_model,
        set_peft_model_state_dict,
    )
    from safetensors.torch import load_file

    folder = AdapterFolder(folder)
    if lora_parameters(model):
        raise ValueError("the model already has LoRA adapters; load adapters into a fresh model")
    folder.check()
    raw = folder.read_config()
    if raw.pop("peft_type", None) != "LORA":
        raise ValueError(f"{folder.config} is not a LoRA adapter config")
    known = set(LoraConfig.__dataclass_fields__)
    config = LoraConfig(**{k: v for k, v in raw.items() if k in known})
    config.inference_mode = True
    inject_adapter_in_model(config, model)
    prefixes = _wrapper_prefixes(model)
    actual = {_canonical(k, prefixes): k for k in get_peft_model_state_dict(model)}
    saved = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(folder.weights)).items()}
    if set(saved) != set(actual):
        missing, extra = sorted(set(actual) - set(saved)), sorted(set(saved) - set(actual))
        raise ValueError(
            f"{folder.weights} does not fit this model: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    device = device_of(model)
    state = {actual[k]: v.to(device) for k, v in saved.items()}
    set_peft_model_state_dict(model, state)
    for p in lora_parameters(model):
        p.requires_grad_(False)
    if merge:
        from peft.tuners.lora import LoraLayer

        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.merge()
    return model


def adapters_sha256(folder: str | Path) -> str:
    return AdapterFolder(folder).sha256()


def set_adapters_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every LoRA layer on or off (off: the base model's output)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.enable_adapters(enabled)


def train_lora(
    model: nn.Module,
    tokenizer: Any,
    train_records: Sequence[dict[str, Any]],
    val_records: Sequence[dict[str, Any]],
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    r: int = 8,
    data_source: str = "records passed in memory",
) -> dict[str, Any]:
    """LoRA-only fine-tune of the dense ``model`` (LM loss on responses); returns metrics.

    Adapters of rank ``r`` (``train_config.lora_alpha/_dropout/_targets``); every other
    weight is frozen. ``out_dir`` receives the adapters in peft's layout and
    ``metrics.json`` (validation perplexity with and without the adapters). The model is
    left in eval mode with the adapters in place (frozen).
    """
    cfg = (train_config or TrainConfig()).replace(objective="lm", penalty="none")
    if is_mindskip(model):
        raise ValueError("train_lora fine-tunes the dense model: remove its routers first")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    params = add_lora(
        model, r=r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, targets=cfg.lora_targets
    )
    freeze_except(model, params)
    train_ex = encode_records(tokenizer, train_records, cfg.max_length, cfg.template)
    val_ex = encode_records(tokenizer, val_records, cfg.max_length, cfg.template)
    curve = _lora_loop(model, tokenizer, train_ex, params, cfg)
    for p in params:
        p.requires_grad_(False)
    batch = cfg.eval_batch or cfg.micro_batch
    val: dict[str, Any] = {"sequences": len(val_ex)}
    if val_ex:
        set_adapters_enabled(model, False)
        base = evaluate(model, val_ex, tokenizer, batch, bf16=cfg.bf16)
        set_adapters_enabled(model, True)
        tuned = evaluate(model, val_ex, tokenizer, batch, bf16=cfg.bf16)
        val.update(ppl_base=base["ppl"], ppl_lora=tuned["ppl"], tokens=tuned["tokens"])
    model.eval()
    metrics = _lora_metrics(cfg, r, curve, val, train_records, train_ex, val_ex, data_source)
    metrics["wall_time_s"] = time.perf_counter() - t0
    if out_dir is not None:
        save_adapters(model, out_dir)
        metrics["lora_sha256"] = adapters_sha256(out_dir)
        write_json(AdapterFolder(out_dir).metrics, metrics)
    return metrics


def _lora_loop(
    model: nn.Module,
    tokenizer: Any,
    train_ex: list,
    params: list[nn.Parameter],
    cfg: TrainConfig,
) -> list[dict[str, Any]]:
    if not train_ex:
        raise ValueError("no training example keeps a response token within max_length")
    loader, setup = make_setup(model, tokenizer, train_ex, params, cfg, None)
    total = cfg.epochs * len(loader)
    model.train()
    curve = []
    for _ in range(cfg.epochs):
        for batch in loader:
            entry = train_step(model, batch, setup)
            entry = {"step": len(curve) + 1, **entry}
            for k in ("capacity", "capacity_per_layer", "capacity_loss", "lambda_scale"):
                entry.pop(k, None)
            curve.append(entry)
            log.info("lora step %d/%d: loss %.4f", entry["step"], total, entry["lm_loss"])
    return curve


def _lora_metrics(
    cfg: TrainConfig,
    r: int,
    curve: list[dict[str, Any]],
    val: dict[str, Any],
    train_records: Sequence[dict[str, Any]],
    train_ex: list,
    val_ex: list,
    data_source: str,
) -> dict[str, Any]:
    from ..provenance import stamp

    return {
        "kind": "lora",
        "lora_r": r,
        "log": curve,
        "val": val,
        "optimizer_steps": len(curve),
        "tokens_seen": sum(e["tokens"] for e in curve),
        "train_config": cfg.to_dict(),
        "data": {
            "source": data_source,
            "sha256": records_sha256(train_records),
            "train_records": len(train_records),
            "train_examples": len(train_ex),
            "val_examples": len(val_ex),
        },
        "provenance": stamp(seed=cfg.seed),
    }
