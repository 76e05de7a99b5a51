"""lm-eval scoring: the paper's tasks online, real tasks offline.

::

    from mindskip.evaluate import embedded_suite, evaluate_model
    result = evaluate_model(model, tokenizer, embedded_suite(limit=100),
                            out_dir="results/eval/smollm2/dense/0",
                            method={"method": "dense"}, batch_size=8)

Names are imported lazily: ``suites`` and ``items`` need neither torch nor
lm-eval, so a report or a job's early check can use them cheaply. The ``mindskip`` model
is registered with lm-eval by ``import mindskip`` (:mod:`.registration`), so
``lm_eval.simple_evaluate(model="mindskip", ...)`` needs no other import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "suites": [
        "PAPER_TASKS",
        "Suite",
        "SuiteUnavailableError",
        "TaskSpec",
        "check_suite_available",
        "embedded_suite",
        "get_suite",
        "paper_suite",
        "subset_indices",
    ],
    "items": ["chance_level", "item_rows", "read_items", "write_items"],
    "hflm": ["DocSeededSampler", "MaskedHFLM", "use_doc_seeded_fewshot"],
    "runner": ["EvalResult", "evaluate_model", "write_result"],
    "cli": ["build_suite", "run_evaluation"],
    "merge": ["merge_results"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mindskip.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
