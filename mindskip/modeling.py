"""Load a causal LM and its tokenizer once per job (a hub id or a local folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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


def load_model(
    path_or_id: str | Path,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
    **kwargs: Any,
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)``: ``AutoModelForCausalLM`` in eval mode on ``device``.

    Extra keyword arguments go to ``from_pretrained`` (e.g. ``attn_implementation``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(path_or_id)
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=resolve_dtype(dtype, device), **kwargs
    )
    return model.to(device).eval(), tok
