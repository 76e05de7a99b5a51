"""Router files: a :class:`~mindskip.artefacts.RouterFolder` holds ``routers.safetensors``
(router weights only, with the model's fingerprint and the routing config as metadata) and
``mindskip_config.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .artefacts import RouterFolder
from .config import ConfigError, MindSkipConfig
from .files import atomic_path, write_json
from .surgery import (
    _hidden_size,
    _num_layers,
    apply_mindskip,
    get_config,
    is_mindskip,
    mindskip_layers,
    set_thresholds,
)

ROUTERS_FILE = RouterFolder.weights_file
CONFIG_FILE = RouterFolder.config_file


class RouterFileError(ValueError):
    """A router file that does not fit the model it is loaded into."""


def _fingerprint(model: nn.Module) -> dict[str, str]:
    return {
        "num_layers": str(_num_layers(model)),
        "hidden_size": str(_hidden_size(model)),
        "model_type": str(getattr(model.config, "model_type", "")),
    }


def save_routers(model: nn.Module, path: str | Path) -> Path:
    """Write ``routers.safetensors`` (router weights only) and the config as JSON."""
    folder = RouterFolder(path)
    cfg = get_config(model)
    tensors = {
        f"layers.{i}.router.weight": layer.router.proj.weight.detach().cpu().contiguous()
        for i, layer in mindskip_layers(model).items()
    }
    meta = {**_fingerprint(model), "mindskip_config": cfg.to_json()}
    with atomic_path(folder.weights) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_json(folder.config, {**meta, "config": cfg.to_dict()})
    return folder.path


def read_router_config(path: str | Path) -> MindSkipConfig:
    """The routing config saved in a router folder."""
    folder = RouterFolder(path)
    try:
        return MindSkipConfig.from_dict(folder.read_config()["config"])
    except (KeyError, TypeError, ConfigError) as e:
        raise RouterFileError(f"{folder.config} holds no valid routing config: {e}") from e


def load_routers(model: nn.Module, path: str | Path) -> nn.Module:
    """Load routers saved by :func:`save_routers`; applies MindSkip first if needed.

    A file made for another model (layer count, hidden size, family) or another routing
    config is a :class:`RouterFileError`, never a silent partial load.
    """
    folder = RouterFolder(path)
    file = folder.weights
    if not file.exists():
        raise RouterFileError(f"no {ROUTERS_FILE} in {folder.path}")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise RouterFileError(
            f"{file} is truncated or corrupt ({e}); delete it and rerun the router-tuning "
            "step that wrote it (with Snakemake: rerun the workflow, it remakes the file)"
        ) from e
    expected = _fingerprint(model)
    for key, want in expected.items():
        if meta.get(key) != want:
            raise RouterFileError(
                f"{file} was saved for {key}={meta.get(key)!r}, but this model has {key}={want!r}"
            )
    try:
        saved = MindSkipConfig.from_dict(json.loads(meta["mindskip_config"]))
    except (KeyError, ConfigError, json.JSONDecodeError) as e:
        raise RouterFileError(f"{file} has no valid mindskip_config metadata: {e}") from e
    if is_mindskip(model):
        if get_config(model).replace(layer_thresholds=None) != saved.replace(layer_thresholds=None):
            raise RouterFileError(
                f"{file} holds routers for {saved}, "
                f"but the model is routed with {get_config(model)}"
            )
    else:
        apply_mindskip(model, saved)
    if saved.layer_thresholds:
        set_thresholds(model, dict(saved.layer_thresholds))
    layers = mindskip_layers(model)
    wanted = {f"layers.{i}.router.weight" for i in layers}
    if set(tensors) != wanted:
        raise RouterFileError(
            f"{file} has routers for {sorted(tensors)}, expected {sorted(wanted)}"
        )
    with torch.no_grad():
        for i, layer in layers.items():
            w = tensors[f"layers.{i}.router.weight"]
            if w.shape != layer.router.proj.weight.shape:
                raise RouterFileError(f"router {i} has shape {tuple(w.shape)} in {file}")
            layer.router.proj.weight.copy_(w)
    return model


def routers_hash(path: str | Path) -> str:
    """sha256 of a saved router file, for provenance records."""
    return RouterFolder(path).sha256()
