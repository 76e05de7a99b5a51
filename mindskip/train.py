"""Router-Tuning: train the routers alone (every base weight frozen), with capacity control.

One call::

    metrics = train_routers(model, tokenizer, records, MindSkipConfig(...), TrainConfig(), out)

- Records are Alpaca dicts (``instruction``, ``input``, ``output``); see
  :mod:`mindskip.data.instructions` for loaders. They are formatted with the tokenizer's
  chat template when it has one, else a plain ``### Instruction`` template, and the loss
  is taken on the response tokens only.
- Loss = LM loss + capacity term. Capacity is the weighted mean of the straight-through
  gates over every routed layer's decisions in a micro-batch. With
  ``capacity_target=None`` the term is the paper's ``lambda * capacity``; with a target it
  is ``lambda * relu(capacity - target)`` (``MindSkipConfig.capacity_lambda/_target``).
- No backward runs below the lowest routed layer: nothing there requires grad, and a
  pre-hook on that layer detaches its input and records whether autograd was tracking.
- ``out_dir`` receives the routers (:func:`mindskip.save_routers`) and ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import random
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .config import MindSkipConfig
from .provenance import versions
from .surgery import (
    apply_mindskip,
    forced_decisions,
    get_config,
    is_mindskip,
    mindskip_layers,
    reset_routing_stats,
    router_parameters,
    routers_hash,
    routing_stats,
    save_routers,
)

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
METRICS_FILE = "metrics.json"
LORA_FILE = "lora.safetensors"
SCHEDULES = ("cosine", "linear", "constant")
# The paper's learning rate. Our default is larger: see TrainConfig.lr.
PAPER_LR = 1e-5

Example = dict[str, Any]


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults follow the paper except ``lr`` (see below).

    Attributes:
        lr: peak learning rate. The paper uses 1e-5 (:data:`PAPER_LR`); our default is 1e-3.
            With AdamW, zero-initialised routers and tau = 0.5 a decision is the sign of
            ``w . x``, and Adam's steps scale with ``lr``, so the decisions hardly depend on
            the learning rate until the sigmoid saturates: on SmolLM2-135M 1e-5, 1e-3 and
            1e-2 gave the same validation capacity and perplexity (issue-4 report). What
            ``lr`` does set is the score scale: at 1e-5 the scores stay within ~1e-4 (logit)
            of tau, so a threshold other than 0.5 could not be crossed in a short run; 1e-3
            gives 100x the margin.
        schedule: ``"cosine"`` (paper), ``"linear"`` or ``"constant"``, after warmup.
        warmup_ratio: fraction of optimizer steps of linear warmup (paper: 0.03).
        weight_decay: AdamW weight decay (paper: 0).
        epochs: passes over the training records (paper: 1).
        global_batch: sequences per optimizer step (paper: 64), by gradient accumulation.
        micro_batch: sequences per forward/backward pass.
        max_length: tokens per sequence; longer ones are truncated from the right
            (paper: 2048). A record whose response is cut away entirely is dropped.
        max_samples: use at most this many training records (after the validation split).
        val_fraction: share of records held out for validation (when ``val_records`` is
            not given); ``val_count`` overrides it with a number.
        seed: seeds the split, the data order and torch.
        target_tolerance: a capacity target counts as reached when the validation capacity
            is within this distance of it.
        max_grad_norm: gradient clipping on the trainable parameters (None: off; 1.0 is
            the Hugging Face Trainer default that the paper's recipe ran with).
        bf16: bf16 autocast where the device supports it (CUDA). CPU runs in the model's
            dtype.
        eval_batch: batch size for validation (default: ``micro_batch``).
        log_every: record per-layer capacity every this many optimizer steps.
        lora_r: when > 0, LoRA adapters (peft) of this rank are trained with the routers.
        lora_alpha, lora_dropout, lora_targets: the LoRA adapter settings.
        progress: show a tqdm progress bar.
    """

    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    epochs: int = 1
    global_batch: int = 64
    micro_batch: int = 8
    max_length: int = 2048
    max_samples: int | None = None
    val_fraction: float = 0.05
    val_count: int | None = None
    seed: int = 0
    target_tolerance: float = 0.05
    max_grad_norm: float | None = 1.0
    bf16: bool = True
    eval_batch: int | None = None
    log_every: int = 1
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"TrainConfig.{name} {why}, got {getattr(self, name)!r}")

        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", "must be > 0")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"must be one of {SCHEDULES}")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "must be in [0, 1)")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        for name in ("epochs", "global_batch", "micro_batch", "max_length", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a positive integer")
        if self.global_batch % self.micro_batch:
            bad("global_batch", f"must be a multiple of micro_batch={self.micro_batch}")
        if self.max_samples is not None and self.max_samples < 1:
            bad("max_samples", "must be >= 1 or None")
        if not 0 <= self.val_fraction < 1:
            bad("val_fraction", "must be in [0, 1)")
        if self.val_count is not None and self.val_count < 0:
            bad("val_count", "must be >= 0 or None")
        if not 0 <= self.target_tolerance <= 1:
            bad("target_tolerance", "must be in [0, 1]")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            bad("max_grad_norm", "must be > 0 or None")
        if self.lora_r < 0:
            bad("lora_r", "must be >= 0")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        return cls(**d)


