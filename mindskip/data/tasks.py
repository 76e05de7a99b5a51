"""Local lm-eval tasks (YAML + JSONL) for the embedded evaluation suite.

Every task reads its data with ``dataset_path: json`` from absolute JSONL paths, so it loads
with no hub (``HF_DATASETS_OFFLINE=1``) through ``lm_eval.tasks.TaskManager(include_path=
<tasks dir>)``. Documents keep the source order; subsetting and shuffling are the
evaluator's job. Few-shot examples, where a task has them, come from a split carved
deterministically out of the source and disjoint from the test items.

Layout of ``write_task_suite(out_dir, ...)``::

    out_dir/<task>.yaml          one per task, no groups
    out_dir/data/<task>.<split>.jsonl
    out_dir/manifest.json        per task: yaml, splits (path, sha256, n), source, settings
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

# Close stand-ins for the paper's tasks that SmolLM2-135M scores above chance on
# (social_iqa ~ SIQA, winowhy ~ WinoGrande, strategyqa ~ BoolQ, epistemic_reasoning ~ RTE,
# physics / physical_intuition ~ ARC/OBQA/PIQA), plus timedial and general_knowledge.
DEFAULT_BIGBENCH_TASKS: tuple[str, ...] = (
    "social_iqa",
    "winowhy",
    "strategyqa",
    "epistemic_reasoning",
    "physics",
    "physical_intuition",
    "timedial",
    "general_knowledge",
)
MMLU_TASK = "mmlu_embedded"
GSM8K_TASK = "gsm8k_embedded"
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


# --------------------------------------------------------------------------- BIG-bench


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


def _write_yaml(path: Path, cfg: dict[str, Any]) -> None:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # multi-line prompts as readable blocks
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Written by mindskip.data.tasks; data paths are absolute. Do not edit.\n")
        yaml.dump(cfg, f, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def _write_splits(
    out_dir: Path, task: str, splits: dict[str, list[dict[str, Any]]]
) -> tuple[dict[str, Path], dict[str, Any]]:
    paths, record = {}, {}
    for split, rows in splits.items():
        path = (out_dir / "data" / f"{task}.{split}.jsonl").resolve()
        record[split] = {"path": str(path), "sha256": write_jsonl(path, rows), "n": len(rows)}
        paths[split] = path
    return paths, record


def write_bigbench_task(
    task: str, task_json: Path, out_dir: Path, *, source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``bb_<task>`` (zero-shot multiple choice, metrics acc and acc_norm) from a
    BIG-bench ``task.json``; returns its manifest record."""
    docs, skipped = bigbench_docs(read_json(Path(task_json)), task)
    if not docs:
        raise ValueError(f"bigbench task {task!r}: no usable multiple-choice examples")
    name = bigbench_task_name(task)
    paths, splits = _write_splits(out_dir, name, {"test": docs})
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
    _write_yaml(yaml_path, cfg)
    return {
        "task": name,
        "yaml": str(yaml_path.resolve()),
        "splits": splits,
        "n_skipped": skipped,
        "num_fewshot": 0,
        "metrics": ["acc", "acc_norm"],
        "source": {"bigbench_task": task, **(source or {})},
    }


# --------------------------------------------------------------------------- MMLU


