"""Merge evaluation parts (the same model and method, different tasks) into one record.

A suite can be scored as several jobs, one task or a few each (a cluster runs them in
parallel; a small CPU keeps each job short), then merged::

    python -m mindskip.evaluate.merge --out results/eval/m/dense/0 part1/ part2/ ...

Each part folder holds ``<suite>.json`` and the files it names. Parts must agree on the
model hash, method, routing config, seed and suite name.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .items import read_items
from .runner import EvalResult, _aggregate_capacity, write_result

_MUST_AGREE = (
    ("model", "hash"),
    ("method",),
    ("routing", "config"),
    ("run", "seed"),
    ("suite",),
)


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _find_record(part: Path, suite: str | None) -> Path:
    if part.is_file():
        return part
    names = [suite] if suite else ["embedded", "paper"]
    for name in names:
        if (part / f"{name}.json").is_file():
            return part / f"{name}.json"
    raise FileNotFoundError(f"no {' or '.join(n + '.json' for n in names)} in {part}")


def merge_results(
    parts: Sequence[str | Path], out_dir: str | Path, *, suite: str | None = None
) -> EvalResult:
    """Merge part folders (or record files) into one record written to ``out_dir``."""
    if not parts:
        raise ValueError("nothing to merge")
    records, items, lm_out = [], [], {}
    for part in parts:
        path = _find_record(Path(part), suite)
        rec = json.loads(path.read_text())
        records.append((path, rec))
        items += read_items(path.parent / rec["files"]["items"])
        lm_out |= json.loads((path.parent / rec["files"]["lm_eval"]).read_text())
    first_path, first = records[0]
    for path, rec in records[1:]:
        for key in _MUST_AGREE:
            if _get(rec, key) != _get(first, key):
                raise ValueError(
                    f"cannot merge {path} with {first_path}: {'.'.join(key)} differs "
                    f"({_get(rec, key)!r} vs {_get(first, key)!r})"
                )
    rows = [r for _, rec in records for r in rec["rows"]]
    tasks = [r["task"] for r in rows]
    dupes = sorted({t for t in tasks if tasks.count(t) > 1})
    if dupes:
        raise ValueError(f"tasks {dupes} appear in more than one part")

    per_task = {t: s for _, rec in records for t, s in rec["routing"]["realised_per_task"].items()}
    realised = _aggregate_capacity([per_task[t] for t in tasks])
    suite_skip = realised["skip_ratio"] if realised else 0.0
    merged = json.loads(json.dumps(first))  # deep copy
    merged["rows"] = [r | {"realised_skip_ratio_suite": suite_skip} for r in rows]
    merged["routing"]["realised"] = realised
    merged["routing"]["realised_per_task"] = per_task
    merged["suite_config"]["tasks"] = [
        t for _, rec in records for t in rec["suite_config"]["tasks"] if t["task"] in tasks
    ]
    merged["run"]["wall_s"] = round(sum(rec["run"]["wall_s"] for _, rec in records), 2)
    merged["run"]["batch_size"] = sorted({rec["run"]["batch_size"] for _, rec in records})
    merged["run"]["parts"] = [
        {
            "path": str(p),
            "tasks": [r["task"] for r in rec["rows"]],
            "started_utc": rec["run"]["started_utc"],
            "wall_s": rec["run"]["wall_s"],
            "versions": rec["run"]["versions"],
        }
        for p, rec in records
    ]
    items.sort(key=lambda r: (r["task"], r["filter"], r["doc_id"]))
    result = EvalResult(record=merged, items=items, lm_eval=lm_out)
    result.paths = write_result(result, out_dir, merged["suite"])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mindskip.evaluate.merge", description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--suite", default=None)
    p.add_argument("parts", nargs="+")
    a = p.parse_args(argv)
    res = merge_results(a.parts, a.out, suite=a.suite)
    print(f"merged {len(a.parts)} parts, {len(res.rows)} tasks -> {res.paths['record']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