# --------------------------------------------------------------------------- data


def format_record(tokenizer: Any, record: dict[str, Any]) -> tuple[str, str]:
    """``(prompt, response)`` texts of one record; the loss is on ``response`` only.

    With a chat template: user = instruction + "\\n\\n" + input (input only when non-empty),
    assistant = output; the response is the template's text after the generation prompt
    (the output and the template's end-of-turn). Without one: a plain
    ``### Instruction / ### Input / ### Response`` prompt and output + EOS.
    """
    instruction, inp, output = record["instruction"], record.get("input") or "", record["output"]
    user = "\n\n".join(p for p in (instruction, inp) if p)
    if getattr(tokenizer, "chat_template", None):
        turns = [{"role": "user", "content": user}]
        prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*turns, {"role": "assistant", "content": output}], tokenize=False
        )
        if not full.startswith(prompt):  # templates that rewrite the generation prompt
            cut = full.rfind(output)
            if cut < 0:
                raise ValueError("the chat template does not reproduce the output text")
            prompt = full[:cut]
        return prompt, full[len(prompt) :]
    prompt = f"### Instruction:\n{instruction}\n\n"
    if inp:
        prompt += f"### Input:\n{inp}\n\n"
    return prompt + "### Response:\n", output + (tokenizer.eos_token or "")


def encode_record(tokenizer: Any, record: dict[str, Any], max_length: int) -> Example | None:
    """Token ids and labels (``-100`` outside the response), truncated to ``max_length``.

    Prompt and response are tokenized separately, so the label boundary is exact. None when
    truncation leaves no response token.
    """
    prompt, response = format_record(tokenizer, record)
    chat = bool(getattr(tokenizer, "chat_template", None))
    p = tokenizer(prompt, add_special_tokens=not chat)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = (p + r)[:max_length]
    labels = ([IGNORE_INDEX] * len(p) + r)[:max_length]
    if all(t == IGNORE_INDEX for t in labels[1:]):
        return None
    return {"input_ids": ids, "labels": labels, "truncated": len(p) + len(r) > max_length}


def split_records(
    records: Sequence[dict[str, Any]],
    val_fraction: float,
    val_count: int | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Seeded ``(train, validation)`` split; ``val_count`` overrides ``val_fraction``."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = val_count if val_count is not None else round(val_fraction * len(records))
    n_val = min(n_val, len(records) - 1)
    return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]


