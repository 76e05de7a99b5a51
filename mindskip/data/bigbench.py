"""BIG-bench tasks from a local folder (no longer on the default path).

``bigbench==1.0.0`` left the package registry on 2026-12-06, so the default suite is the
paper's own tasks (:mod:`mindskip.data.tasks`). A user who has an unpacked
``bigbench/benchmark_tasks`` folder may still add its JSON tasks: set
``MINDSKIP_BIGBENCH_DIR`` to it and list the tasks under ``assets.bigbench_tasks``; each
becomes ``bb_<task>``, zero-shot multiple choice scored with ``acc`` and ``acc_norm``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import read_json, sha256_file, write_json, write_parts, write_yaml

log = logging.getLogger(__name__)

BIGBENCH_DIR_ENV = "MINDSKIP_BIGBENCH_DIR"
BIGBENCH_PREFIX = "bb_"

# BIG-bench's defaults for JSON tasks (bigbench/api/json_task.py).
_BB_INPUT_PREFIX = "\nQ: "
_BB_OUTPUT_PREFIX = "\nA: "
_BB_CHOICE_PREFIX = "\n  choice: "

_MC_METRICS = [
    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
]


def bigbench_task_name(task: str) -> str:
    """lm-eval name of an embedded BIG-bench task: ``social_iqa`` -> ``bb_social_iqa``."""
    return BIGBENCH_PREFIX + task


def bigbench_docs(
    task_data: dict[str, Any], task: str, *, show_choices: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Turn a BIG-bench JSON task into multiple-choice documents.

    Prompts are cloze style by default, as lm-eval's ARC/PIQA/SIQA tasks: ``task_prefix``,
    ``example_input_prefix + input`` and ``example_output_prefix``, and each choice is
    scored as the continuation. Listing the choices in the prompt (``show_choices=True``,
    BIG-bench's own format when ``append_choices_to_input``, in a fixed per-item shuffled
    order) put SmolLM2-135M at or below chance on social_iqa and general_knowledge, where
    cloze prompts score well above it (paired +0.18 and +0.17 on the same 100 items).
    Surrounding whitespace is stripped because lm-eval puts one space between prompt and
    answer. Each document has ``idx``, ``input`` (raw),
    ``inputs`` (prompt), ``multiple_choice_targets`` (stripped), ``multiple_choice_scores``
    and ``label``, the index of the first highest score.

    Examples without ``target_scores``, without a strictly best choice, or whose choices
    collide once stripped are skipped; returns the documents and the skipped count.
    """
    prefix = str(task_data.get("task_prefix", ""))
    in_prefix = task_data.get("example_input_prefix", _BB_INPUT_PREFIX)
    out_prefix = task_data.get("example_output_prefix", _BB_OUTPUT_PREFIX)
    choice_prefix = task_data.get("choice_prefix", _BB_CHOICE_PREFIX)
    append = show_choices and task_data.get("append_choices_to_input", True)
    docs: list[dict[str, Any]] = []
    skipped = 0
    for i, ex in enumerate(task_data.get("examples", [])):
        scores_by_target = ex.get("target_scores")
        if not scores_by_target:
            skipped += 1
            continue
        targets = [str(t).strip() for t in scores_by_target]
        scores = [float(s) for s in scores_by_target.values()]
        best = max(scores)
        if len(set(targets)) != len(targets) or len(targets) < 2 or scores.count(best) != 1:
            skipped += 1
            continue
        text = in_prefix + str(ex["input"])
        if append:
            shown = sorted(targets)
            random.Random(f"{task}:{i}").shuffle(shown)
            text += "".join(choice_prefix + t for t in shown)
        docs.append(
            {
                "idx": i,
                "input": str(ex["input"]),
                "inputs": (prefix + text + out_prefix).strip(),
                "multiple_choice_targets": targets,
                "multiple_choice_scores": scores,
                "label": scores.index(best),
            }
        )
    return docs, skipped


def _base_yaml(task: str, splits: dict[str, Path]) -> dict[str, Any]:
    return {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {s: str(p.resolve()) for s, p in splits.items()}},
        "test_split": "test",
    }


