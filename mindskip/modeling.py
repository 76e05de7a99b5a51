"""Load a causal LM and its tokenizer once per job: the embedded SmolLM2 folder
(``"embedded"``), a hub id, or a local folder."""

from __future__ import annotations

import json
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


def resolve_model_source(source: str | Path, assets_dir: str | Path = "results/assets") -> str:
    """``"embedded"`` becomes the converted SmolLM2 folder listed in the assets manifest."""
    if str(source) != "embedded":
        return str(source)
    manifest = Path(assets_dir) / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} is missing: build the embedded assets first "
            "(`python -m mindskip.data prepare --out results/assets`)"
        )
    for asset in json.loads(manifest.read_text())["assets"]:
        if asset["kind"] == "model":
            return asset["path"]
    raise FileNotFoundError(f"{manifest} lists no model (was it prepared with --no-model?)")


def pick_device(device: str = "auto") -> str:
    """``"auto"``: CUDA when there is a GPU, else the CPU."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    path_or_id: str | Path,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
    **kwargs: Any,
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)``: ``AutoModelForCausalLM`` in eval mode on ``device``.

    ``path_or_id`` may be ``"embedded"`` (:func:`resolve_model_source`) and ``device``
    ``"auto"``. Extra keyword arguments go to ``from_pretrained`` (e.g.
    ``attn_implementation``). A tokenizer without a pad token pads with EOS.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model_source(path_or_id)
    device = pick_device(device)
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=resolve_dtype(dtype, device), **kwargs
    )
    return model.to(device).eval(), tok
