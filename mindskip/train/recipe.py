"""TrainConfig: the Router-Tuning recipe (a frozen, validated dataclass).

The routing itself (unit, layers, tau, lambda, target, gradient semantics for skipped rows)
lives in :class:`mindskip.MindSkipConfig`; this is everything about *how* the routers are
trained: optimiser and schedule, batching, objective, penalty form, the routers' start,
and LoRA. Defaults follow the paper where it says something (cosine, wd 0, 1 epoch, batch
64, length 2048, bf16 on a GPU) and our measurements where it does not
(``benchmarks/router_tuning_smollm2.md``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("cosine", "linear", "constant")
OBJECTIVES = ("lm", "distill")
PENALTIES = ("global", "per_layer", "none")
INITS = ("zero", "margin")
LOSS_REDUCTIONS = ("tokens", "sequence")
TEMPLATES = ("chat", "authors")
CONTROLS = ("fixed", "dual")
# The paper's learning rate. Our default is larger: see TrainConfig.lr.
PAPER_LR = 1e-5


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe.

    Attributes:
        lr: peak learning rate (paper: 1e-5, :data:`PAPER_LR`). AdamW moves every router
            weight by about ``lr`` per step whatever the gradient's size, so ``lr`` sets how
            far a logit moves per step (about ``lr * |x|_1``, 0.1 to 1 logit at 1e-3 on
            SmolLM2); at 1e-5 the scores never leave the neighbourhood of tau in a short run.
        schedule: ``"cosine"`` (paper), ``"linear"`` or ``"constant"`` after the warm-up
            (``transformers.get_scheduler``; the lr of warm-up step k is ``k / warmup``,
            so the first step of a warm-up has lr 0, as in the HF Trainer the paper used).
        warmup_ratio: fraction of optimizer steps of linear lr warm-up (paper: 0.03).
        weight_decay: AdamW weight decay (paper: 0).
        adam_beta1: AdamW's first-moment decay (0.9 in the HF Trainer the paper used; our
            default 0, i.e. RMSprop-like steps). Momentum keeps a router moving for several
            steps after the penalty stops pushing (capacity below target): on SmolLM2 with
            the same start, 0.5 dipped to capacity 0.36 and 0 to 0.42 for target 0.5.
        epochs: passes over the training records (paper: 1).
        global_batch: sequences per optimizer step (paper: 64), by gradient accumulation.
        micro_batch: sequences per forward/backward pass.
        max_length: tokens per sequence, truncated from the right (paper: 2048). A record
            whose response is cut away entirely is dropped.
        seed: seeds the data order, the LoRA init and torch.
        objective: ``"lm"`` (paper: next-token loss on response tokens) or ``"distill"``
            (KL from the dense model, the same model with every router forced on, to the
            routed one, on every real token; no labels needed).
        distill_chunk: token positions per chunk of vocabulary-sized logits (``distill``
            and the validation KL): bounds their memory in forward and backward.
        penalty: the capacity penalty's form. ``"global"``: ``lambda * relu(c - target)``
            with c the capacity over all routed layers (``lambda * c`` without a target);
            ``"per_layer"``: ``lambda * sum_l relu(c_l - target)``, computed per
            micro-batch (the authors' later release has this form, applied per sample: it
            is that release only at ``micro_batch=1``, as preset ``authors-v2`` runs it;
            note the sum: lambda weighs each layer as much as ``global`` weighs all of
            them); ``"none"``: no penalty (calibrate a threshold afterwards).
        penalty_warmup_ratio: fraction of optimizer steps over which lambda ramps linearly
            from 0 to its value (0: the full lambda from the first step).
        init: the routers' start (:mod:`mindskip.train.start`). ``"zero"`` (paper): zero
            weights, every score exactly on tau = 0.5, so Adam's first step flips nearly
            every decision at once. ``"margin"``: the router stays
            ``Linear(hidden, 1, bias=False)``, but its weight starts along the mean of the
            layer's pooled router inputs on training examples, scaled so that the mean
            input scores ``init_margin`` Adam steps at the peak lr above tau: the model
            starts dense, and a decision flips only after several steps push it one way.
        init_margin: the start's distance above tau, in AdamW steps at the peak lr
            (a step moves the mean input's logit by at most about ``lr * |mu|_1``).
        init_spread: with ``init="margin"``, the standard deviation of the start logits
            across sequences, in the same steps, along the inputs' main direction of
            variation (0: the mean direction only, where a layer's decisions all reach tau
            within about one step).
        init_samples: training examples whose pooled inputs give that mean.
        target_tolerance: a capacity target counts as reached when the validation capacity
            is within this distance of it.
        max_grad_norm: gradient clipping on the trainable parameters (None: off; 1.0 is
            the HF Trainer default the paper's recipe ran with).
        bf16: bf16 autocast where the device supports it (CUDA). The routers and their
            pooling run in float32 either way; the CPU runs in the model's dtype.
        eval_batch: batch size for validation (default: ``micro_batch``).
        log_every: record per-layer capacity every this many optimizer steps.
        lora_r: when > 0, LoRA adapters (peft) of this rank train *jointly* with the
            routers. The paper's LoRA setting is a LoRA-only fine-tune first
            (:func:`mindskip.train.train_lora`), then routers on it
            (``train_routers(..., lora_dir=...)``).
        lora_alpha, lora_dropout, lora_targets: the LoRA adapter settings.
        progress: show a tqdm progress bar.
        loss_reduction: how the LM loss of a step is averaged. ``"tokens"``: the summed
            response-token CE over the step's response tokens (every token weighs the
            same); ``"sequence"``: each sequence's mean over its response tokens, then
            the mean over the step's sequences (the HF model loss at micro-batch 1 with
            gradient accumulation: the authors' releases).
        capacity_control: how lambda behaves. ``"fixed"``: the penalty above with lambda
            as set (it only pushes capacity down, and only while it is above the target);
            ``"dual"``: lambda is a signed multiplier of the constraint "capacity =
            target" (:class:`mindskip.train.objective.CapacityMultiplier`): the penalty is
            ``lambda * (c - target)`` (per layer with ``penalty="per_layer"``), lambda
            starts at ``capacity_lambda`` and after every optimizer step moves by
            ``dual_lr * (c - target)`` of that step's realised capacity, so it grows while
            the routers execute too much; when the capacity crosses the target it
            restarts at ``-capacity_lambda`` (or back at ``+capacity_lambda``), so it pulls
            capacity back from either side without the windup of a plain integrator.
            Needs a capacity target.
        dual_lr: the multiplier's step size per unit of capacity error.
        template: how a record becomes text. ``"chat"``: the tokenizer's chat template
            (a plain ``### Instruction`` prompt without one); ``"authors"``: the authors'
            ``<|user|>`` / ``<|assistant|>`` text format (:mod:`mindskip.presets`).
    """

    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    adam_beta1: float = 0.0
    epochs: int = 1
    global_batch: int = 64
    micro_batch: int = 8
    max_length: int = 2048
    seed: int = 0
    objective: str = "lm"
    distill_chunk: int = 1024
    penalty: str = "global"
    penalty_warmup_ratio: float = 0.0
    init: str = "margin"
    init_margin: float = 3.0
    init_spread: float = 1.5
    init_samples: int = 32
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
    loss_reduction: str = "tokens"
    template: str = "chat"
    capacity_control: str = "fixed"
    dual_lr: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        for name, allowed in (
            ("schedule", SCHEDULES),
            ("objective", OBJECTIVES),
            ("penalty", PENALTIES),
            ("init", INITS),
            ("loss_reduction", LOSS_REDUCTIONS),
            ("template", TEMPLATES),
            ("capacity_control", CONTROLS),
        ):
            if getattr(self, name) not in allowed:
                self._bad(name, f"must be one of {allowed}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            self._bad("lr", "must be > 0")
        for name in ("warmup_ratio", "penalty_warmup_ratio"):
            if not 0 <= getattr(self, name) < 1:
                self._bad(name, "must be in [0, 1)")
        if not (self.dual_lr > 0 and math.isfinite(self.dual_lr)):
            self._bad("dual_lr", "must be > 0")
        if self.capacity_control == "dual" and self.penalty == "none":
            self._bad("capacity_control", "'dual' needs a penalty (global or per_layer)")
        if self.weight_decay < 0:
            self._bad("weight_decay", "must be >= 0")
        positive = ("epochs", "global_batch", "micro_batch", "max_length", "log_every")
        for name in (*positive, "distill_chunk", "init_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                self._bad(name, "must be a positive integer")
        if self.global_batch % self.micro_batch:
            self._bad("global_batch", f"must be a multiple of micro_batch={self.micro_batch}")
        for name in ("init_margin", "init_spread"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                self._bad(name, "must be >= 0")
        if not 0 <= self.adam_beta1 < 1:
            self._bad("adam_beta1", "must be in [0, 1)")
        if not 0 <= self.target_tolerance <= 1:
            self._bad("target_tolerance", "must be in [0, 1]")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            self._bad("max_grad_norm", "must be > 0 or None")
        if self.eval_batch is not None and self.eval_batch < 1:
            self._bad("eval_batch", "must be >= 1 or None")
        if self.lora_r < 0:
            self._bad("lora_r", "must be >= 0")

    def _bad(self, name: str, why: str) -> None:
        raise ValueError(f"TrainConfig.{name} {why}, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From a dict (a recipe block, or a metrics record's ``train_config``); unknown
        keys are an error that names them."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        return cls(**d)

    def warmup_steps(self, total_steps: int) -> int:
        """Optimizer steps of lr warm-up for a run of ``total_steps``."""
        return math.ceil(self.warmup_ratio * total_steps)

    def penalty_warmup_steps(self, total_steps: int) -> int:
        """Optimizer steps over which lambda ramps up, for a run of ``total_steps``."""
        return math.ceil(self.penalty_warmup_ratio * total_steps)
