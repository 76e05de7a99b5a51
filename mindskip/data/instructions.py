"""Instruction data for router tuning: ``{"instruction", "input", "output"}`` records.

- :func:`build_instruction_set`: the embedded default, from BIG-bench tasks held out from
  evaluation, with every record that overlaps an evaluation item removed.
- :func:`load_alpaca_jsonl`: a user's local Alpaca-format file (JSONL or a JSON list).
- :func:`load_hf_instructions`: an HF dataset id (needs a hub or a local HF cache).
- :func:`load_instructions`: either, by whether the argument is an existing file.
"""

from __future__ import annotations

import json
import logging
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._io import read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

FIELDS = ("instruction", "input", "output")

# BIG-bench 1.0.0 JSON tasks used for training, none in the evaluation suite. Chosen for
# plain-English inputs, a single correct answer, and a spread of skills (analogy, causal
# and temporal reasoning, pragmatics, logic, counting, sorting, world knowledge).
DEFAULT_TRAIN_TASKS: tuple[str, ...] = (
    "analogical_similarity",
    "anachronisms",
    "causal_judgment",
    "common_morpheme",
    "date_understanding",
    "disambiguation_qa",
    "emoji_movie",
    "hyperbaton",
    "implicatures",
    "logical_fallacy_detection",
    "misconceptions",
    "movie_recommendation",
    "navigate",
    "object_counting",
    "sports_understanding",
    "word_sorting",
)

NGRAM = 13  # word n-gram length of the overlap check (as in LM contamination studies)
_WORD = re.compile(r"\w+")


class InstructionDataError(ValueError):
    """Instruction data that cannot be used; the message names the file/dataset and field."""


# --------------------------------------------------------------------------- overlap


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, words only, single spaces: the key for the exact-overlap check."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def _ngrams(norm: str, n: int = NGRAM) -> set[str]:
    words = norm.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def eval_texts(jsonl_files: Iterable[Path]) -> list[str]:
    """The item texts of evaluation JSONL files: each row's ``input`` (BIG-bench) or
    ``question`` (MMLU, GSM8K) field."""
    texts = []
    for path in jsonl_files:
        for row in read_jsonl(Path(path)):
            text = row.get("input", row.get("question"))
            if isinstance(text, str):
                texts.append(text)
    return texts