def write_bigbench_task(
    task: str, task_json: Path, out_dir: Path, *, source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``bb_<task>`` (zero-shot multiple choice, metrics acc and acc_norm) from a
    BIG-bench ``task.json``; returns its manifest record."""
    docs, skipped = bigbench_docs(read_json(Path(task_json)), task)
    if not docs:
        raise ValueError(f"bigbench task {task!r}: no usable multiple-choice examples")
    name = bigbench_task_name(task)
    splits = write_parts(out_dir, name, {"test": docs})
    paths = {part: Path(f["path"]) for part, f in splits.items()}
    cfg = _base_yaml(name, paths) | {
        "output_type": "multiple_choice",
        "doc_to_text": "inputs",
        "doc_to_target": "label",
        "doc_to_choice": "multiple_choice_targets",
        "num_fewshot": 0,
        "metric_list": _MC_METRICS,
        "metadata": {"version": 1.0},
    }
    yaml_path = out_dir / f"{name}.yaml"
    write_yaml(yaml_path, cfg, "Written by mindskip.data.bigbench (absolute data paths).")
    return {
        "task": name,
        "yaml": str(yaml_path.resolve()),
        "splits": splits,
        "n_skipped": skipped,
        "num_fewshot": 0,
        "metrics": ["acc", "acc_norm"],
        "source": {"bigbench_task": task, **(source or {})},
    }


def _bigbench_manifest_ok(manifest: dict[str, Any], tasks: Sequence[str], dest: Path) -> bool:
    entries = manifest.get("tasks", {})
    return all(
        t in entries
        and (dest / f"{t}.json").is_file()
        and sha256_file(dest / f"{t}.json") == entries[t]["sha256"]
        for t in tasks
    )


def extract_bigbench(
    tasks: Sequence[str], out_dir: Path, *, source_dir: Path | None = None
) -> dict[str, Any]:
    """Copy BIG-bench ``task.json`` files from a local folder to ``out_dir/bigbench/``.

    The folder is ``source_dir``, else ``$MINDSKIP_BIGBENCH_DIR`` (an unpacked
    ``bigbench/benchmark_tasks``); nothing is downloaded (the registry no longer serves
    the archive). ``out_dir/bigbench/manifest.json`` lists each copied task with its sha256
    and example count; when it already lists every requested task with matching files,
    no folder is needed. Returns that manifest.
    """
    dest = Path(out_dir) / "bigbench"
    man_path = dest / "manifest.json"
    manifest: dict[str, Any] = read_json(man_path) if man_path.is_file() else {}
    if _bigbench_manifest_ok(manifest, tasks, dest):
        log.info("bigbench: %d tasks cached in %s", len(tasks), dest)
        return manifest
    env_dir = os.environ.get(BIGBENCH_DIR_ENV)
    src = source_dir if source_dir is not None else (Path(env_dir) if env_dir else None)
    if src is None or not Path(src).is_dir():
        raise FileNotFoundError(
            f"BIG-bench tasks {list(tasks)} need a local bigbench/benchmark_tasks folder: "
            f"set {BIGBENCH_DIR_ENV} to one (bigbench==1.0.0 is no longer on the registry), "
            "or remove assets.bigbench_tasks"
        )
    missing = [t for t in tasks if not (Path(src) / t / "task.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"no task.json for {missing} in {src} (JSON tasks only; tasks made of "
            "subtasks or programmatic tasks are not supported)"
        )
    entries = {
        t: e
        for t, e in manifest.get("tasks", {}).items()
        if (dest / f"{t}.json").is_file() and sha256_file(dest / f"{t}.json") == e["sha256"]
    }
    dest.mkdir(parents=True, exist_ok=True)
    for t in tasks:
        target = dest / f"{t}.json"
        shutil.copyfile(Path(src) / t / "task.json", target)
        examples = read_json(target).get("examples")
        if not examples:
            raise ValueError(f"bigbench task {t!r} has no 'examples' (subtask layout?)")
        entries[t] = {
            "path": str(target.resolve()),
            "sha256": sha256_file(target),
            "n_examples": len(examples),
        }
    source = {"package": "bigbench", "how": f"copied from a local benchmark_tasks folder: {src}"}
    manifest = {"source": source, "licence": "Apache-2.0", "tasks": dict(sorted(entries.items()))}
    write_json(man_path, manifest)
    log.info("bigbench: copied %d task files to %s", len(tasks), dest)
    return manifest


def write_bigbench_tasks(
    tasks: Sequence[str], out_dir: Path, tasks_dir: Path
) -> dict[str, dict[str, Any]]:
    """Copy ``tasks`` from the local folder and write each as ``bb_<task>`` into
    ``tasks_dir``; returns their manifest records (empty for no tasks)."""
    if not tasks:
        return {}
    bb = extract_bigbench(tasks, out_dir)
    out = {}
    for t in tasks:
        rec = write_bigbench_task(t, Path(bb["tasks"][t]["path"]), tasks_dir, source=bb["source"])
        rec["label"] = f"{t} (BB)"
        out[rec["task"]] = rec
    return out
