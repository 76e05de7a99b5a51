"""What the routers are trained to do: the LM loss, the distillation loss, capacity penalties.

- ``lm`` (the paper): next-token cross-entropy on the response tokens, summed; the LM head
  runs on the response positions only.
- ``distill``: KL(dense || routed) of the next-token distributions on every real token.
  The teacher is the same model with every router forced on (:func:`teacher_hidden`,
  no grad). Vocabulary-sized logits are made ``chunk`` positions at a time, and each
  chunk is recomputed in the backward pass (activation checkpointing), so memory stays at
  one chunk of logits, forward and backward.
- Capacity penalties: ``global`` (``lambda * relu(c - target)``, c over all routed layers),
  ``per_layer`` (``lambda * sum_l relu(c_l - target)``), ``none``. Without a target, the
  relu is dropped (the paper's ``lambda * c``). The capacities are the straight-through
  gates of the last forward, so the penalty's gradient reaches the routers.
- Dual control (:class:`CapacityMultiplier`, ``capacity_control="dual"``): lambda is a
  signed multiplier of "capacity = target", ``lambda * (c - target)`` with no relu, moved
  after every optimizer step by ``dual_lr`` times that step's capacity error, and
  restarted at its start value when the error changes sign.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..capacity import check_control
from ..config import MindSkipConfig
from ..surgery import forced_decisions, is_mindskip, mindskip_layers
from .examples import IGNORE_INDEX


def decoder_hidden(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Final hidden states (B, T, H) of the decoder stack (no LM head)."""
    return model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state


