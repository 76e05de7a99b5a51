"""Router-Tuning: train the routers alone (every base weight frozen), with capacity control.

One call (the caller splits the records with :func:`mindskip.data.split.split_records`)::

    from mindskip.train import TrainConfig, train_routers
    metrics = train_routers(model, tok, split.train, split.validation, MindSkipConfig(...),
                            TrainConfig(), out_dir)

Modules, one idea each:

- :mod:`~mindskip.train.recipe`: :class:`TrainConfig`, the recipe.
- :mod:`~mindskip.train.examples`: format and encode records, collate, batch.
- :mod:`~mindskip.train.objective`: LM loss, distillation loss, capacity penalties.
- :mod:`~mindskip.train.start`: where the routers start (zero, or a margin above tau).
- :mod:`~mindskip.train.step`: freezing, optimizer, schedule, the one training step.
- :mod:`~mindskip.train.loop`: :func:`train_routers`.
- :mod:`~mindskip.train.validate`: dense vs routed on held-out records.
- :mod:`~mindskip.train.record`: the ``metrics.json`` record and the run's files.
- :mod:`~mindskip.train.lora`: :func:`train_lora`, :func:`load_adapters`.
- :mod:`~mindskip.train.cost`: :func:`benchmark_training_cost`.
"""

from ..capacity import dynamic_share
from .cost import benchmark_training_cost, peak_memory
from .examples import (
    IGNORE_INDEX,
    StepBatch,
    collate,
    encode_record,
    encode_records,
    format_record,
    records_sha256,
    step_loader,
)
from .loop import train_routers
from .lora import LORA_CONFIG_FILE, LORA_FILE, add_lora, load_adapters, save_adapters, train_lora
from .objective import (
    CapacityMultiplier,
    capacity_from_gates,
    capacity_multiplier,
    capacity_penalty,
    kl_sum,
    layer_capacities,
    lm_loss_sum,
    teacher_hidden,
)
from .recipe import INITS, OBJECTIVES, PAPER_LR, PENALTIES, SCHEDULES, TrainConfig
from .record import METRICS_FILE
from .start import init_routers
from .step import StepSetup, train_step
from .validate import evaluate, validate

__all__ = [
    "CapacityMultiplier",
    "capacity_multiplier",
    "IGNORE_INDEX",
    "INITS",
    "LORA_CONFIG_FILE",
    "LORA_FILE",
    "METRICS_FILE",
    "OBJECTIVES",
    "PAPER_LR",
    "PENALTIES",
    "SCHEDULES",
    "StepBatch",
    "StepSetup",
    "TrainConfig",
    "add_lora",
    "benchmark_training_cost",
    "capacity_from_gates",
    "capacity_penalty",
    "collate",
    "dynamic_share",
    "encode_record",
    "encode_records",
    "evaluate",
    "format_record",
    "init_routers",
    "kl_sum",
    "layer_capacities",
    "lm_loss_sum",
    "load_adapters",
    "peak_memory",
    "records_sha256",
    "save_adapters",
    "step_loader",
    "teacher_hidden",
    "train_lora",
    "train_routers",
    "train_step",
    "validate",
]