def drop_overlaps(
    records: Sequence[dict[str, Any]], eval_items: Iterable[str], *, n: int = NGRAM
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Remove records that overlap an evaluation item.

    Texts are compared after :func:`normalize_text`. A record overlaps an item when the
    record's ``input`` (or, if empty, its ``instruction``) equals the item or starts with it
    (items of at least 4 words; this catches a question followed by its options), or when
    the record's instruction + input shares a word ``n``-gram with the item. Returns the kept
    records and the counts dropped, ``{"exact": .., "ngram": ..}``.
    """
    exact_keys: set[str] = set()
    grams: set[str] = set()
    for text in eval_items:
        norm = normalize_text(text)
        exact_keys.add(norm)
        grams |= _ngrams(norm, n)
    kept, counts = [], {"exact": 0, "ngram": 0}
    for r in records:
        words = normalize_text(r["input"] or r["instruction"]).split()
        heads = {" ".join(words[:k]) for k in range(4, len(words))} | {" ".join(words)}
        if not heads.isdisjoint(exact_keys):
            counts["exact"] += 1
        elif not _ngrams(normalize_text(r["instruction"] + " " + r["input"]), n).isdisjoint(grams):
            counts["ngram"] += 1
        else:
            kept.append(r)
    return kept, counts


# --------------------------------------------------------------------------- BIG-bench


def bigbench_instructions(task_data: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """Alpaca-style records from one BIG-bench JSON task.

    instruction: the task's ``task_prefix`` (or, without one, its ``description``);
    input: the example input, followed by an ``Options:`` list for multiple-choice examples
    (in a fixed shuffled order); output: the correct target text (for multiple choice the
    single best-scoring choice; examples with ties are skipped; for free-text targets the
    first target). Each record also carries ``source: "bigbench/<task>"``.
    """
    instruction = str(task_data.get("task_prefix") or task_data.get("description", "")).strip()
    records = []
    for i, ex in enumerate(task_data.get("examples", [])):
        text = str(ex.get("input", "")).strip()
        scores = ex.get("target_scores")
        if scores:
            choices = [str(c).strip() for c in scores]
            values = [float(v) for v in scores.values()]
            if values.count(max(values)) != 1 or len(set(choices)) != len(choices):
                continue
            output = choices[values.index(max(values))]
            shown = sorted(choices)
            random.Random(f"{task}:{i}").shuffle(shown)
            text += "\nOptions:\n" + "\n".join(f"- {c}" for c in shown)
        else:
            target = ex.get("target")
            if isinstance(target, list):
                target = target[0] if target else None
            if not isinstance(target, str) or not target.strip():
                continue
            output = target.strip()
        src = f"bigbench/{task}"
        records.append({"instruction": instruction, "input": text, "output": output, "source": src})
    return records


def build_instruction_set(
    bigbench_files: dict[str, Path],
    eval_jsonl: Sequence[Path],
    out_path: Path,
    *,
    per_task_cap: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the embedded training set to ``out_path`` (JSONL) and ``<stem>.manifest.json``.

    From each BIG-bench task in ``bigbench_files`` (name -> ``task.json``) take at most
    ``per_task_cap`` records (a seeded sample), drop every record that overlaps an item of
    the evaluation files ``eval_jsonl`` (:func:`drop_overlaps`), and shuffle the rest with
    ``seed``. The manifest records per-task counts, the overlaps dropped, the sha256 and
    the total. Returns the manifest.
    """
    evaluation_tasks = {Path(p).name.split(".")[0] for p in eval_jsonl}
    clash = {t for t in bigbench_files if f"bb_{t}" in evaluation_tasks}
    if clash:
        raise ValueError(f"training tasks {sorted(clash)} are also evaluation tasks")
    records: list[dict[str, Any]] = []
    per_task: dict[str, dict[str, int]] = {}
    for task, path in sorted(bigbench_files.items()):
        recs = bigbench_instructions(read_json(Path(path)), task)
        available = len(recs)
        if len(recs) > per_task_cap:
            recs = random.Random(f"{seed}:{task}").sample(recs, per_task_cap)
        per_task[task] = {"available": available, "taken": len(recs)}
        records.extend(recs)
    kept, overlaps = drop_overlaps(records, eval_texts(eval_jsonl))
    for task in per_task:
        per_task[task]["kept"] = sum(r["source"] == f"bigbench/{task}" for r in kept)
    random.Random(seed).shuffle(kept)
    out_path = Path(out_path)
    sha = write_jsonl(out_path, kept)
    manifest = {
        "path": str(out_path.resolve()),
        "sha256": sha,
        "n": len(kept),
        "seed": seed,
        "per_task_cap": per_task_cap,
        "per_task": per_task,
        "overlaps_dropped": overlaps,
        "overlap_check": f"normalised exact match or shared word {NGRAM}-gram against "
        f"{len(eval_jsonl)} evaluation files",
        "source": {"package": "bigbench", "version": "1.0.0", "licence": "Apache-2.0"},
    }
    write_json(out_path.with_name(out_path.stem + ".manifest.json"), manifest)
    log.info("instructions: %d records (%s overlaps dropped)", len(kept), overlaps)
    return manifest


# --------------------------------------------------------------------------- loaders


def _to_record(row: Any, where: str, cols: dict[str, str]) -> dict[str, str]:
    if not isinstance(row, dict):
        raise InstructionDataError(f"{where}: expected an object, got {type(row).__name__}")
    rec = {}
    for field, col in cols.items():
        value = row.get(col)
        if value is None and field == "input":
            value = ""  # Alpaca leaves input empty (or out) when there is none
        if not isinstance(value, str):
            raise InstructionDataError(
                f"{where}: field {col!r} ({field}) is "
                + ("missing" if value is None else f"a {type(value).__name__}, not a string")
            )
        rec[field] = value
    if not rec["instruction"].strip() and not rec["input"].strip():
        raise InstructionDataError(f"{where}: both instruction and input are empty")
    if not rec["output"].strip():
        raise InstructionDataError(f"{where}: output is empty")
    return rec


def load_alpaca_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read a local Alpaca-format file: JSON Lines, or one JSON list (as Alpaca ships).

    Every row needs string ``instruction`` and ``output``; ``input`` may be empty or absent.
    Raises :class:`InstructionDataError` naming the file and line/row on any bad row,
    and for a missing, unreadable or empty file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InstructionDataError(f"cannot read instruction file {path}: {e}") from e
    cols = {f: f for f in FIELDS}
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InstructionDataError(f"{path}: not valid JSON ({e.msg})") from e
        records = [_to_record(r, f"{path} row {i}", cols) for i, r in enumerate(rows)]
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InstructionDataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            records.append(_to_record(row, f"{path}:{lineno}", cols))
    if not records:
        raise InstructionDataError(f"{path}: no records")
    return records


def load_hf_instructions(
    dataset_id: str,
    split: str = "train",
    *,
    name: str | None = None,
    instruction_col: str = "instruction",
    input_col: str = "input",
    output_col: str = "output",
) -> list[dict[str, str]]:
    """Load an HF dataset (``datasets.load_dataset(dataset_id, name, split=split)``) and map
    its instruction/input/output columns (``*_col`` name them) to records.

    The ``input`` column may be absent (then empty). Needs the hub or a local HF cache.
    """
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, name, split=split)
    except Exception as e:
        raise InstructionDataError(
            f"cannot load HF dataset {dataset_id!r} (split {split!r}): {e}"
        ) from e
    cols = {"instruction": instruction_col, "input": input_col, "output": output_col}
    missing = [c for f, c in cols.items() if f != "input" and c not in ds.column_names]
    if missing:
        raise InstructionDataError(
            f"HF dataset {dataset_id!r} has no column(s) {missing}; columns: {ds.column_names}"
        )
    return [_to_record(row, f"{dataset_id}[{i}]", cols) for i, row in enumerate(ds)]


