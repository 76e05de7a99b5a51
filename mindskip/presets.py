"""The authors' training recipes, as released, as named presets a ``routers:`` entry selects.

Read from the authors' two public releases (no code copied):

- ``authors``: CASE-Lab-UMD/Router-Tuning, the paper-era release
  (``scripts/finetune_mindskip.sh`` and its model files): lr 1e-5, cosine, warm-up 3%,
  weight decay 0, 1 epoch, 1 sequence per device step and 64 accumulated, max length
  2,048, AdamW with the HF Trainer's betas (0.9, 0.999) and gradient clipping at 1.0,
  routers initialised to zero, the capacity penalty ``gradient_scale * sum of gates`` with
  ``gradient_scale = 0`` in the script and every shipped config, the HF model's loss
  (mean over a sequence's response tokens; accumulation then averages over sequences),
  a ``<|user|>`` / ``<|assistant|>`` text template, bf16 everywhere (DeepSpeed: float32
  master weights, bf16 compute), and in training the unit runs on the executing rows only,
  its output times the straight-through gate.
- ``authors-v2``: CASE-Lab-UMD/Router-Tuning-Mixture-of-Depths, the later refactor: the
  same optimiser, batching, data format and precision; a per-layer penalty
  ``lambda * relu(c_l - t)`` applied per sample (micro-batch 1), only with a target, and
  lambda 0 by default; in training every row runs the unit, times the gate.

Both take the data from the entry (the paper: Alpaca, 1,000 samples; here ``data`` and
``train_samples`` of the entry). An entry's own ``recipe`` changes are applied on top of
its preset's, and so are its ``full_compute_in_training``, ``router_dtype`` and capacity
penalty (``capacity_lambda``, ``capacity_target``) when it sets them, so a departure can be
tried one setting at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# routing settings an entry may set against its preset. The penalty's two have schema
# defaults (lambda 0, no target) equal to both presets' values, so an entry that leaves
# them out keeps the preset's; router_dtype and full_compute_in_training have none.
OVERRIDABLE = ("full_compute_in_training", "router_dtype", "capacity_lambda", "capacity_target")


@dataclass(frozen=True)
class Preset:
    """A released recipe: ``recipe`` (:class:`~mindskip.train.TrainConfig` fields) and
    ``routing`` (the entry's routing settings: :class:`~mindskip.MindSkipConfig` fields)."""

    name: str
    source: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    routing: Mapping[str, Any] = field(default_factory=dict)


_RELEASED = {
    "lr": 1e-5,
    "schedule": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "epochs": 1,
    "global_batch": 64,
    "micro_batch": 1,
    "max_length": 2048,
    "objective": "lm",
    "init": "zero",
    "max_grad_norm": 1.0,
    "loss_reduction": "sequence",
    "template": "authors",
    "bf16": True,
}

# the routing both releases share: no penalty weight, no target, bf16 router
_ROUTING = {"capacity_lambda": 0.0, "capacity_target": None, "router_dtype": "bfloat16"}

PRESETS: dict[str, Preset] = {
    "authors": Preset(
        "authors",
        "CASE-Lab-UMD/Router-Tuning (the paper-era release)",
        recipe={**_RELEASED, "penalty": "global"},
        routing={**_ROUTING, "full_compute_in_training": False},
    ),
    "authors-v2": Preset(
        "authors-v2",
        "CASE-Lab-UMD/Router-Tuning-Mixture-of-Depths (the later release)",
        recipe={**_RELEASED, "penalty": "per_layer"},
        routing={**_ROUTING, "full_compute_in_training": True},
    ),
}


def expand_preset(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A ``routers:`` entry with its preset applied: the preset's routing settings replace
    the entry's, its recipe lies under the entry's own ``recipe`` changes. An entry without
    ``preset`` comes back unchanged."""
    name = entry.get("preset")
    if name is None:
        return dict(entry)
    if name not in PRESETS:
        raise ValueError(f"unknown recipe preset {name!r}; known: {sorted(PRESETS)}")
    preset = PRESETS[name]
    # given on the entry, these are a deliberate departure from the preset (one change at
    # a time; see OVERRIDABLE)
    kept = {k: entry[k] for k in OVERRIDABLE if k in entry}
    out = dict(entry) | dict(preset.routing) | kept
    out["recipe"] = dict(preset.recipe) | dict(entry.get("recipe") or {})
    return out


def routing_changes(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's routing settings that depart from its preset's."""
    name = entry.get("preset")
    if name is None:
        return {}
    base = PRESETS[name].routing
    return {k: entry[k] for k in OVERRIDABLE if k in entry and entry[k] != base.get(k)}


def own_changes(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's recipe changes beyond its preset's (all of them without a preset)."""
    recipe = dict(entry.get("recipe") or {})
    name = entry.get("preset")
    if name is None:
        return recipe
    base = PRESETS[name].recipe
    return {k: v for k, v in recipe.items() if k not in base or base[k] != v}
