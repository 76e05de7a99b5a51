"""Methods named for a reader: "MindSkip: attention, sequence", "attention drop (similarity,
routed layers)", "random (seed 0)", never a run's slug or hash.

:func:`describe` names one method from its planned spec (``method.spec`` of an evaluation
record, or a row of :func:`~mindskip.report.collect.eval_frame`): its ``label`` when the
config gave one, else words built from its settings. :func:`distinct` names a set of methods
shown together, adding a distinguishing setting (training samples, recipe variant, data...)
only to the names that would otherwise be the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import pandas as pd

from ..method import Method

K = TypeVar("K", bound=Hashable)

UNITS = {"attn": "attention", "mlp": "MLP", "block": "block"}
RANKINGS = {"similarity": "similarity", "last": "last k"}
CANDIDATES = {"routed": "routed layers", "all": "all layers"}
# the spec fields a row of eval_frame carries (the rest only the record's spec has)
FRAME_FIELDS = ("kind", "unit", "routing", "run", "candidates", "seed", "train_samples", "lora")


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):  # a list or dict: set
        return False


def spec_of(row_or_spec: Any) -> dict[str, Any]:
    """A plain dict of the set fields of a planned :class:`~mindskip.method.Method`, of a
    stored spec, or of a row of ``eval_frame`` (a pandas
    Series: its ``method`` is the spec's ``name``; its ``label`` is the task's, not the
    method's, so it is not taken)."""
    if isinstance(row_or_spec, Method):
        label = {"label": row_or_spec.label} if row_or_spec.label else {}
        return row_or_spec.to_dict() | label
    if isinstance(row_or_spec, Mapping):
        return {k: v for k, v in row_or_spec.items() if not _missing(v)}
    row = row_or_spec  # a pandas Series from eval_frame
    out = {k: row.get(k) for k in FRAME_FIELDS if k in row.index and not _missing(row.get(k))}
    if "method" in row.index:
        out["name"] = row["method"]
    if not _missing(out.get("train_samples")):
        out["train_samples"] = int(out["train_samples"])
    if not _missing(out.get("seed")):
        out["seed"] = int(out["seed"])
    if "display" in row.index and not _missing(row["display"]):
        out["label"] = row["display"]
    return out


def unit_name(unit: Any) -> str:
    return UNITS.get(str(unit), str(unit))


def lora_name(spec: Mapping[str, Any]) -> str:
    """``LoRA r=8`` (the rank from ``lora_r`` or the LoRA run's slug ``r8-...``), else ``LoRA``."""
    r = spec.get("lora_r")
    if _missing(r):
        m = re.match(r"r(\d+)-", str(spec.get("lora") or spec.get("run") or ""))
        r = m.group(1) if m else None
    return "LoRA" if _missing(r) else f"LoRA r={r}"


def describe(row_or_spec: Any) -> str:
    """A method's name in words: its ``label`` if it has one, else from its settings.

    dense; "MindSkip: attention, sequence"; "LoRA + routers"; "LoRA r=8"; "attention drop
    (similarity, routed layers)"; "random (seed 0)"; "router's static pattern". Settings
    that only tell runs apart (samples, recipe variant) are added by :func:`distinct`.
    """
    s = spec_of(row_or_spec)
    if s.get("label"):
        return str(s["label"])
    kind = s.get("kind", "dense")
    if kind == "dense":
        return "dense"
    if kind == "lora":
        return lora_name(s)
    if kind == "router":
        if s.get("lora"):
            return "LoRA + routers"
        return f"MindSkip: {unit_name(s.get('unit', 'attn'))}, {s.get('routing', 'sequence')}"
    if kind == "static":
        ranking = RANKINGS.get(str(s.get("ranking") or "similarity"), str(s.get("ranking")))
        cand = CANDIDATES.get(str(s.get("candidates") or "all"), str(s.get("candidates")))
        return f"{unit_name(s.get('unit', 'attn'))} drop ({ranking}, {cand})"
    if kind == "random":
        return "random" if _missing(s.get("seed")) else f"random (seed {int(s['seed'])})"
    if kind == "pattern":
        return "router's static pattern"
    return str(kind)


def _variant_text(s: Mapping[str, Any]) -> str | None:
    """plan's ``variant`` in words: "distill", "answered data", "lr 0.01", "routed on request"."""
    v = s.get("variant")
    if not v:
        return None
    parts = []
    for part in str(v).split(","):
        key, _, value = part.partition("=")
        if not value:
            parts.append("routed on request" if key == "request" else key)
        elif key == "data":
            parts.append(f"{value} data")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def _route_on_text(s: Mapping[str, Any]) -> str | None:
    if not s.get("route_on") or "request" in str(s.get("variant") or ""):
        return None
    return f"routed on {s['route_on']}"


def _samples_text(s: Mapping[str, Any]) -> str | None:
    n = s.get("train_samples")
    return None if _missing(n) else f"{int(n)} samples"


# (setting, its words) in the order they are tried; a setting is added to the names in a
# group that share a name only when its words differ within that group.
SETTINGS: tuple[tuple[str, Callable[[Mapping[str, Any]], str | None]], ...] = (
    ("kind", lambda s: describe({"kind": s.get("kind", "dense"), "seed": s.get("seed")})),
    ("unit", lambda s: unit_name(s["unit"]) if s.get("unit") else None),
    ("routing", lambda s: f"{s['routing']} routing" if s.get("routing") else None),
    ("lora", lambda s: f"on {lora_name(s)}" if s.get("lora") else None),
    ("variant", _variant_text),
    ("route_on", _route_on_text),
    ("train_samples", _samples_text),
    ("candidates", lambda s: CANDIDATES.get(str(s.get("candidates")))),
    ("ranking", lambda s: f"{s['ranking']} ranking" if s.get("ranking") else None),
    ("num_routed", lambda s: f"{s['num_routed']} routed" if s.get("num_routed") else None),
    ("seed", lambda s: None if _missing(s.get("seed")) else f"seed {int(s['seed'])}"),
)


def distinct(specs: Mapping[K, Any]) -> dict[K, str]:
    """Names for methods shown together (``{key: spec or eval_frame row}``): each
    :func:`describe`, with a distinguishing setting added only where two would otherwise
    read the same (never a run's slug or hash; a last tie is numbered)."""
    full = {k: spec_of(v) for k, v in specs.items()}
    names = {k: describe(s) for k, s in full.items()}
    for _, words in SETTINGS:
        groups = _collisions(names)
        if not groups:
            return names
        for group in groups:
            texts = {k: words(full[k]) for k in group}
            if len(set(texts.values())) < 2:
                continue
            for k in group:
                if texts[k] and texts[k] not in names[k]:
                    names[k] = f"{names[k]}, {texts[k]}"
    for group in _collisions(names):
        for i, k in enumerate(group[1:], start=2):
            names[k] = f"{names[k]} ({i})"
    return names


def _collisions(names: Mapping[K, str]) -> list[list[K]]:
    by_name: dict[str, list[K]] = {}
    for k, n in names.items():
        by_name.setdefault(n, []).append(k)
    return [g for g in by_name.values() if len(g) > 1]
