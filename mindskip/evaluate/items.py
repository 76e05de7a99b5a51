"""Per-item records: what the model chose on each item, small enough to always keep.

One row per (task, filter, document): the document id, the gold answer, per-choice
log-likelihoods and character lengths (multiple choice) or the filtered response
(generation), the predictions, and every numeric per-item metric lm-eval computed
(``acc``, ``acc_norm``, ``exact_match``). Rows are written as gzipped JSON Lines with a
fixed gzip header, so equal rows give byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..files import to_jsonable, write_bytes


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _argmax(xs: Sequence[float]) -> int:
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def item_rows(
    task: str,
    samples: Iterable[dict[str, Any]],
    choices_of: Callable[[dict[str, Any]], Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Rows for one leaf task from lm-eval's logged samples (``log_samples=True``).

    ``choices_of(doc)`` gives the answer strings of a multiple-choice document (the
    task's ``doc_to_choice``); with it, ``pred_norm`` is computed as lm-eval does
    (argmax of log-likelihood / character length).
    """
    rows = []
    for s in samples:
        row: dict[str, Any] = {
            "task": task,
            "doc_id": int(s["doc_id"]),
            "filter": s.get("filter", "none"),
            "target": to_jsonable(s.get("target")),
        }
        resps = s.get("filtered_resps", [])
        pairs = [r for r in resps if isinstance(r, list | tuple) and len(r) == 2]
        if resps and len(pairs) == len(resps) and all(_is_number(r[0]) for r in pairs):
            lls = [float(r[0]) for r in pairs]
            row["n_choices"] = len(lls)
            row["loglikelihoods"] = lls
            row["pred"] = _argmax(lls)
            if choices_of is not None:
                chars = [len(c) for c in choices_of(s["doc"])]
                if len(chars) == len(lls):
                    row["choice_chars"] = chars
                    row["pred_norm"] = _argmax([ll / n for ll, n in zip(lls, chars, strict=True)])
        else:
            row["response"] = to_jsonable(resps[0] if len(resps) == 1 else resps)
        for m in s.get("metrics", []):
            if _is_number(s.get(m)):
                row[m] = float(s[m])
        row["doc_hash"] = s.get("doc_hash")
        row["prompt_hash"] = s.get("prompt_hash")
        rows.append(row)
    rows.sort(key=lambda r: (r["task"], r["filter"], r["doc_id"]))
    return rows


def chance_level(rows: Sequence[dict[str, Any]]) -> float | None:
    """Mean of 1 / number of choices over multiple-choice rows (None if there are none)."""
    ks = [r["n_choices"] for r in rows if r.get("n_choices")]
    return sum(1.0 / k for k in ks) / len(ks) if ks else None


def write_items(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines; gzipped (with a fixed header) when the name ends in .gz."""
    path = Path(path)
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    return write_bytes(path, data)


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_items` (plain or gzipped JSON Lines)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
