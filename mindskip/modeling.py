"""Load a causal LM and its tokenizer once per job: the embedded SmolLM2 folder
(``"embedded"``), a hub id, or a local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .sources import resolve_model_source as resolve_model_source  # re-exported

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """A torch dtype; ``"auto"``/None gives bfloat16 on CUDA and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        known = sorted(_DTYPES)
        raise ValueError(f"unknown dtype {dtype!r}; use one of {known} or 'auto'") from None


def pick_device(device: str = "auto") -> str:
    """``"auto"``: CUDA when there is a GPU, else the CPU."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    path_or_id: str | Path,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
    device_map: str | dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)``: ``AutoModelForCausalLM`` in eval mode on ``device``.

    ``path_or_id`` may be ``"embedded"`` (:func:`resolve_model_source`) and ``device``
    ``"auto"``. On CUDA the weights are loaded straight onto the GPU through ``device_map``
    (``{"": device}`` unless ``device_map`` is given, e.g. ``"auto"`` to spread a model over
    several GPUs or offload it), never into CPU memory first. Extra keyword arguments go to
    ``from_pretrained`` (e.g. ``attn_implementation``, ``max_memory``, ``offload_folder``).
    A tokenizer without a pad token pads with EOS.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_source(path_or_id)
    device = pick_device(device)
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if device_map is None and str(device).startswith("cuda"):
        device_map = {"": device}
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=resolve_dtype(dtype, device), device_map=device_map, **kwargs
    )
    if device_map is None:
        model = model.to(device)
    return model.eval(), tok


def model_num_layers(path_or_id: str | Path) -> int:
    """The decoder layers of a model, from its config alone (no weights are read)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model_source(path_or_id))
    return int(config.get_text_config().num_hidden_layers)


def describe_model(model: torch.nn.Module) -> dict[str, Any]:
    """What the model really is, for result records: ``dtype`` (of its floating weights,
    the float32 routers aside), ``device`` (where its inputs go: the input embeddings'
    device) and ``device_map`` (accelerate's ``hf_device_map``, or None when not dispatched).
    """
    params = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    weights = [p for n, p in params if ".router." not in n] or [p for _, p in params]
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in weights})
    from .layers import execution_device

    device: torch.device | None = None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embed is not None and getattr(embed, "weight", None) is not None:
        device = execution_device(embed)  # an offloaded embedding's weight sits on meta
    elif weights:
        device = weights[0].device
    device_map = getattr(model, "hf_device_map", None)
    return {
        "dtype": dtypes[0] if len(dtypes) == 1 else ",".join(dtypes),
        "device": str(device) if device is not None else "cpu",
        "device_map": {k: str(v) for k, v in device_map.items()} if device_map else None,
    }
