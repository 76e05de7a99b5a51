"""Where the routers start (``TrainConfig.init``).

``"zero"`` (the paper): zero weights, every score exactly sigmoid(0) = 0.5 = tau. The model
starts dense, but every decision sits on the threshold, and AdamW's first step (about
``lr`` per weight, whatever the gradient's size) moves every logit of a layer the same
way: on SmolLM2 the capacity went 1.0 -> 0.0 in one step.

``"margin"``: the router keeps the paper's form, ``Linear(hidden, 1, bias=False)``, so a
checkpoint has the same shape and loads anywhere. Its weight starts along the mean
``mu`` of the layer's pooled router inputs on training examples (dense forward),
``w = z * mu / |mu|^2`` with ``z = logit(tau) + margin * lr * |mu|_1``: the mean input
scores ``margin`` Adam steps above tau (one AdamW step moves a weight by at most about
``lr``, so the logit of ``mu`` by at most about ``lr * |mu|_1``), and an input ``x``
scores ``z * (mu . x) / |mu|^2``. The margin is counted in steps, not logits, so that it
means the same for any model width and learning rate. Pooled hidden states share a large
common component (cosine 0.97 to 0.99 with their mean on SmolLM2), so every sequence
starts above tau (dense), and a decision flips only after about ``margin`` steps at the
peak lr that push it the same way.

Those start logits are nearly equal within a layer (their spread is about 7% of the
margin), so once a layer's decisions reach tau they all cross within one step.
``init_spread`` adds a component along the inputs' main direction of variation (their top
principal component, orthogonal to the mean), scaled so that the start logits' standard
deviation across sequences is ``init_spread`` steps: a layer's capacity then falls over
several steps instead of one, and the order in which sequences start to skip is the
inputs' main axis, which training then reshapes. A trainable bias would do the same with one more
parameter per layer, but it changes the paper's router and its file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..stats import reset_routing_stats
from ..surgery import mindskip_layers
from .examples import Example, eval_loader
from .objective import decoder_hidden
from .recipe import TrainConfig
from .step import device_of


def _logit(tau: float) -> float:
    tau = min(max(tau, 1e-12), 1 - 1e-12)
    return math.log(tau / (1 - tau))


@torch.no_grad()
def _router_inputs(
    model: nn.Module, examples: Sequence[Example], tokenizer: Any, batch_size: int
) -> dict[int, torch.Tensor]:
    """Per routed layer, the router inputs of real decisions on ``examples`` (rows (N, H),
    float64): pooled sequences, or real tokens for token routing. The routers must be zero
    (every unit executes: a dense forward)."""
    layers = mindskip_layers(model)
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    rows: dict[int, list[torch.Tensor]] = {i: [] for i in layers}

    def capture(i: int):
        def hook(_m: nn.Module, args: tuple, _out: Any) -> None:
            seen[i].append(args[0].detach())

        return hook

    handles = [layer.router.register_forward_hook(capture(i)) for i, layer in layers.items()]
    try:
        for batch in eval_loader(examples, tokenizer, batch_size, device_of(model)):
            decoder_hidden(model, batch)
            for i, layer in layers.items():
                x = seen[i].pop().double().cpu()
                real = layer.last_weight.bool().cpu()
                rows[i].append(x[real].reshape(-1, x.shape[-1]))
    finally:
        for h in handles:
            h.remove()
        reset_routing_stats(model)
    return {i: torch.cat(parts) for i, parts in rows.items()}


def _spread_direction(inputs: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The inputs' main direction of variation (top principal component, orthogonal to
    ``mu``), scaled so that the projections of the inputs have unit standard deviation.
    Its sign is fixed (largest component positive), so the start is deterministic."""
    centred = inputs - mu
    if centred.shape[0] < 2:
        return torch.zeros_like(mu)
    u = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    u = u - (u @ mu) / max(float(mu @ mu), 1e-12) * mu
    u = u * torch.sign(u[u.abs().argmax()])
    sd = float((centred @ u).std())
    return u / sd if sd > 0 else torch.zeros_like(mu)


def _spread(logits: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(logits, torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=logits.dtype)).tolist()
    return {"min": q[0], "p10": q[1], "median": q[2], "max": q[3]}


def init_routers(
    model: nn.Module,
    examples: Sequence[Example],
    tokenizer: Any,
    cfg: TrainConfig,
    *,
    batch_size: int,
) -> dict[str, Any]:
    """Set the routers' start (see the module docstring) and return a record of it: the
    kind, the margin (``cfg.init_margin`` steps at ``cfg.lr``, and per layer in logits),
    and per layer the start logits' spread on the first ``cfg.init_samples`` examples. The
    model is left in the train/eval mode it had."""
    init, margin, lr = cfg.init, cfg.init_margin, cfg.lr
    was_training = model.training
    model.eval()
    layers = mindskip_layers(model)
    with torch.no_grad():
        for layer in layers.values():
            layer.router.proj.weight.zero_()
    record: dict[str, Any] = {"init": init}
    if init == "margin":
        record.update(margin_steps=margin, spread_steps=cfg.init_spread)
    subset = list(examples[: cfg.init_samples])
    if init == "margin" and subset:
        inputs = _router_inputs(model, subset, tokenizer, batch_size)
        logits, spread = {}, {}
        with torch.no_grad():
            for i, layer in layers.items():
                mu = inputs[i].mean(0)
                step = lr * float(mu.abs().sum())  # about one AdamW step of the mean's logit
                logits[str(i)] = margin * step
                z = _logit(layer.threshold) + logits[str(i)]
                w = mu * z / max(float(mu.dot(mu)), 1e-12)
                if cfg.init_spread:
                    w = w + cfg.init_spread * step * _spread_direction(inputs[i], mu)
                layer.router.proj.weight.copy_(w.to(layer.router.proj.weight).view(1, -1))
                spread[str(i)] = _spread(inputs[i] @ w - _logit(layer.threshold))
        record.update(samples=len(subset), margin_logits=logits, logit_above_tau=spread)
    elif init != "zero" and init != "margin":
        raise ValueError(f"init must be 'zero' or 'margin', got {init!r}")
    model.train(was_training)
    return record
