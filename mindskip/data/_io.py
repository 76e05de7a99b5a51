"""Small file helpers shared by the data modules: JSON(L) I/O, package files, hashing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import files
from ..files import read_json as read_json  # re-exported for the data modules
from ..files import read_jsonl as read_jsonl
from ..files import write_json as write_json
from ..provenance import sha256_file as sha256_file


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> str:
    """Write rows as JSON Lines (UTF-8, one compact object per line, keys in their own
    order), atomically; return its sha256."""
    files.write_jsonl(path, rows, sort_keys=False, compact=True)
    return sha256_file(path)