def split_mmlu(
    rows: Sequence[dict[str, Any]], n_dev_per_subject: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Carve a few-shot ``dev`` split: the first ``n_dev_per_subject`` rows of each subject
    in source order. Returns ``(dev, test)``: ``dev`` interleaved across subjects (first
    row of every subject, then second, ...), so the first k shots come from k subjects;
    ``test`` the rest, stably sorted by subject like ``cais/mmlu``'s ``all`` config."""
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_subject[r["subject"]].append(r)
    subjects = sorted(by_subject)
    dev = [
        by_subject[s][k]
        for k in range(n_dev_per_subject)
        for s in subjects
        if k < len(by_subject[s])
    ]
    test = [r for s in subjects for r in by_subject[s][n_dev_per_subject:]]
    return dev, test


def write_mmlu_task(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    n_dev_per_subject: int = 5,
    num_fewshot: int = 5,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``mmlu_embedded``: one task over all subjects, lm-eval's MMLU prompt, metric acc.

    Few-shot examples are the first ``num_fewshot`` rows of the carved ``dev`` split
    (``sampler: first_n``), identical for every test item (see :func:`split_mmlu`). The
    paper's setting is 5-shot; the evaluator may override ``num_fewshot``.
    """
    dev, test = split_mmlu(rows, n_dev_per_subject)
    paths, splits = _write_splits(out_dir, MMLU_TASK, {"test": test, "dev": dev})
    cfg = _base_yaml(MMLU_TASK, paths) | {
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": num_fewshot,
        "output_type": "multiple_choice",
        "description": "The following are multiple choice questions (with answers).\n\n",
        "doc_to_text": (
            "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
            "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:"
        ),
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "metric_list": [_MC_METRICS[0]],
        "metadata": {"version": 1.0},
    }
    yaml_path = out_dir / f"{MMLU_TASK}.yaml"
    _write_yaml(yaml_path, cfg)
    return {
        "task": MMLU_TASK,
        "yaml": str(yaml_path.resolve()),
        "splits": splits,
        "n_subjects": len({r["subject"] for r in rows}),
        "num_fewshot": num_fewshot,
        "fewshot": f"first {n_dev_per_subject} rows per subject -> dev, sampler first_n",
        "metrics": ["acc"],
        "source": source or {},
    }


# --------------------------------------------------------------------------- GSM8K


def write_gsm8k_task(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    n_fewshot_pool: int = 5,
    num_fewshot: int = 5,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``gsm8k_embedded``: generate_until with exact_match, as lm-eval's ``gsm8k``
    (``Question: ... Answer:`` prompt, strict ``#### n`` and flexible last-number filters).

    The installed package carries only the test set, so the first ``n_fewshot_pool`` rows
    become the few-shot split (``train``, ``sampler: first_n``) and the rest the test split.
    """
    fewshot, test = list(rows[:n_fewshot_pool]), list(rows[n_fewshot_pool:])
    paths, splits = _write_splits(out_dir, GSM8K_TASK, {"test": test, "train": fewshot})
    cfg = _base_yaml(GSM8K_TASK, paths) | {
        "fewshot_split": "train",
        "fewshot_config": {"sampler": "first_n"},
        "num_fewshot": num_fewshot,
        "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
            }
        ],
        "generation_kwargs": {
            "until": ["Question:", "</s>", "<|im_end|>"],
            "do_sample": False,
            "temperature": 0.0,
        },
        "repeats": 1,
        "filter_list": [
            {
                "name": "strict-match",
                "filter": [
                    {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                    {"function": "take_first"},
                ],
            },
            {
                "name": "flexible-extract",
                "filter": [
                    {
                        "function": "regex",
                        "group_select": -1,
                        "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)",
                    },
                    {"function": "take_first"},
                ],
            },
        ],
        "metadata": {"version": 1.0},
    }
    yaml_path = out_dir / f"{GSM8K_TASK}.yaml"
    _write_yaml(yaml_path, cfg)
    return {
        "task": GSM8K_TASK,
        "yaml": str(yaml_path.resolve()),
        "splits": splits,
        "num_fewshot": num_fewshot,
        "fewshot": f"first {n_fewshot_pool} rows of the test file -> train, sampler first_n",
        "metrics": ["exact_match"],
        "source": source or {},
    }


# --------------------------------------------------------------------------- suite


def write_task_suite(
    out_dir: Path,
    *,
    bigbench_files: dict[str, Path],
    bigbench_source: dict[str, Any] | None = None,
    mmlu: tuple[Sequence[dict[str, Any]], dict[str, Any]] | None = None,
    gsm8k: tuple[Sequence[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write every task into ``out_dir`` and ``out_dir/manifest.json``; return the manifest.

    ``bigbench_files`` maps a BIG-bench task name to its ``task.json``; ``mmlu`` and
    ``gsm8k`` are ``(rows, source info)`` pairs as returned by
    :func:`mindskip.data.assets.load_mmlu` / :func:`~mindskip.data.assets.load_gsm8k`.
    """
    out_dir = Path(out_dir)
    records: dict[str, dict[str, Any]] = {}
    for task, path in bigbench_files.items():
        rec = write_bigbench_task(task, path, out_dir, source=bigbench_source)
        records[rec["task"]] = rec
    if mmlu is not None:
        rec = write_mmlu_task(mmlu[0], out_dir, source=mmlu[1])
        records[rec["task"]] = rec
    if gsm8k is not None:
        rec = write_gsm8k_task(gsm8k[0], out_dir, source=gsm8k[1])
        records[rec["task"]] = rec
    manifest = {"include_path": str(out_dir.resolve()), "tasks": records}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def eval_jsonl_files(tasks_dir: Path) -> list[Path]:
    """Every JSONL data file (all splits) of the tasks written into ``tasks_dir``."""
    return sorted((Path(tasks_dir) / "data").glob("*.jsonl"))


def smoke_eval(
    model_dir: Path,
    tasks_dir: Path,
    tasks: Sequence[str],
    *,
    limit: int = 20,
    batch_size: int = 8,
    num_fewshot: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score the model in ``model_dir`` on the first ``limit`` items of local ``tasks``
    (a check that the task files load and score; not a benchmark). Runs with the hub off.
    Returns ``{task: {metric: value}}``."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=TaskManager(include_path=str(Path(tasks_dir).resolve())),
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=False,
    )
    results: dict[str, dict[str, float]] = {}
    for task, metrics in out["results"].items():
        results[task] = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "alias"
        }
    return results
