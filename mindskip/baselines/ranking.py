"""Static-drop rankings ("What Matters in Transformers?"): the sublayers whose output is
most similar to their input are dropped first."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import UNITS, ConfigError
from ..files import ResultFileError, read_json, write_json
from ..provenance import stamp
from ..selection import first_k
from ..surgery import decoder_layers, is_mindskip
from .skip import Batch, _decoder_forward, as_batches

RANKING_FORMAT = 1
LAYER0_NOTE = (
    "layer 0 is not a candidate: mindskip never routes it (it anchors the KV cache "
    "length and the attention mask that transformers builds from it)"
)


@torch.no_grad()
def layer_similarities(
    model: nn.Module, batches: Sequence[Batch]
) -> tuple[dict[str, list[float]], int]:
    """Mean cosine similarity between each unit's input and output, for every layer.

    ``attn``: x vs x + attn(norm(x)); ``mlp``: x + attn(...) vs the layer output; ``block``:
    layer input vs layer output. Averaged over the real tokens of all batches (each token
    counts once). Hooks on the stock modules read the tensors; the model is not changed.
    Returns ``({unit: [similarity per layer]}, number of real tokens)``.
    """
    if is_mindskip(model):
        raise ValueError("rank importance on the dense model (remove_mindskip first)")
    layers = decoder_layers(model)
    sums = {u: [0.0] * len(layers) for u in UNITS}
    seen: dict[str, torch.Tensor] = {}

    def cos(a: torch.Tensor, b: torch.Tensor) -> float:
        c = nn.functional.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8)
        return float((c * seen["mask"]).sum())

    def grab_input(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    def grab_attn(_m: nn.Module, _args: tuple, out: Any) -> None:
        seen["a"] = out[0] if isinstance(out, tuple) else out

    def accumulate(i: int, out: Any) -> None:
        y = out[0] if isinstance(out, tuple) else out
        x, mid = seen["x"], seen["x"].float() + seen["a"].float()
        sums["attn"][i] += cos(x, mid)
        sums["mlp"][i] += cos(mid, y)
        sums["block"][i] += cos(x, y)

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(grab_input, with_kwargs=True))
        handles.append(layer.self_attn.register_forward_hook(grab_attn))
        handles.append(layer.register_forward_hook(lambda _m, _a, out, i=i: accumulate(i, out)))
    tokens = 0
    try:
        for batch in batches:
            mask = batch.get("attention_mask")
            mask = torch.ones_like(batch["input_ids"]) if mask is None else mask
            seen["mask"] = mask.to(next(model.parameters()).device).float()
            tokens += int(mask.sum())
            _decoder_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    if tokens == 0:
        raise ValueError("no real tokens in the calibration data")
    return {u: [s / tokens for s in v] for u, v in sums.items()}, tokens


def _rank(similarity: Sequence[float], include_final: bool) -> list[dict[str, float]]:
    last = len(similarity) if include_final else len(similarity) - 1
    rows = [{"layer": i, "similarity": similarity[i]} for i in range(1, last)]
    return sorted(rows, key=lambda r: (-r["similarity"], r["layer"]))


def rank_importance(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Sequence[Batch],
    unit: str = "attn",
    max_length: int = 256,
    batch_size: int = 8,
    *,
    include_final: bool = True,
) -> list[dict[str, float]]:
    """Candidate layers, most similar (least important, dropped first) first.

    Candidates are layers 1..L-1: layer 0 is excluded (:data:`LAYER0_NOTE`); the final
    layer is included by default, as in the static-drop paper, which ranks all layers
    (``include_final=False`` keeps to MindSkip's routed range). ``tokenizer=None`` takes
    pre-tokenised batches in ``texts``.
    """
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {UNITS}, got {unit!r}")
    sims, _ = layer_similarities(model, as_batches(tokenizer, texts, max_length, batch_size))
    return _rank(sims[unit], include_final)


def ranking_record(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    unit: str = "attn",
    max_length: int = 256,
    batch_size: int = 8,
    *,
    include_final: bool = True,
    model_id: str = "",
    data: str = "",
) -> dict[str, Any]:
    """:func:`rank_importance` with everything needed to inspect and reuse it (JSON-ready):
    the calibration data (description, n, tokens, sha256), the model and the versions."""
    if unit not in UNITS:
        raise ConfigError(f"unit must be one of {UNITS}, got {unit!r}")
    sims, tokens = layer_similarities(model, as_batches(tokenizer, texts, max_length, batch_size))
    num_layers = len(decoder_layers(model))
    last = num_layers if include_final else num_layers - 1
    texts_sha = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    return {
        "format": RANKING_FORMAT,
        "unit": unit,
        "criterion": "mean cosine similarity of the unit's input and output hidden states "
        "over real tokens; the most similar are dropped first",
        "model_id": model_id,
        "num_layers": num_layers,
        "candidates": list(range(1, last)),
        "include_final": include_final,
        "excluded": {"0": LAYER0_NOTE}
        | ({} if include_final else {str(num_layers - 1): "final layer (include_final=False)"}),
        "ranking": _rank(sims[unit], include_final),
        "similarity_all_layers": sims,
        "calibration": {
            "data": data,
            "n_samples": len(texts),
            "n_tokens": tokens,
            "max_length": max_length,
            "batch_size": batch_size,
            "texts_sha256": texts_sha,
        },
        **stamp(),
    }


def save_ranking(record: Mapping[str, Any], path: str | Path) -> Path:
    return write_json(path, record)


def load_ranking(path: str | Path) -> dict[str, Any]:
    """A record written by :func:`save_ranking`, checked for format and order; anything
    else is a :class:`~mindskip.files.ResultFileError` that names the file."""
    record = read_json(path, "importance ranking")
    if not isinstance(record, dict) or record.get("format") != RANKING_FORMAT:
        raise ResultFileError(
            f"{path} is not a format-{RANKING_FORMAT} importance ranking; delete it and "
            "rerun the rank_importance step"
        )
    sims = [r["similarity"] for r in record.get("ranking", [])]
    if not sims or sims != sorted(sims, reverse=True):
        raise ResultFileError(
            f"{path}: the ranking is empty or not sorted by similarity; delete it and rerun "
            "the rank_importance step"
        )
    return record


def drop_layers(
    ranking: Sequence[Mapping[str, Any]] | Mapping[str, Any], k: int
) -> tuple[int, ...]:
    """The ``k`` layers dropped first (sorted), from a ranking or a ranking record."""
    rows = ranking["ranking"] if isinstance(ranking, Mapping) else ranking
    try:
        return first_k(list(rows), k)
    except ValueError as e:
        raise ConfigError(f"{e} (the ranking's candidate layers)") from None
