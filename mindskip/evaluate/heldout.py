"""Held-out evaluation items: contexts in the evaluation's own format that are never scored.

A router decides on what it reads, so a threshold fitted on instruction records can realise
a different skip ratio on evaluation prompts (measured on the default run: 0.054 realised
for 0.125 requested). :func:`heldout_contexts` gives the contexts (lm-eval's
``fewshot_context``: the same few-shot examples and template the scoring uses) of the items
of a suite's tasks that its seeded subset leaves out, to calibrate thresholds on. A task
that is scored whole (no ``limit``, or fewer items than it) gives none.
"""

from __future__ import annotations

import random
from typing import Any

from .runner import _load_task, _samples_for, _task_manager
from .suites import Suite, check_suite_available


def heldout_contexts(suite: Suite, count: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``count`` contexts ``{"task", "doc_id", "text"}`` of unscored items, drawn
    round-robin over the tasks (seeded), so every task with held-out items is represented.
    Raises ``ValueError`` when no task has any."""
    check_suite_available(suite)
    tm = _task_manager(suite)
    pools: list[tuple[str, Any, int, list[int]]] = []
    for spec in suite.tasks:
        _, leaves = _load_task(tm, spec, seed)
        scored = _samples_for(spec, leaves, seed)
        for name, task in sorted(leaves.items()):
            n = len(task.eval_docs)
            used = set(scored[name]) if name in scored else set(range(n))
            free = [i for i in range(n) if i not in used]
            random.Random(f"{seed}:{name}").shuffle(free)
            if free:
                pools.append((name, task, spec.num_fewshot or 0, free))
    if not pools:
        raise ValueError(
            f"suite {suite.name!r}: every item of every task is scored, none is held out "
            "(set eval.limit, or baselines.calibration_text: records)"
        )
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < count and any(depth < len(p[3]) for p in pools):
        for name, task, shots, free in pools:
            if depth < len(free) and len(out) < count:
                out.append(_context(name, task, shots, free[depth], seed))
        depth += 1
    return out


def _context(name: str, task: Any, shots: int, doc_id: int, seed: int) -> dict[str, Any]:
    task.set_fewshot_seed(seed=seed)
    text = task.fewshot_context(task.eval_docs[doc_id], shots)
    if not isinstance(text, str):
        raise TypeError(f"{name}: lm-eval gave a {type(text).__name__} context, not a string")
    return {"task": name, "doc_id": doc_id, "text": text}
