"""The router, the straight-through gate, and masked pooling.

Numerics: pooling and the router run in float32 with autocast switched off by default,
whatever the model's dtype or an enclosing ``torch.autocast``. A sequence therefore gets
the same score (bit for bit, for the same hidden states) in training, validation,
calibration and evaluation, and a score near tau is never flipped by bf16 rounding of the
router itself. ``compute_dtype=torch.bfloat16`` reproduces the authors' bf16 runs (their
pooling, logit and sigmoid in bf16: a score within about 0.002 of 0.5 rounds to 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def _no_autocast(device: torch.device):
    """Switch autocast off on ``device`` (CPU, CUDA, ...) for the enclosed block."""
    return torch.autocast(device_type=device.type, enabled=False)


class Router(nn.Module):
    """``Linear(hidden, 1, bias=False)``, zero-initialised so that sigmoid(0) = 0.5 >= tau.

    The tuned model therefore starts as the dense model (training may move the start away
    from tau before the first step: :func:`mindskip.train.init_routers`). The router keeps
    float32 weights and computes in float32 with autocast off, whatever the model's dtype.
    """

    def __init__(
        self,
        hidden_size: int,
        device: torch.device | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1, bias=False, device=device, dtype=torch.float32)
        nn.init.zeros_(self.proj.weight)
        self.compute_dtype = compute_dtype

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores (in ``compute_dtype``), the hidden dimension reduced away."""
        w = self.proj.weight.to(self.compute_dtype)
        with _no_autocast(x.device):
            return nn.functional.linear(x.to(self.compute_dtype), w).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores in (0, 1), float32 (rounded to ``compute_dtype`` first), the hidden
        dimension reduced away."""
        with _no_autocast(x.device):
            return torch.sigmoid(self.logits(x)).float()


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Mean of ``x`` (B, T, H) over real tokens, in float32; ``mask`` (B, T) is 1 for real
    tokens.

    Padding never enters the mean, so a sequence pools to the same vector at any batch
    size or padding side. A row with no real token pools to zeros. The sum runs in
    ``dtype`` (float32 by default; autocast off) for every input dtype, and the result
    is in ``dtype``.
    """
    with _no_autocast(x.device):
        x = x.to(dtype)
        if mask is None:
            return x.mean(dim=1)
        m = mask.to(dtype).unsqueeze(-1)
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
