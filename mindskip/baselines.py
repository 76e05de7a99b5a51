"""Baselines and skip-ratio control, all through the same MindSkip wrapper.

Every method is a :class:`MethodSpec`, and :func:`prepare_method` turns a dense model into
that method, so evaluation and profiling share one code path:

- ``dense``: the stock model (any routers are removed).
- ``router``: trained routers (:func:`mindskip.load_routers`), optionally with calibrated
  per-layer thresholds (:func:`calibrate_thresholds`).
- ``static``: the layers' ``unit`` is dropped for every sequence: the wrapper with every
  decision forced to skip. The layers come from :func:`rank_importance` ("What Matters in
  Transformers?": the sublayers whose output is most similar to their input go first).
- ``random``: each sequence skips each layer at a given rate, decided by a hash of
  (seed, layer, the sequence's real token ids), so a decision never depends on the batch.

The skip ratio is the same for every method: the fraction of *all* layers' ``unit``
sublayers skipped, averaged over sequences (``routing_stats(model).skip_ratio``; 0 for a
model without routers). See :func:`realised_skip_ratio` and :func:`measure_skip_ratio`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ROUTINGS, UNITS, ConfigError, MindSkipConfig
from .layers import MindSkipLayer
from .provenance import versions
from .surgery import (
    PrunedLayer,
    apply_mindskip,
    decoder_layers,
    forced_decisions,
    get_config,
    is_mindskip,
    load_routers,
    mindskip_layers,
    read_router_config,
    remove_mindskip,
    reset_routing_stats,
    routing_stats,
    set_decisions,
    set_thresholds,
)

log = logging.getLogger(__name__)

KINDS = ("dense", "router", "static", "random")
CALIBRATION_MODES = ("per_layer", "global")
RANKING_FORMAT = 1
LAYER0_NOTE = (
    "layer 0 is not a candidate: mindskip never routes it (it anchors the KV cache "
    "length and the attention mask that transformers builds from it)"
)

Batch = Mapping[str, torch.Tensor]  # input_ids (B, T) and attention_mask (B, T), 1 = real


# --------------------------------------------------------------------------- method spec
def _pairs(value: Any, name: str) -> tuple[tuple[int, float], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    pairs = tuple(sorted((int(i), float(v)) for i, v in items))
    for i, v in pairs:
        if i < 1 or not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name}: layer {i} -> {v} (layers >= 1, values in [0, 1])")
    if len({i for i, _ in pairs}) != len(pairs):
        raise ConfigError(f"{name} has a layer twice: {pairs}")
    return pairs


@dataclass(frozen=True)
class MethodSpec:
    """One method, as evaluation and profiling see it; :func:`prepare_method` applies it.

    Attributes:
        kind: ``"dense"``, ``"router"``, ``"static"`` or ``"random"``.
        unit: the sublayer skipped: ``"attn"``, ``"mlp"`` or ``"block"``.
        routing: ``"sequence"`` or ``"token"`` (``random`` needs ``"sequence"``).
        layers: ``static`` only: the layers whose ``unit`` is dropped.
        routers_dir: ``router`` only: a folder written by :func:`mindskip.save_routers`.
        thresholds: ``router`` only: per-layer tau, ``((layer, tau), ...)`` or a mapping.
        rates: ``random`` only: per-layer skip rates, ``((layer, rate), ...)`` or a mapping.
        seed: ``random`` only: the seed of the decision hash.
    """

    kind: str = "dense"
    unit: str = "attn"
    routing: str = "sequence"
    layers: tuple[int, ...] = ()
    routers_dir: str | None = None
    thresholds: tuple[tuple[int, float], ...] = ()
    rates: tuple[tuple[int, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.unit not in UNITS or self.routing not in ROUTINGS:
            raise ConfigError(f"bad unit/routing: {self.unit!r}/{self.routing!r}")
        layers = tuple(sorted(int(i) for i in self.layers))
        if any(i < 1 for i in layers) or len(set(layers)) != len(layers):
            raise ConfigError(
                f"layers must be distinct and >= 1 (layer 0 is never routed): {layers}"
            )
        set_ = object.__setattr__
        set_(self, "layers", layers)
        set_(self, "thresholds", _pairs(self.thresholds, "thresholds"))
        set_(self, "rates", _pairs(self.rates, "rates"))
        if self.routers_dir is not None:
            set_(self, "routers_dir", str(self.routers_dir))
        wrong = [
            name
            for name, used, kinds in (
                ("layers", bool(layers), ("static",)),
                ("routers_dir", self.routers_dir is not None, ("router",)),
                ("thresholds", bool(self.thresholds), ("router",)),
                ("rates", bool(self.rates), ("random",)),
            )
            if used and self.kind not in kinds
        ]
        if wrong:
            raise ConfigError(f"kind={self.kind!r} does not take {wrong}")
        if self.kind == "router" and self.routers_dir is None:
            raise ConfigError("kind='router' needs routers_dir")
        if self.kind == "random" and (not self.rates or self.routing != "sequence"):
            raise ConfigError("kind='random' needs rates and routing='sequence'")

    @property
    def slug(self) -> str:
        """A short readable name, e.g. ``static-attn-k8`` or ``random-attn-n16-s0-1a2b3c``.

        It names the method, not every number in it: record :meth:`to_dict` beside results.
        """
        if self.kind == "dense":
            return "dense"
        if self.kind == "static":
            return f"static-{self.unit}-k{len(self.layers)}"
        if self.kind == "random":
            return f"random-{self.unit}-n{len(self.rates)}-s{self.seed}-{self.digest}"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.routers_dir or "").name) or "routers"
        return f"router-{name}" + (f"-tau{self.digest}" if self.thresholds else "")

    @property
    def digest(self) -> str:
        """First 6 hex digits of the sha256 of :meth:`to_dict` (as sorted JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:6]

    def mindskip_config(self) -> MindSkipConfig:
        """The wrapper config of ``static`` (dropped layers) and ``random`` (rated layers)."""
        if self.kind not in ("static", "random"):
            raise ConfigError(f"kind={self.kind!r} has no wrapper config of its own")
        layers = self.layers if self.kind == "static" else tuple(i for i, _ in self.rates)
        return MindSkipConfig(unit=self.unit, routing=self.routing, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["thresholds"] = {str(i): t for i, t in self.thresholds}
        d["rates"] = {str(i): r for i, r in self.rates}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MethodSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown MethodSpec keys: {unknown}")
        return cls(**d)


@dataclass(frozen=True)
class HashedSkip:
    """The ``random`` decision: a sequence skips with probability ``rate``.

    The draw is a hash of (seed, layer, the sequence's real token ids), so a sequence gets
    the same decision alone, in any batch, with any padding. Called by the wrapper as a
    forced decision (``(layer, batch, length) -> execute mask``) at prefill; decode steps
    reuse the prefill decision stored on the cache.
    """

    seed: int
    rate: float

    def __call__(self, layer: MindSkipLayer, batch: int, length: int) -> torch.Tensor:
        if layer.routing != "sequence":
            raise NotImplementedError("random skipping decides per sequence only")
        ids, mask = layer.context.input_ids, layer.context.attention_mask
        if ids is None or ids.dim() != 2 or ids.shape[0] != batch:
            raise RuntimeError("random skipping needs input_ids (B, T) in the model call")
        if mask is None or mask.dim() != 2:
            mask = torch.ones_like(ids)
        if mask.shape != ids.shape:
            raise RuntimeError(
                "random skipping decides at prefill from the whole prompt; this call has "
                f"input_ids {tuple(ids.shape)} but attention_mask {tuple(mask.shape)}"
            )
        rows = [row[m].tolist() for row, m in zip(ids.cpu(), mask.cpu().bool(), strict=True)]
        keep = [sequence_uniform(self.seed, layer.layer_idx, r) >= self.rate for r in rows]
        return torch.tensor(keep, dtype=torch.bool)


def sequence_uniform(seed: int, layer: int, token_ids: Sequence[int]) -> float:
    """A uniform number in [0, 1) from (seed, layer, token ids): blake2b, first 8 bytes."""
    text = f"{seed}|{layer}|" + ",".join(str(int(t)) for t in token_ids)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def prepare_method(model: nn.Module, spec: MethodSpec) -> nn.Module:
    """Make ``model`` (in place) behave as ``spec``; any routers it had are removed first.

    - dense: nothing else. router: load the routers, then set ``spec.thresholds``.
    - static: wrap ``spec.layers`` and force every decision to skip.
    - random: wrap the rated layers and force :class:`HashedSkip` decisions.
    """
    remove_mindskip(model)
    if any(isinstance(layer, PrunedLayer) for layer in decoder_layers(model)):
        raise ValueError("this model has hand-removed sublayers; prepare a fresh dense model")
    if spec.kind == "dense":
        return model
    if spec.kind == "router":
        saved = read_router_config(spec.routers_dir)
        if (saved.unit, saved.routing) != (spec.unit, spec.routing):
            raise ConfigError(
                f"{spec.routers_dir} holds {saved.unit}/{saved.routing} routers, "
                f"but the spec asks for {spec.unit}/{spec.routing}"
            )
        load_routers(model, spec.routers_dir)
        unknown = sorted({i for i, _ in spec.thresholds} - set(mindskip_layers(model)))
        if unknown:
            raise ConfigError(f"thresholds for layers {unknown}, which are not routed")
        if spec.thresholds:
            set_thresholds(model, dict(spec.thresholds))
        return model
    apply_mindskip(model, spec.mindskip_config())
    if spec.kind == "static":
        set_decisions(model, False)
    else:
        set_decisions(model, {i: HashedSkip(spec.seed, r) for i, r in spec.rates})
    return model


# --------------------------------------------------------------------------- skip ratio
def max_skip_ratio(model: nn.Module) -> float:
    """The largest skip ratio the routed layers allow: ``num_routed / num_layers``."""
    return len(mindskip_layers(model)) / len(decoder_layers(model))


def realised_skip_ratio(model: nn.Module) -> float:
    """Fraction of all layers' unit sublayers skipped, over the forwards since the last
    :func:`mindskip.reset_routing_stats` (``routing_stats(model).skip_ratio``).

    0 for a model without routed layers (dense). Raises when routed layers exist but no
    forward was recorded, rather than report a misleading 0.
    """
    if not mindskip_layers(model):
        return 0.0
    stats = routing_stats(model)
    if not stats.total:
        raise ValueError("no routed forward recorded since the last reset_routing_stats")
    return stats.skip_ratio


def skip_summary(model: nn.Module) -> dict[str, Any]:
    """The skip record to store with every evaluation and profile (JSON-ready)."""
    num_layers = len(decoder_layers(model))
    if not mindskip_layers(model):
        return {"num_layers": num_layers, "skip_ratio": 0.0, "capacity_per_layer": {}}
    out = routing_stats(model).to_dict()
    out["skip_ratio"] = realised_skip_ratio(model)
    return out


def rates_from_stats(model: nn.Module) -> dict[int, float]:
    """Per-layer skip rates that the model's routers realised (for a ``random`` spec)."""
    return {i: 1.0 - c for i, c in routing_stats(model).total.items()}


# --------------------------------------------------------------------------- data
def pad_batches(
    sequences: Sequence[Sequence[int]], batch_size: int, pad_id: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of token id lists, sorted by length to waste little padding."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(s) == 0 for s in sequences):
        raise ValueError("an empty sequence cannot be routed")
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = [list(sequences[i]) for i in order[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, : len(r)] = 1
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def as_batches(
    tokenizer: Any, data: Sequence[str] | Sequence[Batch], max_length: int, batch_size: int
) -> list[Batch]:
    """``data`` as model batches: texts are tokenised (truncated to ``max_length``);
    with ``tokenizer=None``, ``data`` must already be batches (input_ids, attention_mask)."""
    if tokenizer is None:
        if not all(isinstance(b, Mapping) and "input_ids" in b for b in data):
            raise TypeError("without a tokenizer, pass batches with input_ids/attention_mask")
        return list(data)  # type: ignore[arg-type]
    if not all(isinstance(t, str) for t in data):
        raise TypeError("with a tokenizer, pass a sequence of texts")
    seqs = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in data]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_batches(seqs, batch_size, pad)


@torch.no_grad()
def _decoder_forward(model: nn.Module, batch: Batch) -> None:
    """Run the decoder stack only (no LM head: routing and similarities do not need it)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask.to(device)
    pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)


def measure_skip_ratio(
    model: nn.Module,
    tokenizer: Any,
    data: Sequence[str] | Sequence[Batch],
    max_length: int = 256,
    batch_size: int = 8,
) -> float:
    """Reset the routing statistics, run ``data`` and return :func:`realised_skip_ratio`."""
    reset_routing_stats(model)
    for batch in as_batches(tokenizer, data, max_length, batch_size):
        _decoder_forward(model, batch)
    return realised_skip_ratio(model)


@torch.no_grad()
def sequence_skip_ratios(
    model: nn.Module,
    tokenizer: Any,
    data: Sequence[str] | Sequence[Batch],
    max_length: int = 256,
    batch_size: int = 8,
) -> torch.Tensor:
    """Each sequence's own skip ratio (skipped unit sublayers / all layers; for token
    routing, averaged over its real tokens), in batch order (texts are sorted by length).

    Their mean is :func:`measure_skip_ratio`; their spread gives its sampling error.
    """
    num_layers, out = len(decoder_layers(model)), []
    for batch in as_batches(tokenizer, data, max_length, batch_size):
        _decoder_forward(model, batch)
        skipped = torch.zeros(batch["input_ids"].shape[0], dtype=torch.float64)
        for layer in mindskip_layers(model).values():
            e, w = layer.last_exec, layer.last_weight
            if e.dim() == 2:
                skipped += (((~e).float() * w).sum(1) / w.sum(1).clamp_min(1)).double().cpu()
            else:
                skipped += (~e).double().cpu()
        out.append(skipped / num_layers)
    return torch.cat(out)


# --------------------------------------------------------------------------- static drop
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
        "versions": versions(),
    }


def save_ranking(record: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_ranking(path: str | Path) -> dict[str, Any]:
    """A record written by :func:`save_ranking`, checked for format and order."""
    record = json.loads(Path(path).read_text())
    if record.get("format") != RANKING_FORMAT or "ranking" not in record:
        raise ValueError(f"{path} is not a format-{RANKING_FORMAT} importance ranking")
    sims = [r["similarity"] for r in record["ranking"]]
    if sims != sorted(sims, reverse=True):
        raise ValueError(f"{path}: ranking is not sorted by similarity")
    return record


def drop_layers(
    ranking: Sequence[Mapping[str, Any]] | Mapping[str, Any], k: int
) -> tuple[int, ...]:
    """The ``k`` layers dropped first (sorted), from a ranking or a ranking record."""
    rows = ranking["ranking"] if isinstance(ranking, Mapping) else ranking
    if not 0 <= k <= len(rows):
        raise ConfigError(f"k={k} but the ranking has {len(rows)} candidate layers")
    return tuple(sorted(int(r["layer"]) for r in rows[:k]))


# --------------------------------------------------------------------------- calibration
def _cut(scores: torch.Tensor, k: int) -> float:
    """tau such that the ``k`` lowest ``scores`` fall below it (skip: s < tau).

    Tied scores cannot be split: then tau lets the whole tied block skip or execute,
    whichever count is closer to ``k``. Between two distinct scores, tau is the midpoint.
    """
    s = scores.detach().flatten().sort().values.double()
    n = s.numel()
    if k <= 0:
        return 0.0
    if k >= n:
        return 1.0
    if s[k - 1] < s[k]:
        return float((s[k - 1] + s[k]) / 2)
    v = s[k]
    below, upto = int((s < v).sum()), int((s <= v).sum())
    if k - below <= upto - k:  # the tied block executes
        return float((s[below - 1] + v) / 2) if below else 0.0
    return float((v + s[upto]) / 2) if upto < n else 1.0


def one_batch(batches: Sequence[Batch]) -> Batch:
    """Several batches as one right-padded batch of their real tokens."""
    rows = []
    for b in batches:
        mask = b.get("attention_mask")
        mask = torch.ones_like(b["input_ids"]) if mask is None else mask
        rows += [r[m.bool()].tolist() for r, m in zip(b["input_ids"], mask, strict=True)]
    return pad_batches(rows, max(1, len(rows)))[0]


def _per_layer_pass(model: nn.Module, batch: Batch, target: float) -> dict[int, float]:
    """One forward that sets each routed layer's tau from its own scores, lowest layer
    first, so that every layer sees the skipping of the layers below it as calibrated.

    A hook on each router reads the scores of the whole batch and sets ``threshold``
    before the wrapper compares the scores with it. The routed layers skip
    ``round(target * L * N)`` of their decisions (N each) in all: each layer takes an
    even share of what is left, so a layer that could not split tied scores is made up
    for by the layers above it.
    """
    layers = mindskip_layers(model)
    num_layers, taus = len(decoder_layers(model)), {}
    done = [0]

    def hook(i: int, rank: int, scores: torch.Tensor) -> None:
        layer = layers[i]
        if scores.dim() == 2:  # token routing: real tokens only
            mask = layer.context.token_mask(*scores.shape, scores.device)
            scores = scores if mask is None else scores[mask]
        left = round(target * num_layers * scores.numel()) - done[0]
        k = min(max(round(left / (len(layers) - rank)), 0), scores.numel())
        layer.threshold = taus[i] = _cut(scores, k)
        done[0] += int((scores < taus[i]).sum())

    handles = [
        layer.router.register_forward_hook(lambda _m, _a, out, i=i, r=r: hook(i, r, out))
        for r, (i, layer) in enumerate(sorted(layers.items()))
    ]
    try:
        reset_routing_stats(model)
        _decoder_forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return taus


def _scores_pass(model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """One forward over ``batches`` with the current taus; every router score, pooled."""
    reset_routing_stats(model)
    scores = []
    for batch in batches:
        _decoder_forward(model, batch)
        for layer in mindskip_layers(model).values():
            scores.append(layer.last_scores[layer.last_weight > 0].float().cpu())
    return torch.cat(scores)


def calibrate_thresholds(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str] | Sequence[Batch],
    target_skip_ratio: float,
    *,
    mode: str = "per_layer",
    max_length: int = 256,
    batch_size: int = 8,
    tol: float = 0.005,
    max_iter: int = 16,
    history: list[float] | None = None,
) -> dict[int, float]:
    """Choose tau so that the realised skip ratio on ``texts`` is ``target_skip_ratio``.

    A layer's router scores depend on what the layers below it skipped, so taus are
    chosen on real forwards, and the realised ratio is that of a forward with them set.

    - ``mode="per_layer"`` (exact, one forward): every routed layer skips about the same
      share of sequences (``target * L / n``), through its own tau, set from the lowest
      routed layer up inside one forward. That forward takes all ``texts`` as ONE batch
      (a quantile needs every score of a layer before it decides), so keep the set small
      enough to fit; ``batch_size`` is not used. On the N calibration texts the realised
      ratio is ``round(target * L * N) / (L * N)``, unless tied scores (duplicate texts)
      at the top routed layers cannot be split.
    - ``mode="global"``: one tau for all routed layers, so the routers keep their own
      allocation between layers. Each forward (in batches of ``batch_size``) pools all
      scores and proposes the tau whose quantile hits the target; a bracket on tau
      (the ratio grows with tau) falls back to bisection. Stops within ``tol``; after
      ``max_iter`` forwards it keeps the closest tau.

    Sets the taus on the model and returns them. ``tokenizer=None`` takes batches;
    ``history``, when given, receives the realised ratio of every forward.
    """
    layers = mindskip_layers(model)
    if not layers:
        raise ConfigError("calibration needs routed layers (apply or load routers first)")
    if mode not in CALIBRATION_MODES:
        raise ConfigError(f"mode must be one of {CALIBRATION_MODES}, got {mode!r}")
    num_layers, limit = len(decoder_layers(model)), max_skip_ratio(model)
    if not 0.0 <= target_skip_ratio <= limit + 1e-12:
        raise ConfigError(
            f"target_skip_ratio={target_skip_ratio} is out of reach: {len(layers)} routed "
            f"of {num_layers} layers can skip at most {limit:.4f}"
        )
    if not texts:
        raise ValueError("no calibration texts")
    target = min(target_skip_ratio, limit)
    history = [] if history is None else history
    with forced_decisions(model, None):
        if mode == "per_layer":
            batch = one_batch(as_batches(tokenizer, texts, max_length, max(1, len(texts))))
            taus = _per_layer_pass(model, batch, target)
            set_thresholds(model, taus)
            history.append(realised_skip_ratio(model))
            log.info("calibration: realised %.4f (target %.4f)", history[-1], target)
            return taus
        batches = as_batches(tokenizer, texts, max_length, batch_size)
        share = target * num_layers / len(layers)
        tau, lo, hi = get_config(model).threshold, 0.0, 1.0
        best = (float("inf"), tau)
        for _ in range(max_iter):
            set_thresholds(model, dict.fromkeys(layers, tau))
            scores = _scores_pass(model, batches)
            history.append(realised_skip_ratio(model))
            log.info("calibration: tau %.6f realised %.4f (target %.4f)", tau, history[-1], target)
            error = abs(history[-1] - target)
            best = min(best, (error, tau))
            if error <= tol:
                break
            lo, hi = (tau, hi) if history[-1] < target else (lo, tau)
            new = _cut(scores, round(share * scores.numel()))
            tau = new if lo < new < hi and new != tau else (lo + hi) / 2
        else:
            log.warning("calibration: %d forwards, still %.4f off", max_iter, best[0])
    taus = dict.fromkeys(layers, best[1])
    set_thresholds(model, taus)
    return taus