@torch.no_grad()
def teacher_hidden(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The dense model's final hidden states: every routed unit forced to execute."""
    ctx = forced_decisions(model, "execute") if is_mindskip(model) else contextlib.nullcontext()
    with ctx:
        return decoder_hidden(model, batch).detach()


def response_ce_sum(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over response tokens, and their count."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep], reduction="sum"), int(keep.sum())


def response_ce_by_sequence(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per sequence, the mean next-token CE over its response tokens, summed over the
    sequences (a sequence with none adds 0); the summed CE and the token count as
    :func:`response_ce_sum`."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    ce = F.cross_entropy(logits, targets[keep], reduction="none")
    rows = keep.nonzero()[:, 0]
    per_seq = torch.zeros(labels.shape[0], device=ce.device).index_add(0, rows, ce)
    counts = keep.sum(dim=1).clamp_min(1).to(per_seq.dtype)
    return (per_seq / counts).sum(), ce.sum(), int(keep.sum())


def lm_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """:func:`response_ce_sum` of a forward of ``batch``."""
    return response_ce_sum(model, decoder_hidden(model, batch), batch["labels"])


def _chunk_kl(head: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    log_s = F.log_softmax(head(student).float(), dim=-1)
    log_t = F.log_softmax(head(teacher).float(), dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum")


def kl_sum(
    model: nn.Module,
    student: torch.Tensor,
    teacher: torch.Tensor,
    attention_mask: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, int]:
    """Summed KL(teacher || student) of the next-token distributions over real tokens,
    and their count. ``student``/``teacher`` are final hidden states (B, T, H)."""
    real = attention_mask.bool()
    s, t = student[real], teacher[real]
    head = model.get_output_embeddings()
    total = student.new_zeros((), dtype=torch.float32)
    grad = torch.is_grad_enabled() and s.requires_grad
    for i in range(0, s.shape[0], chunk):
        si, ti = s[i : i + chunk], t[i : i + chunk]
        part = (
            checkpoint(_chunk_kl, head, si, ti, use_reentrant=False)
            if grad
            else _chunk_kl(head, si, ti)
        )
        total = total + part
    return total, int(real.sum())


def layer_capacities(model: nn.Module) -> dict[int, torch.Tensor]:
    """Per routed layer, the weighted mean of the last forward's straight-through gates.

    Differentiable (the gates carry the router gradient). Empty when no layer recorded a
    gate (evaluation, forced decisions, no routers).
    """
    out = {}
    for i, layer in mindskip_layers(model).items():
        gate, weight = layer.last_gate, layer.last_weight
        if gate is not None and weight is not None:
            out[i] = (gate.float() * weight).sum() / weight.sum().clamp_min(1.0)
    return out


def capacity_from_gates(model: nn.Module) -> torch.Tensor | None:
    """Weighted mean of the last forward's gates over all routed layers' decisions, or
    None when no layer recorded a gate."""
    num: torch.Tensor | float = 0.0
    den: torch.Tensor | float = 0.0
    found = False
    for layer in mindskip_layers(model).values():
        gate, weight = layer.last_gate, layer.last_weight
        if gate is None or weight is None:
            continue
        found = True
        num = num + (gate.float() * weight).sum()
        den = den + weight.sum()
    if not found:
        return None
    return num / torch.clamp(torch.as_tensor(den), min=1.0)


def capacity_penalty(
    model: nn.Module, config: MindSkipConfig, penalty: str = "global"
) -> torch.Tensor | None:
    """The penalty of the last forward (see the module docstring), or None when there is
    nothing to penalise (no gates, or ``penalty="none"``, or lambda 0)."""
    lam, target = config.capacity_lambda, config.capacity_target
    if penalty == "none" or lam == 0:
        return None
    if penalty == "global":
        c = capacity_from_gates(model)
        if c is None:
            return None
        return lam * (c if target is None else F.relu(c - target))
    if penalty == "per_layer":
        caps = layer_capacities(model)
        if not caps:
            return None
        terms = [c if target is None else F.relu(c - target) for c in caps.values()]
        return lam * torch.stack(terms).sum()
    raise ValueError(f"penalty must be 'global', 'per_layer' or 'none', got {penalty!r}")


@dataclass
class CapacityMultiplier:
    """Signed multipliers of the constraint "capacity = target": one over all routed
    layers (``key="all"``, penalty ``global``) or one per layer (``per_layer``).

    :meth:`penalty` is ``sum_k lambda_k * (c_k - target)`` on the straight-through gates of
    the last forward (differentiable; no relu, so a negative multiplier pulls capacity up).
    :meth:`update` is one dual ascent step on an optimizer step's realised capacity,
    ``lambda_k += lr * (c_k - target)``, with a reset when the error changes sign: the
    multiplier restarts at ``start`` on the error's new side (``+-start + lr * error``).
    Without the reset, the error integrated while the routers cannot yet move (a margin
    start keeps them dense for a few steps) carries capacity far past the target before
    the multiplier unwinds (measured: block routers at 0.16 for a target of 0.5).
    """

    target: float
    lr: float
    start: float
    per_layer: bool = False
    values: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> float:
        return self.values.setdefault(key, self.start)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        caps = (
            {str(i): c for i, c in layer_capacities(model).items()}
            if self.per_layer
            else {"all": c}
            if (c := capacity_from_gates(model)) is not None
            else {}
        )
        if not caps:
            return None
        return torch.stack([self.value(k) * (c - self.target) for k, c in caps.items()]).sum()

    def update(self, capacity: float, per_layer: dict[int, float]) -> None:
        caps = {str(i): c for i, c in per_layer.items()} if self.per_layer else {"all": capacity}
        for k, c in caps.items():
            if c != c:  # a layer that made no decision this step keeps its multiplier
                continue
            err, v = c - self.target, self.value(k)
            if err * v < 0:  # the target was crossed: restart on the error's side
                v = math.copysign(self.start, err)
            self.values[k] = v + self.lr * err


def capacity_multiplier(
    config: MindSkipConfig, penalty: str, control: str, lr: float
) -> CapacityMultiplier | None:
    """The run's multipliers for ``control="dual"``, else None (a fixed lambda)."""
    if control != "dual":
        return None
    check_control(control, config.capacity_target)  # (without a penalty: TrainConfig refuses)
    return CapacityMultiplier(
        config.capacity_target, lr, config.capacity_lambda, per_layer=penalty == "per_layer"
    )


def objective_sums(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    objective: str,
    teacher: torch.Tensor | None,
    chunk: int,
) -> dict[str, Any]:
    """One forward of ``batch``: the summed response CE (always, for the record), the
    sum over sequences of each one's mean response CE (``lm_seq``, for
    ``loss_reduction="sequence"``) and, for ``distill``, the summed KL to ``teacher``;
    with the counts that normalise them."""
    hidden = decoder_hidden(model, batch)
    if objective == "lm":
        seq, ce, n_resp = response_ce_by_sequence(model, hidden, batch["labels"])
        return {"lm": ce, "lm_seq": seq, "response_tokens": n_resp}
    with torch.no_grad():  # recorded, not trained on
        ce, n_resp = response_ce_sum(model, hidden.detach(), batch["labels"])
    out: dict[str, Any] = {"lm": ce, "response_tokens": n_resp}
    if objective == "distill":
        if teacher is None:
            raise ValueError("the distill objective needs the teacher's hidden states")
        out["kl"], out["real_tokens"] = kl_sum(
            model, hidden, teacher, batch["attention_mask"], chunk
        )
    return out
