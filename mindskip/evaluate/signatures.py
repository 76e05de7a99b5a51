"""The routing decisions of a forward's rows, as short strings: what the scorers record
per request (:mod:`.shared_prefix`, :mod:`.packed`, :mod:`.hflm`)."""

from __future__ import annotations

import torch
from torch import nn


def decision_signatures(model: nn.Module) -> list[str] | None:
    """Per row of the last forward, its sequence decisions over the routed layers
    (``"1"`` execute, ``"0"`` skip, layers in index order); None without sequence routing."""
    from mindskip.surgery import is_mindskip, mindskip_layers

    if not is_mindskip(model):
        return None
    layers = [lay for _, lay in sorted(mindskip_layers(model).items()) if lay.routing == "sequence"]
    if not layers or any(lay.last_exec is None for lay in layers):
        return None
    bits = torch.stack([lay.last_exec.reshape(-1).bool() for lay in layers], 1).cpu().tolist()
    return ["".join("1" if b else "0" for b in row) for row in bits]
