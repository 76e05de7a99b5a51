"""Shim: build the embedded assets (mindskip.data.prepare.prepare_assets)."""

from pathlib import Path

from mindskip.data.prepare import prepare_assets
from mindskip.provenance import log_to_file

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
a = sm.params.assets
prepare_assets(
    Path(sm.output.manifest).parent,
    eval_tasks=a["eval_tasks"],
    mmlu=a["mmlu"],
    gsm8k=a["gsm8k"],
    model=sm.params.model["source"] == "embedded",
    per_task_cap=a["per_task_cap"],
    **({"train_tasks": a["train_tasks"]} if a.get("train_tasks") else {}),
)
