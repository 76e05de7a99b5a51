"""Data for the pipeline: the embedded assets (model, evaluation tasks) and instruction sets.

Importing this package is cheap: torch, transformers, datasets and lm_eval are imported
only inside the functions that need them. ``python -m mindskip.data prepare`` builds
everything into ``results/assets``.
"""

from .assets import (
    assemble_gguf,
    convert_embedded,
    convert_gemma3,
    convert_smollm2,
    gsm8k_test_path,
    load_gsm8k,
    model_gguf,
    smollm2_gguf,
)
from .bigbench import bigbench_docs, extract_bigbench, write_bigbench_task
from .instructions import (
    DEFAULT_TRAIN_SOURCES,
    TRAIN_SOURCES,
    InstructionDataError,
    build_instruction_set,
    drop_overlaps,
    load_alpaca_jsonl,
    load_hf_instructions,
    load_instructions,
    normalize_text,
    record_text,
    training_records,
)
from .models import GEMMA3_270M, MODELS, SMOLLM2_135M, EmbeddedModel, embedded_model
from .packages import EXTRAS, PACKAGES, AssetPackageError, check_packages, package_dir
from .prepare import MODEL_SUBDIR, check_assets_config, needed_packages, prepare_assets
from .tasks import (
    CATALOG,
    DEFAULT_TASKS,
    PAPER_TASKS,
    EmbeddedTask,
    carve,
    eval_jsonl_files,
    eval_texts,
    lookup,
    smoke_eval,
    task_name,
    write_task_suite,
)

__all__ = [
    "CATALOG",
    "DEFAULT_TASKS",
    "DEFAULT_TRAIN_SOURCES",
    "EXTRAS",
    "GEMMA3_270M",
    "MODELS",
    "MODEL_SUBDIR",
    "PACKAGES",
    "PAPER_TASKS",
    "SMOLLM2_135M",
    "TRAIN_SOURCES",
    "AssetPackageError",
    "EmbeddedModel",
    "EmbeddedTask",
    "InstructionDataError",
    "assemble_gguf",
    "bigbench_docs",
    "build_instruction_set",
    "carve",
    "check_assets_config",
    "check_packages",
    "convert_embedded",
    "convert_gemma3",
    "convert_smollm2",
    "drop_overlaps",
    "embedded_model",
    "eval_jsonl_files",
    "eval_texts",
    "extract_bigbench",
    "gsm8k_test_path",
    "load_alpaca_jsonl",
    "load_gsm8k",
    "load_hf_instructions",
    "load_instructions",
    "lookup",
    "model_gguf",
    "needed_packages",
    "normalize_text",
    "package_dir",
    "prepare_assets",
    "record_text",
    "smoke_eval",
    "smollm2_gguf",
    "task_name",
    "training_records",
    "write_bigbench_task",
    "write_task_suite",
]
