"""mindskip: Router-Tuning and MindSkip (arXiv 2410.13184) on Hugging Face causal LMs.

The core (config, routing, layers, surgery) depends on torch and transformers only.
Names are imported lazily, so ``import mindskip.report`` stays free of torch.
``import mindskip`` also registers the ``mindskip`` model with lm-eval, lazily
(:mod:`mindskip.evaluate.registration`): ``lm_eval.simple_evaluate(model="mindskip", ...)``
finds it, and lm-eval is not imported until then.

Three lines::

    model = apply_mindskip(model, MindSkipConfig(unit="attn", routing="sequence", num_routed=16))
    load_routers(model, "results/routers/<run>")      # or: mindskip.train.train_routers(...)
    logits = model(input_ids).logits                  # skipped sublayers are not computed
"""

from __future__ import annotations

import importlib
from typing import Any

from .evaluate.registration import register_lazily

__version__ = "0.1.0"
register_lazily()

_EXPORTS = {
    "artefacts": ["AdapterFolder", "Calibration", "RouterFolder"],
    "config": ["ConfigError", "MindSkipConfig"],
    "families": ["UnsupportedFamilyError"],
    "layers": ["MindSkipLayer", "PrunedLayer"],
    "routing": ["Router", "RoutingContext", "masked_mean", "straight_through_gate"],
    "checkpoint": [
        "RouterFileError",
        "load_routers",
        "read_router_config",
        "routers_hash",
        "save_routers",
    ],
    "stats": ["RoutingStats", "reset_routing_stats", "routing_stats"],
    "surgery": [
        "apply_mindskip",
        "decoder_layers",
        "forced_decisions",
        "get_config",
        "is_mindskip",
        "mindskip_layers",
        "remove_mindskip",
        "remove_sublayers",
        "router_parameters",
        "set_decisions",
        "set_thresholds",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mindskip' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
