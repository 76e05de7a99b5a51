"""One atomic writer for every file the pipeline writes, and strict readers.

Every result file goes through :func:`atomic_path`: the bytes are written to a temporary
file in the same folder, flushed to disk, then renamed over the target. A job that is
killed mid-write leaves the old file (or none), never half a file. Readers raise
:class:`ResultFileError`, which names the file and says what to do, instead of a parser's
error from deep inside.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class ResultFileError(ValueError):
    """A file the pipeline reads is missing, truncated or not what it should be."""


def _regenerate_hint(path: Path) -> str:
    return (
        f"delete {path} and rerun the step that writes it "
        "(with Snakemake: `snakemake --forcerun <rule>` or just rerun; the file is remade)"
    )


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from what results hold: numpy and torch scalars and arrays,
    paths, tuples, sets, dataclasses and objects with ``to_dict``. Float NaN stays NaN
    (``json`` writes it as ``NaN``)."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return [to_jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # numpy / torch arrays and scalars
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    return str(obj)


def dumps_json(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, ensure_ascii=False)


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """``obj`` as JSON (through :func:`to_jsonable`), with a final newline, atomically."""
    return write_text(path, dumps_json(obj, indent=indent, sort_keys=sort_keys) + "\n")


def write_jsonl(
    path: str | Path,
    rows: Iterable[Mapping[str, Any]],
    *,
    sort_keys: bool = True,
    compact: bool = False,
) -> Path:
    """JSON Lines; gzipped with a fixed header (byte-identical for equal rows) for ``.gz``.
    ``compact``: no spaces after separators."""
    path = Path(path)
    seps = (",", ":") if compact else None
    text = "".join(
        json.dumps(to_jsonable(r), ensure_ascii=False, sort_keys=sort_keys, separators=seps) + "\n"
        for r in rows
    )
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    return write_bytes(path, data)


def write_csv(
    path: str | Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]
) -> Path:
    """Rows as CSV with the given columns (missing cells empty), atomically."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), restval="", lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def write_frame(path: str | Path, df: Any) -> Path:
    """A pandas DataFrame as CSV (no index), atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def read_json(path: str | Path, what: str = "result file") -> Any:
    """Parsed JSON; a missing, empty, truncated or corrupt file is a :class:`ResultFileError`
    that names the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{what} {path} does not exist; run the step that writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultFileError(
            f"{what} {path} is truncated or corrupt ({e}); {_regenerate_hint(path)}"
        ) from e


def read_jsonl(path: str | Path, what: str = "result file") -> list[dict[str, Any]]:
    """Rows of a (gzipped) JSON Lines file; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{what} {path} does not exist; run the step that writes it")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ResultFileError(
                        f"{what} {path}:{lineno} is not valid JSON ({e.msg}); "
                        f"{_regenerate_hint(path)}"
                    ) from e
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ResultFileError(
            f"{what} {path} is truncated or corrupt ({e}); {_regenerate_hint(path)}"
        ) from e
    return rows


def finite_or_none(x: Any) -> float | None:
    """A float, or None for None/NaN/inf (for records that must be strict JSON)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
