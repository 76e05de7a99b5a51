"""What every result records: versions, environment, seeds and file hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("mindskip", "torch", "transformers", "datasets", "lm_eval", "snakemake")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python and package versions (``extra``: more distributions, e.g. ``("peft",)``)."""
    out = {"python": platform.python_version()}
    for name in (*_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return out


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the processor's architecture."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Machine stamp: CPU, threads, GPU name where there is one, date."""
    env: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def sha256_files(paths: list[Path] | list[str], chunk: int = 1 << 20) -> str:
    """sha256 over the files' bytes, in the given order (names are not hashed)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    return sha256_files([path])


def stamp(**extra: Any) -> dict[str, Any]:
    """versions + environment + whatever the caller adds (seed, config, hashes)."""
    return {"versions": versions(), "environment": environment(), **extra}


def set_threads(threads: int | None) -> None:
    """Pin torch's CPU threads to a job's share of the cores (Snakemake's ``threads``), so
    jobs that run side by side do not oversubscribe them. None keeps torch's default."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def log_to_file(path: str | Path) -> None:
    """Send logging and warnings to ``path`` (a rule's log file) and to stderr; an
    exception that ends the job is written there too (its one-line reason last), so the
    job's own log says why it failed, not only Snakemake's stderr."""
    import logging
    import sys

    file_handler = logging.FileHandler(path, mode="w")
    handlers = [file_handler, logging.StreamHandler(sys.stderr)]
    fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt, handlers=handlers, force=True)
    logging.captureWarnings(True)
    previous = sys.excepthook

    def hook(kind, value, tb) -> None:
        record = logging.LogRecord(
            "mindskip", logging.ERROR, "", 0, "job failed", None, (kind, value, tb)
        )
        file_handler.handle(record)
        reason = logging.LogRecord(
            "mindskip", logging.ERROR, "", 0, "%s: %s", (kind.__name__, value), None
        )
        file_handler.handle(reason)
        file_handler.flush()
        previous(kind, value, tb)

    sys.excepthook = hook
