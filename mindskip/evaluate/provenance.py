"""What a result file records about its model, routers, method and software."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..provenance import sha256_files
from ..provenance import versions as versions  # re-exported: what a score file records


def _is_router_param(name: str) -> bool:
    return ".router." in name or name.startswith("router.")


def state_dict_hash(model: nn.Module, *, skip_routers: bool = True) -> str:
    """sha256 over (dtype, shape, bytes) of every tensor, in state-dict order.

    Names are left out: wrapping a layer (MindSkip, a hand-pruned layer) renames its
    weights (``layers.3.self_attn`` -> ``layers.3.layer.self_attn``) but keeps them and
    their order, so a routed model hashes like its dense base.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if skip_routers and _is_router_param(name):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_source(model: nn.Module) -> str:
    """The id or folder the model was loaded from (``config._name_or_path``)."""
    return str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")


def model_hash(model: nn.Module, model_id: str | None = None) -> tuple[str, str]:
    """``(hash, kind)`` identifying the base weights (routers excluded).

    ``kind`` is ``"safetensors"`` (sha256 of the folder's ``*.safetensors`` files in name
    order; cheap and checkable with ``sha256sum``) when ``model_id`` (or the model's
    ``_name_or_path``) is a local folder holding them, else ``"state_dict"``.
    """
    source = model_id or model_source(model)
    folder = Path(source) if source else None
    if folder is not None and folder.is_dir():
        files = sorted(folder.glob("*.safetensors"))
        if files:
            return sha256_files(files), "safetensors"
    return state_dict_hash(model), "state_dict"


def router_state_hash(model: nn.Module) -> str | None:
    """sha256 of the in-memory router weights (None when the model has no routers)."""
    from mindskip import is_mindskip, mindskip_layers

    if not is_mindskip(model):
        return None
    h = hashlib.sha256()
    for i, layer in sorted(mindskip_layers(model).items()):
        w = layer.router.proj.weight.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{i}|{tuple(w.shape)}\n".encode())
        h.update(w.numpy().tobytes())
    return h.hexdigest()


def router_file_hash(path: str | Path | None) -> str | None:
    """sha256 of a saved router folder's file (``mindskip.routers_hash``), or None."""
    if not path:
        return None
    from mindskip import routers_hash

    return routers_hash(path)


def routing_description(model: nn.Module) -> dict[str, Any]:
    """Unit, routing and the full MindSkip config of a model (``applied: False`` if dense)."""
    from mindskip import get_config, is_mindskip, mindskip_layers

    if not is_mindskip(model):
        return {"applied": False, "unit": None, "routing": None, "config": None, "layers": []}
    cfg = get_config(model)
    return {
        "applied": True,
        "unit": cfg.unit,
        "routing": cfg.routing,
        "config": cfg.to_dict(),
        "layers": sorted(mindskip_layers(model)),
    }


def device_and_dtype(model: nn.Module) -> tuple[str, str]:
    p = next(model.parameters())
    return str(p.device), str(p.dtype).removeprefix("torch.")
