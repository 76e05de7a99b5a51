"""The router, the straight-through gate, and masked pooling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class Router(nn.Module):
    """``Linear(hidden, 1, bias=False)``, zero-initialised so that sigmoid(0) = 0.5 >= tau.

    The tuned model therefore starts as the dense model. The router keeps float32
    weights and reads its input in float32, whatever the model's dtype.
    """

    def __init__(self, hidden_size: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1, bias=False, device=device, dtype=torch.float32)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores in (0, 1), with the last (hidden) dimension reduced away."""
        w = self.proj.weight
        return torch.sigmoid(nn.functional.linear(x.to(w.dtype), w)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` (B, T, H) over real tokens; ``mask`` (B, T) is 1 for real tokens.

    Padding never enters the mean, so a sequence pools to the same vector at any batch
    size or padding side. A row with no real token pools to zeros.
    """
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def straight_through_gate(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """``1[s >= tau]`` forward, identity gradient backward (d g / d s = 1).

    ``scores - scores.detach()`` is exactly zero, so the forward value is exactly 0 or 1.
    """
    hard = (scores >= tau).to(scores.dtype)
    return hard + (scores - scores.detach())


@dataclass
class RoutingContext:
    """What the decoder stack was called with, shared by every routed layer of a model.

    A forward pre-hook on the decoder stack fills it, so the layers can pool over real
    tokens (the 2-D attention mask) even though they only receive the 4-D causal mask.
    """

    attention_mask: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None

    def token_mask(self, batch: int, length: int, device: torch.device) -> torch.Tensor | None:
        """The (B, T) real-token mask for the current chunk of ``length`` tokens, or None."""
        m = self.attention_mask
        if m is None or m.dim() != 2 or m.shape[0] != batch or m.shape[1] < length:
            return None
        return m[:, -length:].to(device=device, dtype=torch.bool)
