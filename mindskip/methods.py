"""Turn a workflow method description and its input files into a MethodSpec.

The same function serves evaluation and profiling, so both measure exactly the same
method at the same skip ratio.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .baselines import MethodSpec, load_ranking


def _json(path: str | Path | None) -> dict[str, Any] | None:
    return None if path is None else json.loads(Path(path).read_text())


def static_layers(ranking: Mapping[str, Any], ratio: float) -> tuple[int, ...]:
    """The ``round(ratio * L)`` most similar (least important) layers of a ranking."""
    k = round(ratio * ranking["num_layers"])
    if k > len(ranking["ranking"]):
        raise ValueError(
            f"skip ratio {ratio} needs {k} layers; only {len(ranking['ranking'])} rank"
        )
    return tuple(sorted(int(r["layer"]) for r in ranking["ranking"][:k]))


def resolve_method(
    method: Mapping[str, Any],
    *,
    routers: str | Path | None = None,
    calibration: str | Path | None = None,
    ranking: str | Path | None = None,
) -> tuple[MethodSpec, dict[str, Any]]:
    """(spec, metadata) for ``method`` = ``{"name", "kind", "ratio", ...}`` (see
    ``workflow/rules/common.smk: method_params``). ``routers`` is the router file or its
    folder; ``calibration`` the thresholds JSON of a ratio; ``ranking`` a static ranking."""
    kind, ratio = method["kind"], method["ratio"]
    requested = None if ratio == "native" else float(ratio)
    routers_dir = None if routers is None else str(Path(routers).with_suffix("").parent)
    if routers is not None and Path(routers).is_dir():
        routers_dir = str(routers)
    cal = _json(calibration)
    meta: dict[str, Any] = {"spec": dict(method), "requested_skip_ratio": requested}
    if kind == "dense":
        spec = MethodSpec()
    elif kind == "router":
        thresholds = {int(i): t for i, t in (cal or {}).get("thresholds", {}).items()}
        spec = MethodSpec(
            kind="router",
            unit=method["unit"],
            routing=method["routing"],
            routers_dir=routers_dir,
            thresholds=thresholds,
        )
        meta["router_path"] = routers_dir
    elif kind == "static":
        if requested is None:
            raise ValueError("a static drop needs a skip ratio")
        rank = load_ranking(ranking)
        spec = MethodSpec(kind="static", unit=method["unit"], layers=static_layers(rank, requested))
    elif kind == "random":
        if cal is None:
            raise ValueError("random skipping needs the calibrated router's per-layer rates")
        rates = {int(i): r for i, r in cal["rates_heldout"].items()}
        spec = MethodSpec(
            kind="random", unit=method["unit"], routing="sequence", rates=rates, seed=method["seed"]
        )
    else:
        raise ValueError(f"unknown method kind {kind!r}")
    meta["method"] = kind
    meta["method_spec"] = spec.to_dict()
    return spec, meta
