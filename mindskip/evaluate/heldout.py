"""Calibration items: contexts in the evaluation's own format that are never scored.

A router decides on what it reads, so a threshold fitted on instruction records can realise
a different skip ratio on evaluation prompts (measured on an earlier default run: 0.054
realised for 0.125 requested). :func:`heldout_contexts` gives contexts (lm-eval's
``fewshot_context``: the same few-shot examples and template the scoring uses) of items
that are never scored:

- the task's own ``calibration`` part where it has one (every embedded task:
  :mod:`mindskip.data.tasks` carves it, fixed and disjoint from the scored items and the
  few-shot pool);
- else (lm-eval's built-in tasks) the items of the scored split that the suite's seeded
  subset leaves out; a task that is scored whole gives none.
"""

from __future__ import annotations

import random
from typing import Any

from .runner import _load_task, _samples_for, _task_manager
from .suites import Suite, check_suite_available

CALIBRATION = "calibration"


def _calibration_docs(task: Any) -> list[dict[str, Any]] | None:
    """The task's ``calibration`` split, processed as its scored docs are; None if none."""
    dataset = getattr(task, "dataset", None)
    if dataset is None or CALIBRATION not in dataset:
        return None
    docs = dataset[CALIBRATION]
    process = getattr(task.config, "process_docs", None)
    return list(process(docs) if process is not None else docs)


def heldout_contexts(suite: Suite, count: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``count`` contexts ``{"task", "doc_id", "part", "text"}`` of never-scored
    items, drawn round-robin over the tasks (seeded), so every task with such items is
    represented. Raises ``ValueError`` when no task has any."""
    check_suite_available(suite)
    tm = _task_manager(suite)
    pools: list[tuple[str, Any, int, str, list[Any], list[int]]] = []
    for spec in suite.tasks:
        _, leaves = _load_task(tm, spec, seed)
        scored = _samples_for(spec, leaves, seed)
        for name, task in sorted(leaves.items()):
            docs = _calibration_docs(task)
            if docs is not None:
                part, free = CALIBRATION, list(range(len(docs)))
            else:
                docs, part = list(task.eval_docs), "unscored"
                used = set(scored[name]) if name in scored else set(range(len(docs)))
                free = [i for i in range(len(docs)) if i not in used]
            random.Random(f"{seed}:{name}").shuffle(free)
            if free:
                pools.append((name, task, spec.num_fewshot or 0, part, docs, free))
    if not pools:
        raise ValueError(
            f"suite {suite.name!r}: no task has a calibration part, and every item of every "
            "task is scored (set eval.limit, or baselines.calibration_text: records)"
        )
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < count and any(depth < len(p[5]) for p in pools):
        for name, task, shots, part, docs, free in pools:
            if depth < len(free) and len(out) < count:
                out.append(_context(name, task, shots, part, docs, free[depth], seed))
        depth += 1
    return out


def _context(
    name: str, task: Any, shots: int, part: str, docs: list[Any], doc_id: int, seed: int
) -> dict[str, Any]:
    task.set_fewshot_seed(seed=seed)
    text = task.fewshot_context(docs[doc_id], shots)
    if isinstance(text, list):  # one context per choice (WinoGrande): the gold one
        gold = task.doc_to_text(docs[doc_id])  # lm-eval's multiple-input: the gold index
        text = text[gold if isinstance(gold, int) and 0 <= gold < len(text) else 0]
    if not isinstance(text, str):
        raise TypeError(f"{name}: lm-eval gave a {type(text).__name__} context, not a string")
    return {"task": name, "doc_id": doc_id, "part": part, "text": text}
