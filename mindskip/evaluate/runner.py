"""Score a model object on a suite with lm-eval and write a tidy record.

:func:`evaluate_model` takes a model that is already loaded and prepared (dense, routed,
static drop, ...) and a metadata dict that says what it is. It runs each task of the
suite through :class:`~mindskip.evaluate.hflm.MindSkipLM` and ``lm_eval.simple_evaluate``
(one task at a time, so that realised routing capacity is known per task), then writes::

    <out_dir>/<suite>.json              tidy record: one row per task + provenance
    <out_dir>/<suite>.lm_eval.json      lm-eval's own results, per task (no samples)
    <out_dir>/<suite>.items.jsonl.gz    per-item log (see mindskip.evaluate.items)

``route_on`` says what a sequence-routed model decides on: ``"prompt"`` (default: the
context alone, prefilled once and shared by every choice, as a deployment runs) or
``"request"`` (lm-eval's one sequence per choice, so the choice text enters the decision:
the authors' setting). The record says which (``run.route_on`` and every row), and for a
sequence-routed model how many items had choices routed differently
(``items_routed_differently``; item rows get ``n_routes``, the distinct decisions among
their choices).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from ..files import to_jsonable
from . import provenance as prov
from .items import chance_level, item_rows, write_items
from .suites import Suite, TaskSpec, check_suite_available, get_suite, subset_indices

log = logging.getLogger(__name__)
SCHEMA = "mindskip.eval/1"


@dataclass
class EvalResult:
    """What :func:`evaluate_model` returns: the record, the item rows, lm-eval's output
    per task (without samples), and the files written (empty without ``out_dir``)."""

    record: dict[str, Any]
    items: list[dict[str, Any]]
    lm_eval: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    prompts: list[list[int]] = field(default_factory=list)  # each scored context, once

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.record["rows"]

    def scores(self) -> dict[str, float]:
        """``{task: value}`` of each task's reported metric."""
        return {r["task"]: r["value"] for r in self.rows}


# --------------------------------------------------------------------------- helpers
def _task_manager(suite: Suite):
    from lm_eval.tasks import TaskManager

    # Built-in tasks are indexed only when the suite needs them (indexing all of
    # lm-eval's YAML takes ~15 s on a small CPU).
    return TaskManager(
        include_path=suite.include_path,
        include_defaults=suite.include_path is None or suite.needs_hub,
    )


def _check_index(tm, suite: Suite) -> None:
    for spec in suite.tasks:
        entry = tm.task_index.get(spec.task)
        if entry is None:
            where = suite.include_path or "lm-eval's built-in tasks"
            raise KeyError(f"task {spec.task!r} of suite {suite.name!r} not found in {where}")
        path = (entry.cfg or {}).get("dataset_path")
        if spec.datasets and path and path not in spec.datasets:
            log.warning(
                "task %s reads %s, but the suite lists %s (lm-eval changed?)",
                spec.task,
                path,
                spec.datasets,
            )


def _load_task(tm, spec: TaskSpec, seed: int) -> tuple[Any, dict[str, Any]]:
    """(top-level Task or Group, {leaf name: Task}) with few-shot and sampler set."""
    from .hflm import use_doc_seeded_fewshot

    loaded = tm.load([spec.task])
    leaves = loaded["tasks"]
    top = loaded["groups"].get(spec.task) or leaves.get(spec.task)
    if top is None:
        raise KeyError(f"lm-eval loaded {sorted(leaves)} for {spec.task!r}, not the task itself")
    for task in leaves.values():
        task.set_config(key="num_fewshot", value=spec.num_fewshot)
        use_doc_seeded_fewshot(task)
    return top, leaves


def _samples_for(spec: TaskSpec, leaves: Mapping[str, Any], seed: int) -> dict[str, list[int]]:
    out = {}
    for name, task in leaves.items():
        idx = subset_indices(len(task.eval_docs), spec.limit, how=spec.subset, seed=seed, task=name)
        if idx is not None:
            out[name] = idx
    return out


def _choices_fn(task: Any):
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        return None

    def choices(doc: dict[str, Any]) -> list[str]:
        c = task.doc_to_choice(doc)
        return [str(x) for x in c]

    return choices


