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


def write_parts(out_dir: Path, name: str, parts: dict[str, list[dict[str, Any]]]) -> dict:
    """Each part of a task as ``out_dir/data/<name>.<part>.jsonl``; returns
    ``{part: {"path", "sha256", "n"}}`` (absolute paths). An empty part is refused."""
    record = {}
    for part, rows in parts.items():
        if not rows:
            raise ValueError(f"{name}: the {part} part is empty")
        path = (Path(out_dir) / "data" / f"{name}.{part}.jsonl").resolve()
        record[part] = {"path": str(path), "sha256": write_jsonl(path, rows), "n": len(rows)}
    return record


def write_yaml(path: Path, cfg: dict[str, Any], header: str) -> None:
    """A task YAML, atomically: ``header`` as a comment line, keys in their own order,
    multi-line strings (prompts) as readable blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    body = yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    files.write_text(path, f"# {header}\n{body}")
