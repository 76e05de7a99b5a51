"""One evaluation job: check the suite, load the model once, score, write.

``python -m mindskip.evaluate --model DIR_OR_ID --suite embedded --out DIR``; the same
as a call to :func:`run_evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .suites import (
    DEFAULT_TASKS_DIR,
    Suite,
    SuiteUnavailableError,
    check_suite_available,
    embedded_suite,
    paper_suite,
)


def build_suite(
    name: str,
    *,
    tasks_dir: str | Path = DEFAULT_TASKS_DIR,
    limit: int | None = None,
    tasks: Sequence[str] | None = None,
    task_limits: dict[str, int] | None = None,
    num_fewshot: int | dict[str, int] | None = None,
) -> Suite:
    """A suite by name; ``limit`` for every task, then ``task_limits`` per task;
    ``num_fewshot`` (``None``: the paper's per task; an integer; or per task)."""
    if name == "embedded":
        kw = {} if limit is None else {"limit": limit}
        suite = embedded_suite(tasks_dir, tasks=tasks, num_fewshot=num_fewshot, **kw)
    elif name == "paper":
        suite = paper_suite(limit=limit, tasks=tasks, num_fewshot=num_fewshot)
    else:
        raise ValueError(f"unknown suite {name!r}; choose 'embedded' or 'paper'")
    if task_limits:
        unknown = sorted(set(task_limits) - {t.task for t in suite.tasks})
        if unknown:
            raise ValueError(f"--task-limit names tasks not in the suite: {unknown}")
        specs = tuple(t.replace(limit=task_limits.get(t.task, t.limit)) for t in suite.tasks)
        suite = dataclasses.replace(suite, tasks=specs)
    return suite


def _task_limit(text: str) -> tuple[str, int]:
    task, sep, n = text.partition("=")
    if not sep or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected TASK=N, got {text!r}")
    return task, int(n)


def run_evaluation(
    model: str | Path,
    suite: Suite,
    out_dir: str | Path,
    *,
    routers: str | Path | None = None,
    method: dict[str, Any] | None = None,
    batch_size: int = 8,
    dtype: str = "auto",
    device: str = "cpu",
    seed: int | None = None,
    route_on: str = "prompt",
):
    """Check ``suite`` (fails before loading anything), load ``model`` (and ``routers``,
    a folder written by ``mindskip.save_routers``), evaluate, write into ``out_dir``.
    ``route_on``: see :func:`~mindskip.evaluate.runner.evaluate_model`."""
    check_suite_available(suite)
    from mindskip import load_routers
    from mindskip.modeling import load_model

    from .runner import evaluate_model

    m, tok = load_model(model, dtype=dtype, device=device)
    meta = dict(method or {})
    if routers is not None:
        load_routers(m, routers)
        meta.setdefault("router_path", str(routers))
        meta.setdefault("method", "router")
    return evaluate_model(
        m,
        tok,
        suite,
        out_dir=out_dir,
        method=meta,
        batch_size=batch_size,
        seed=seed,
        model_id=str(model),
        route_on=route_on,
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindskip.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--suite", default="embedded", choices=["embedded", "paper"])
    p.add_argument("--tasks-dir", default=str(DEFAULT_TASKS_DIR), help="embedded task files")
    p.add_argument("--tasks", nargs="*", default=None, help="subset of the suite's tasks")
    p.add_argument("--limit", type=int, default=None, help="items per task (embedded: 100)")
    p.add_argument(
        "--task-limit",
        type=_task_limit,
        action="append",
        default=[],
        metavar="TASK=N",
        help="items for one task (overrides --limit); repeatable",
    )
    p.add_argument(
        "--num-fewshot", type=int, default=None, help="shots for every task (default: paper's)"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--routers", default=None, help="router folder (mindskip.save_routers)")
    p.add_argument("--method", default=None, help="method name for the record")
    p.add_argument("--requested-skip-ratio", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--route-on",
        default="prompt",
        choices=["prompt", "request"],
        help="decide routing on the shared prompt (one prefill per item) or per request",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    suite = build_suite(
        a.suite,
        tasks_dir=a.tasks_dir,
        limit=a.limit,
        num_fewshot=a.num_fewshot,
        tasks=a.tasks,
        task_limits=dict(a.task_limit),
    )
    meta: dict[str, Any] = {}
    if a.method:
        meta["method"] = a.method
    if a.requested_skip_ratio is not None:
        meta["requested_skip_ratio"] = a.requested_skip_ratio
    try:
        check_suite_available(suite)
    except SuiteUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = run_evaluation(
        a.model,
        suite,
        a.out,
        routers=a.routers,
        method=meta,
        batch_size=a.batch_size,
        dtype=a.dtype,
        device=a.device,
        seed=a.seed,
        route_on=a.route_on,
    )
    cols = ("task", "metric", "value", "stderr", "n", "num_fewshot", "chance", "route_on", "wall_s")
    print(json.dumps([{k: r[k] for k in cols} for r in res.rows], indent=1))
    print(f"wrote {res.paths['record']}")
    return 0