def load_instructions(source: str | Path, split: str = "train") -> list[dict[str, str]]:
    """Records from a local Alpaca file when ``source`` is an existing path, otherwise
    from the HF dataset id ``source``."""
    if Path(source).exists():
        return load_alpaca_jsonl(source)
    if str(source).endswith((".json", ".jsonl")):
        raise InstructionDataError(f"instruction file {source} does not exist")
    return load_hf_instructions(str(source), split)


def training_records(
    source: str, assets_dir: str | Path = "results/assets"
) -> list[dict[str, str]]:
    """Records for a config's ``datasets`` value: ``"embedded"`` (the held-out BIG-bench set
    listed in ``<assets_dir>/manifest.json``), ``"hf:<dataset id>"``, or a local file."""
    if source == "embedded":
        manifest = Path(assets_dir) / "manifest.json"
        if not manifest.exists():
            raise InstructionDataError(
                f"{manifest} is missing: build the assets first (python -m mindskip.data prepare)"
            )
        return load_alpaca_jsonl(read_json(manifest)["train_file"])
    if source.startswith("hf:"):
        return load_hf_instructions(source[3:])
    return load_alpaca_jsonl(source)


def record_text(record: dict[str, str]) -> str:
    """A record as plain text (instruction, input, output), for calibration passes."""
    return "\n\n".join(record[k] for k in FIELDS if record.get(k))