def _aggregate_capacity(per_task: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Suite-wide realised capacity from per-task routing statistics (decision-weighted)."""
    executed: dict[str, float] = {}
    decisions: dict[str, float] = {}
    num_layers = None
    for st in per_task:
        if not st:
            continue
        num_layers = st["num_layers"]
        for i, cap in st["capacity_per_layer"].items():
            n = st["decisions_per_layer"][i]
            executed[i] = executed.get(i, 0.0) + cap * n
            decisions[i] = decisions.get(i, 0.0) + n
    if num_layers is None:
        return None
    per_layer = {i: executed[i] / decisions[i] for i in decisions if decisions[i]}
    total = sum(decisions.values())
    return {
        "num_layers": num_layers,
        "capacity": sum(executed.values()) / total if total else float("nan"),
        "skip_ratio": sum(1.0 - c for c in per_layer.values()) / num_layers,
        "capacity_per_layer": per_layer,
        "decisions_per_layer": decisions,
    }


def _metric_value(results: dict[str, Any], spec: TaskSpec) -> tuple[float, float | None]:
    res = results.get(spec.task, {})
    if spec.metric_key not in res:
        have = sorted(k for k in res if "," in k and "_stderr" not in k)
        raise KeyError(
            f"lm-eval reported no {spec.metric_key!r} for {spec.task}; it reported {have}"
        )
    stderr = res.get(f"{spec.metric}_stderr,{spec.filter}")
    stderr = float(stderr) if isinstance(stderr, int | float) else None
    return float(res[spec.metric_key]), stderr


# --------------------------------------------------------------------------- main entry
def evaluate_model(
    model: nn.Module,
    tokenizer: Any,
    suite: Suite | str = "embedded",
    *,
    out_dir: str | Path | None = None,
    method: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    seed: int | None = None,
    model_id: str | None = None,
    bootstrap_iters: int = 1000,
    route_on: str = "prompt",
    before_task: Callable[[str], None] | None = None,
) -> EvalResult:
    """Score ``model`` (a loaded causal LM, with or without MindSkip) on ``suite``.

    Args:
        model: the model object, already prepared (routers loaded, layers dropped, ...).
        tokenizer: its tokenizer.
        suite: a :class:`Suite` or a suite name (``"embedded"``, ``"paper"``).
        out_dir: where to write the three files; None writes nothing.
        method: what the model is, e.g. ``{"method": "router", "requested_skip_ratio":
            0.25, "router_path": "results/routers/run1"}``. Recognised keys:
            ``method``, ``requested_skip_ratio``, ``router_path`` (its file is hashed),
            ``model_hash`` (skips hashing the weights); the rest is kept as given.
        batch_size: lm-eval batch size (scores do not depend on it).
        seed: lm-eval's seeds (python, numpy, torch, few-shot) and the item subset seed;
            default: the suite's.
        model_id: model name or folder for the record (default: ``_name_or_path``).
        bootstrap_iters: lm-eval's bootstrap iterations for non-mean metrics' stderr.
        route_on: ``"prompt"`` (decide on the shared context, score the choices on its
            cache) or ``"request"`` (one decision per context + choice, as lm-eval and
            the authors' code score). Dense models score the same either way.
        before_task: called with each task's name before it is scored (e.g.
            :func:`mindskip.methods.set_task_rates`: random skipping at that task's rates).

    Raises :class:`~mindskip.evaluate.suites.SuiteUnavailableError` before any scoring
    when the suite's data cannot be reached.
    """
    from mindskip import is_mindskip

    from .hflm import ROUTE_ON, MindSkipLM

    if route_on not in ROUTE_ON:
        raise ValueError(f"route_on must be one of {ROUTE_ON}, got {route_on!r}")
    suite = get_suite(suite) if isinstance(suite, str) else suite
    check_suite_available(suite)
    seed = suite.seed if seed is None else seed
    meta = to_jsonable(dict(method or {}))  # the caller's metadata, JSON-safe
    routed = is_mindskip(model)
    meta.setdefault("method", "mindskip" if routed else "dense")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t_start = time.perf_counter()

    tm = _task_manager(suite)
    _check_index(tm, suite)
    was_training = model.training
    model.eval()
    lm = MindSkipLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, route_on=route_on)

    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    lm_out: dict[str, Any] = {}
    stats_per_task: list[dict[str, Any]] = []
    try:
        for spec in suite.tasks:
            if before_task is not None:
                before_task(spec.task)
            row, task_items, out, stats = _score_task(
                lm, tm, spec, seed, routed=routed, bootstrap_iters=bootstrap_iters
            )
            rows.append(row)
            items += task_items
            lm_out[spec.task] = out
            stats_per_task.append(stats)
    finally:
        model.train(was_training)

    wall_total = time.perf_counter() - t_start
    record = _record(
        model=model,
        suite=suite,
        rows=rows,
        meta=meta,
        seed=seed,
        batch_size=batch_size,
        model_id=model_id,
        stats_per_task=stats_per_task,
        started=started,
        wall_total=wall_total,
        lm=lm,
        route_on=route_on,
    )
    result = EvalResult(record=record, items=items, lm_eval=lm_out, prompts=lm.scored_contexts())
    if out_dir is not None:
        result.paths = write_result(result, out_dir, suite.name)
    return result


def _score_task(
    lm: Any, tm: Any, spec: TaskSpec, seed: int, *, routed: bool, bootstrap_iters: int
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """One task through lm-eval: (row, item rows, lm-eval's output without samples, routing
    statistics of this task)."""
    import lm_eval

    from mindskip import reset_routing_stats, routing_stats

    model = lm.model
    top, leaves = _load_task(tm, spec, seed)
    samples = _samples_for(spec, leaves, seed)
    if routed:
        reset_routing_stats(model)
    lm.decision_log.clear()
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[top],
        task_manager=tm,
        samples=samples or None,
        log_samples=True,
        bootstrap_iters=bootstrap_iters,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    wall = time.perf_counter() - t0
    stats = routing_stats(model).to_dict() if routed else {}

    task_items: list[dict[str, Any]] = []
    for name, task in leaves.items():
        task_items += item_rows(name, out["samples"].get(name, []), _choices_fn(task))
    routes = lm.routes_per_item(out["samples"])
    for r in task_items:
        if (n_routes := routes.get((r["task"], r["doc_id"], r["filter"]))) is not None:
            r["n_routes"] = n_routes
    value, stderr = _metric_value(out["results"], spec)
    n_items = sum(int(out["n-samples"][name]["effective"]) for name in leaves)
    scored = [r for r in task_items if r["filter"] == spec.filter]
    differ = [r["n_routes"] > 1 for r in scored if "n_routes" in r]
    chance = chance_level(scored)
    row = {
        "task": spec.task,
        "label": spec.label or spec.task,
        "metric": spec.metric,
        "filter": spec.filter,
        "value": value,
        "stderr": stderr,
        "n": n_items,
        "n_available": sum(len(task.eval_docs) for task in leaves.values()),
        "num_fewshot": spec.num_fewshot,
        "chance": spec.chance if chance is None else chance,
        "limit": spec.limit,
        "subset": spec.subset if samples else "all",
        "leaf_tasks": sorted(leaves),
        "wall_s": round(wall, 2),
        "realised_capacity": stats.get("capacity"),
        "realised_skip_ratio": stats.get("skip_ratio"),
        "route_on": lm.route_on,
        "items_routed_differently": sum(differ) if differ else None,
    }
    out.pop("samples", None)
    log.info("%s: %s = %.4f (n=%d, %.1f s)", spec.task, spec.metric, value, n_items, wall)
    return row, task_items, out, stats


def _record(
    *,
    model: nn.Module,
    suite: Suite,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    seed: int,
    batch_size: int,
    model_id: str | None,
    stats_per_task: list[dict[str, Any]],
    started: str,
    wall_total: float,
    lm: Any,
    route_on: str,
) -> dict[str, Any]:
    routing = prov.routing_description(model)
    realised = _aggregate_capacity(stats_per_task)
    model_id = model_id or prov.model_source(model)
    if meta.get("model_hash"):
        mhash, kind = str(meta["model_hash"]), "given"
    else:
        mhash, kind = prov.model_hash(model, model_id)
    device, dtype = prov.device_and_dtype(model)
    requested = meta.get("requested_skip_ratio")
    shared = {
        "suite": suite.name,
        "method": meta["method"],
        "unit": routing["unit"],
        "routing": routing["routing"],
        "requested_skip_ratio": requested,
        "realised_skip_ratio_suite": realised["skip_ratio"] if realised else 0.0,
        "model_id": model_id,
        "model_hash": mhash,
        "seed": seed,
        "batch_size": batch_size,
        "route_on": route_on,
    }
    return {
        "schema": SCHEMA,
        "suite": suite.name,
        "rows": [shared | r for r in rows],
        "method": meta,
        "routing": routing
        | {
            "requested_skip_ratio": requested,
            "realised": realised,
            "realised_per_task": {r["task"]: s for r, s in zip(rows, stats_per_task, strict=True)},
        },
        "model": {
            "id": model_id,
            "hash": mhash,
            "hash_kind": kind,
            "class": type(model).__name__,
            "num_layers": int(getattr(model.config, "num_hidden_layers", 0) or 0),
            "device": device,
            "dtype": dtype,
        },
        "routers": {
            "path": meta.get("router_path"),
            "file_hash": prov.router_file_hash(meta.get("router_path")),
            "state_hash": prov.router_state_hash(model),
        },
        "run": {
            "seed": seed,
            "batch_size": batch_size,
            "route_on": route_on,
            "add_bos_token": getattr(lm, "add_bos_token", None),
            "max_length": getattr(lm, "max_length", None),
            "started_utc": started,
            "wall_s": round(wall_total, 2),
            "versions": prov.versions(),
            "threads": _threads(),
        },
        "suite_config": suite.to_dict(),
        "files": {},
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def write_result(result: EvalResult, out_dir: str | Path, name: str) -> dict[str, Path]:
    """Write the record, lm-eval's results and the item log into ``out_dir`` (atomically)."""
    from mindskip.files import write_json, write_jsonl
    from mindskip.records import check_evaluation

    out_dir = Path(out_dir)
    paths = {
        "record": out_dir / f"{name}.json",
        "lm_eval": out_dir / f"{name}.lm_eval.json",
        "items": out_dir / f"{name}.items.jsonl.gz",
        "prompts": out_dir / f"{name}.prompts.jsonl.gz",
    }
    result.record["files"] = {k: p.name for k, p in paths.items() if k != "record"}
    check_evaluation(result.record, paths["record"])  # before anything is written
    write_items(paths["items"], result.items)
    write_jsonl(paths["prompts"], result.prompts, compact=True)  # the profile's "scored" inputs
    write_json(paths["lm_eval"], result.lm_eval)
    write_json(paths["record"], result.record)
    return paths
