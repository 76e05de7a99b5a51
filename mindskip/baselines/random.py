"""Random skipping: a sequence skips a layer with a given probability, decided by a hash
of (seed, layer, its real token ids), so its decision never depends on the batch."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..layers import MindSkipLayer


@dataclass(frozen=True)
class HashedSkip:
    """The ``random`` decision: a sequence skips with probability ``rate``.

    The draw is a hash of (seed, layer, the sequence's real token ids), so a sequence gets
    the same decision alone, in any batch, with any padding. Called by the wrapper as a
    forced decision (``(layer, batch, length) -> execute mask``) at prefill; decode steps
    reuse the prefill decision stored on the cache.
    """

    seed: int
    rate: float

    def __call__(self, layer: MindSkipLayer, batch: int, length: int) -> torch.Tensor:
        if layer.routing != "sequence":
            raise NotImplementedError("random skipping decides per sequence only")
        ids, mask = layer.context.input_ids, layer.context.attention_mask
        if ids is None or ids.dim() != 2 or ids.shape[0] != batch:
            raise RuntimeError("random skipping needs input_ids (B, T) in the model call")
        if mask is None or mask.dim() != 2:
            mask = torch.ones_like(ids)
        if mask.shape != ids.shape:
            raise RuntimeError(
                "random skipping decides at prefill from the whole prompt; this call has "
                f"input_ids {tuple(ids.shape)} but attention_mask {tuple(mask.shape)}"
            )
        rows = [row[m].tolist() for row, m in zip(ids.cpu(), mask.cpu().bool(), strict=True)]
        keep = [sequence_uniform(self.seed, layer.layer_idx, r) >= self.rate for r in rows]
        return torch.tensor(keep, dtype=torch.bool)


def sequence_uniform(seed: int, layer: int, token_ids: Sequence[int]) -> float:
    """A uniform number in [0, 1) from (seed, layer, token ids): blake2b, first 8 bytes."""
    text = f"{seed}|{layer}|" + ",".join(str(int(t)) for t in token_ids)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