def records_sha256(records: Sequence[dict[str, Any]]) -> str:
    """sha256 of the records as canonical JSON lines of instruction/input/output."""
    h = hashlib.sha256()
    for r in records:
        row = {k: r.get(k) or "" for k in ("instruction", "input", "output")}
        h.update((json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return h.hexdigest()


def collate(examples: Sequence[Example], pad_id: int, device: torch.device) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def _pad_id(tokenizer: Any) -> int:
    for tok_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tok_id is not None:
            return int(tok_id)
    return 0


def _response_tokens(e: Example) -> int:
    return sum(t != IGNORE_INDEX for t in e["labels"][1:])


# --------------------------------------------------------------------------- loss


def lm_loss_sum(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over response tokens, and their count.

    The LM head runs on the response positions only (the prompt's logits are never used).
    """
    hidden = model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep], reduction="sum"), int(keep.sum())


def capacity_from_gates(model: nn.Module) -> torch.Tensor | None:
    """Weighted mean of the last forward's straight-through gates over all routed layers.

    Differentiable (the gates carry the router gradient). None when no layer recorded a
    gate (evaluation, forced decisions).
    """
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


def capacity_penalty(capacity: torch.Tensor, config: MindSkipConfig) -> torch.Tensor:
    """``lambda * capacity`` (paper) or ``lambda * relu(capacity - target)``."""
    if config.capacity_target is None:
        return config.capacity_lambda * capacity
    return config.capacity_lambda * F.relu(capacity - config.capacity_target)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    examples: Sequence[Example],
    pad_id: int,
    batch_size: int,
    decisions: str | None = None,
) -> dict[str, Any]:
    """Response-token perplexity and realised capacity on ``examples`` (model in eval mode).

    ``decisions="execute"`` forces every routed unit to run (the dense model); None lets the
    routers decide, with real skipping.
    """
    was_training = model.training
    model.eval()
    device = _device(model)
    nll, tokens = 0.0, 0
    reset_routing_stats(model)
    ctx = forced_decisions(model, decisions) if decisions else contextlib.nullcontext()
    margins: list[torch.Tensor] = []
    with ctx, _autocast(device, True):
        for batch in _chunks(_by_length(examples), batch_size):
            loss, n = lm_loss_sum(model, collate(batch, pad_id, device))
            nll, tokens = nll + float(loss), tokens + n
            margins += _logit_margins(model)
    stats = routing_stats(model).to_dict()
    reset_routing_stats(model)
    model.train(was_training)
    mean = nll / max(tokens, 1)
    return {
        "ppl": math.exp(mean),
        "nll_per_token": mean,
        "tokens": tokens,
        "sequences": len(examples),
        "capacity": stats["capacity"],
        "skip_ratio": stats["skip_ratio"],
        "capacity_per_layer": stats["capacity_per_layer"],
        "logit_margin": _summary(torch.cat(margins)) if margins else None,
    }


def _logit_margins(model: nn.Module) -> list[torch.Tensor]:
    """|router logit - logit(tau)| of the last forward's real decisions, every routed layer:
    how far decisions are from flipping (small margins flip under dtype or batch noise)."""
    out = []
    for layer in mindskip_layers(model).values():
        s, w = layer.last_scores, layer.last_weight
        if s is None or w is None:
            continue
        s = s.double().clamp(1e-12, 1 - 1e-12)
        tau = min(max(layer.threshold, 1e-12), 1 - 1e-12)
        logit = torch.log(s) - torch.log1p(-s) - math.log(tau / (1 - tau))
        out.append(logit.abs()[w.bool()].float().cpu())
    return out


def _summary(x: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(x, torch.tensor([0.1, 0.5])).tolist()
    return {"p10": q[0], "median": q[1], "below_1e-3": float((x < 1e-3).float().mean())}


# --------------------------------------------------------------------------- helpers


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _by_length(examples: Sequence[Example]) -> list[Example]:
    """Sorted by length (less padding); the order within a sum does not change a gradient."""
    return sorted(examples, key=lambda e: len(e["input_ids"]))


def _lr_lambda(schedule: str, warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return f


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory: CUDA allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return {
            "bytes": int(torch.cuda.max_memory_allocated(device)),
            "method": "cuda_max_allocated",
        }
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"bytes": int(kib) * 1024, "method": "ru_maxrss (process peak RSS)"}


def _add_lora(model: nn.Module, cfg: TrainConfig) -> list[nn.Parameter]:
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
    )
    inject_adapter_in_model(lora, model)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    if not params:
        raise ValueError(f"no LoRA module matched lora_targets={cfg.lora_targets}")
    return params


def _save_lora(model: nn.Module, out_dir: Path) -> None:
    from safetensors.torch import save_file

    tensors = {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if "lora_" in n
    }
    save_file(tensors, str(out_dir / LORA_FILE))


def _watch_lowest_layer(model: nn.Module, detach: bool, seen: dict[str, bool]):
    """Pre-hook on the lowest routed layer: record whether its input is tracked by autograd
    (anything below it needing a backward) and, if ``detach``, cut the graph there."""
    lowest = mindskip_layers(model)[min(mindskip_layers(model))]

    def hook(_module: nn.Module, args: tuple, kwargs: dict):
        h = args[0]
        seen["tracked"] = seen["tracked"] or bool(h.requires_grad)
        if detach and h.requires_grad:
            return (h.detach(), *args[1:]), kwargs
        return None

    return lowest.register_forward_pre_hook(hook, with_kwargs=True)


# --------------------------------------------------------------------------- training


def train_routers(
    model: nn.Module,
    tokenizer: Any,
    train_records: Sequence[dict[str, Any]],
    mindskip_config: MindSkipConfig,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    val_records: Sequence[dict[str, Any]] | None = None,
    data_source: str = "records passed in memory",
) -> dict[str, Any]:
    """Router-Tuning: train only the routers of ``model`` and return the metrics.

    Applies MindSkip with ``mindskip_config`` when the model has no routers (a model that
    has them must carry the same config). Freezes every other parameter (except LoRA
    adapters when ``train_config.lora_r > 0``). Validation records are ``val_records`` or a
    seeded split of ``train_records``. When ``out_dir`` is given, writes the routers
    (``routers.safetensors`` + config), ``lora.safetensors`` with LoRA, and
    ``metrics.json``. The model is left in eval mode with the trained routers.
    """
    cfg = train_config or TrainConfig()
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if is_mindskip(model):
        if get_config(model) != mindskip_config:
            raise ValueError(
                f"the model already has routers with {get_config(model)}, "
                f"not {mindskip_config}; remove_mindskip first or pass the same config"
            )
    else:
        apply_mindskip(model, mindskip_config)
    device = _device(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # ---- parameters: everything frozen but the routers (and LoRA)
    for p in model.parameters():
        p.requires_grad_(False)
    lora_params = _add_lora(model, cfg) if cfg.lora_r else []
    routers = router_parameters(model)
    for p in [*routers, *lora_params]:
        p.requires_grad_(True)
    trainable = [*routers, *lora_params]

    # ---- data
    if val_records is None:
        train_recs, val_recs = split_records(
            train_records, cfg.val_fraction, cfg.val_count, cfg.seed
        )
    else:
        train_recs, val_recs = list(train_records), list(val_records)
        if cfg.val_count is not None:
            val_recs = val_recs[: cfg.val_count]
    if cfg.max_samples is not None:
        train_recs = train_recs[: cfg.max_samples]
    encoded = [encode_record(tokenizer, r, cfg.max_length) for r in train_recs]
    train_ex = [e for e in encoded if e is not None]
    val_ex = [e for e in (encode_record(tokenizer, r, cfg.max_length) for r in val_recs) if e]
    if not train_ex:
        raise ValueError("no training example keeps a response token within max_length")
    pad_id = _pad_id(tokenizer)

    # ---- optimisation
    steps_per_epoch = math.ceil(len(train_ex) / cfg.global_batch)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg.schedule, warmup, total_steps)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    seen = {"tracked": False}
    hook = _watch_lowest_layer(model, detach=not lora_params, seen=seen)
    progress = _progress(total_steps, cfg.progress)
    curve: list[dict[str, Any]] = []
    tokens_seen = response_seen = 0
    model.train()
    t_train = time.perf_counter()
    try:
        for _epoch in range(cfg.epochs):
            order = torch.randperm(len(train_ex), generator=gen).tolist()
            for group in _chunks(order, cfg.global_batch):
                step_ex = _by_length([train_ex[i] for i in group])
                n_resp = sum(_response_tokens(e) for e in step_ex)
                reset_routing_stats(model)
                lm_total, pen_total = 0.0, 0.0
                for micro in _chunks(step_ex, cfg.micro_batch):
                    batch = collate(micro, pad_id, device)
                    with _autocast(device, cfg.bf16):
                        loss_sum, _ = lm_loss_sum(model, batch)
                    capacity = capacity_from_gates(model)
                    share = len(micro) / len(step_ex)
                    penalty = (
                        capacity_penalty(capacity, mindskip_config) * share
                        if capacity is not None
                        else torch.zeros((), device=device)
                    )
                    (loss_sum / n_resp + penalty).backward()
                    lm_total += float(loss_sum.detach()) / n_resp
                    pen_total += float(penalty.detach())
                    tokens_seen += int(batch["attention_mask"].sum())
                response_seen += n_resp
                grad_norm = _grad_norm(trainable)
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                stats = routing_stats(model)
                step = len(curve) + 1
                entry = {
                    "step": step,
                    "lr": lr,
                    "loss": lm_total + pen_total,
                    "lm_loss": lm_total,
                    "capacity_loss": pen_total,
                    "capacity": stats.capacity,
                    "grad_norm": grad_norm,
                    "sequences": len(step_ex),
                }
                if step % cfg.log_every == 0 or step == total_steps:
                    entry["capacity_per_layer"] = {str(i): c for i, c in stats.total.items()}
                curve.append(entry)
                progress.update(1)
                progress.set_postfix(loss=f"{lm_total:.3f}", cap=f"{stats.capacity:.3f}")
                if not cfg.progress:
                    log.info(
                        "step %d/%d: lm loss %.4f, capacity %.3f, lr %.3g",
                        step,
                        total_steps,
                        lm_total,
                        stats.capacity,
                        lr,
                    )
    finally:
        hook.remove()
        progress.close()
        reset_routing_stats(model)
    train_time = time.perf_counter() - t_train

    # ---- validation: dense (every routed unit executes) and routed
    eval_batch = cfg.eval_batch or cfg.micro_batch
    val: dict[str, Any] = {"sequences": len(val_ex)}
    if val_ex:
        dense = evaluate(model, val_ex, pad_id, eval_batch, decisions="execute")
        routed = evaluate(model, val_ex, pad_id, eval_batch)
        val.update(
            ppl_dense=dense["ppl"],
            ppl_routed=routed["ppl"],
            nll_dense=dense["nll_per_token"],
            nll_routed=routed["nll_per_token"],
            tokens=routed["tokens"],
            capacity=routed["capacity"],
            skip_ratio=routed["skip_ratio"],
            capacity_per_layer=routed["capacity_per_layer"],
            logit_margin=routed["logit_margin"],
        )
    model.eval()

    target = mindskip_config.capacity_target
    target_reached = None
    if target is not None:
        cap = val.get("capacity", curve[-1]["capacity"] if curve else float("nan"))
        target_reached = bool(abs(cap - target) <= cfg.target_tolerance)
        if not target_reached:
            hint = (
                "raise capacity_lambda or train longer"
                if cap > target
                else "the LM loss did not pull capacity back up: lower capacity_lambda or lr, "
                "or train longer"
            )
            log.warning(
                "!!! CAPACITY TARGET NOT REACHED: realised capacity %.3f on %s, target %.3f "
                "+- %.3f (%s) !!!",
                cap,
                "validation" if val_ex else "the last training step",
                target,
                cfg.target_tolerance,
                hint,
            )

    metrics: dict[str, Any] = {
        "loss_curve": [e["loss"] for e in curve],
        "log": curve,
        "final_capacity": curve[-1]["capacity"] if curve else None,
        "final_capacity_per_layer": (curve[-1].get("capacity_per_layer") if curve else None),
        "val": val,
        "capacity_target": target,
        "capacity_lambda": mindskip_config.capacity_lambda,
        "target_tolerance": cfg.target_tolerance,
        "target_reached": target_reached,
        "optimizer_steps": len(curve),
        "warmup_steps": warmup,
        "tokens_seen": tokens_seen,
        "response_tokens_seen": response_seen,
        "autograd_below_lowest_routed": seen["tracked"],
        "lowest_routed_layer": min(mindskip_layers(model)),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "router_parameters": sum(p.numel() for p in routers),
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - t_start,
        "peak_memory": peak_memory(device),
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "autocast_bf16": isinstance(_autocast(device, cfg.bf16), torch.autocast),
        "torch_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "train_config": cfg.to_dict(),
        "mindskip_config": mindskip_config.to_dict(),
        "versions": versions(("peft",) if lora_params else ()),
        "data": {
            "source": data_source,
            "sha256": records_sha256(train_records),
            "records": len(train_records),
            "train_records": len(train_recs),
            "train_examples": len(train_ex),
            "val_records": len(val_recs),
            "val_examples": len(val_ex),
            "val_sha256": records_sha256(val_recs),
            "dropped_no_response": len(train_recs) - len(train_ex) + len(val_recs) - len(val_ex),
            "truncated": sum(e["truncated"] for e in train_ex),
            "format": "chat_template" if getattr(tokenizer, "chat_template", None) else "plain",
        },
    }
    if out_dir is not None:
        out = save_routers(model, out_dir)
        metrics["routers_sha256"] = routers_hash(out)
        if lora_params:
            _save_lora(model, out)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    log.info(
        "router tuning: %d steps in %.0f s, val capacity %s, ppl routed %s vs dense %s",
        len(curve),
        train_time,
        _fmt(val.get("capacity")),
        _fmt(val.get("ppl_routed")),
        _fmt(val.get("ppl_dense")),
    )
    return metrics


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _grad_norm(params: Sequence[nn.Parameter]) -> float:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="router tuning", unit="step", disable=not enabled)


# --------------------------------------------------------------------------- cost


def _rss_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak(device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:  # Linux: "5" resets the peak RSS (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM after reset (peak RSS)"
    except OSError:
        return "ru_maxrss (process peak RSS, not reset)"


def benchmark_training_cost(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    mindskip_config: MindSkipConfig,
    *,
    modes: Sequence[str] = ("routers", "full"),
    micro_batch: int = 8,
    max_length: int = 256,
    steps: int = 3,
    warmup_steps: int = 1,
    lr: float = 1e-5,
) -> dict[str, Any]:
    """Step time and peak memory of router-only training vs full fine-tuning, same batch.

    One optimizer step = forward + backward + AdamW step on one micro-batch of the first
    ``micro_batch`` usable records. ``"routers"`` trains the routers only (the recipe of
    :func:`train_routers`, graph cut below the lowest routed layer); ``"full"`` trains every
    parameter of the same routed model. Memory: CUDA allocator peak, or on CPU the peak RSS
    (reset per mode through ``/proc/self/clear_refs``) and the RSS the mode started from;
    on CPU run one mode per process for a clean number (the allocator keeps freed memory).
    """
    if not is_mindskip(model):
        apply_mindskip(model, mindskip_config)
    device = _device(model)
    examples = [e for e in (encode_record(tokenizer, r, max_length) for r in records) if e]
    batch = collate(examples[:micro_batch], _pad_id(tokenizer), device)
    n_tokens = int(batch["attention_mask"].sum())
    result: dict[str, Any] = {
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "torch_threads": torch.get_num_threads(),
        "micro_batch": len(examples[:micro_batch]),
        "max_length": max_length,
        "batch_shape": list(batch["input_ids"].shape),
        "tokens_per_step": n_tokens,
        "steps_timed": steps,
        "mindskip_config": mindskip_config.to_dict(),
        "versions": versions(),
    }
    model.train()
    for mode in modes:
        if mode not in ("routers", "full"):
            raise ValueError(f"mode must be 'routers' or 'full', got {mode!r}")
        for p in model.parameters():
            p.requires_grad_(mode == "full")
        trainable = router_parameters(model) if mode == "routers" else list(model.parameters())
        for p in trainable:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainable, lr=lr)
        seen = {"tracked": False}
        hook = _watch_lowest_layer(model, detach=mode == "routers", seen=seen)
        start_rss = _rss_bytes("VmRSS")
        method = _reset_peak(device)
        times = []
        try:
            for i in range(warmup_steps + steps):
                t0 = time.perf_counter()
                with _autocast(device, True):
                    loss, n = lm_loss_sum(model, batch)
                (
                    loss / n + capacity_penalty(capacity_from_gates(model), mindskip_config)
                ).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= warmup_steps:
                    times.append(time.perf_counter() - t0)
        finally:
            hook.remove()
        if device.type == "cuda":
            peak, start = int(torch.cuda.max_memory_allocated(device)), None
        else:
            peak, start = _rss_bytes("VmHWM") or peak_memory(device)["bytes"], start_rss
        result[mode] = {
            "step_s": times,
            "step_s_mean": sum(times) / len(times),
            "tokens_per_s": n_tokens / (sum(times) / len(times)),
            "peak_bytes": peak,
            "start_bytes": start,
            "memory_method": method,
            "trainable_parameters": sum(p.numel() for p in trainable),
            "autograd_below_lowest_routed": seen["tracked"],
        }
        del optimizer
        reset_routing_stats(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    if "routers" in result and "full" in result:
        result["full_over_routers_step_time"] = (
            result["full"]["step_s_mean"] / result["routers"]["step_s_mean"]
        )
    return result
