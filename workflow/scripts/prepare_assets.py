"""Shim: build the task suite and training set (mindskip.data.prepare.prepare_assets);
the model is convert_model's."""

from pathlib import Path

from mindskip.data.prepare import prepare_assets
from mindskip.provenance import log_to_file

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
a = sm.params.assets
prepare_assets(
    Path(sm.output.manifest).parent,
    tasks=a["tasks"],
    train_sources=a["train_sources"],
    bigbench_tasks=a["bigbench_tasks"],
    model=None,
    per_source_cap=a["per_source_cap"],
)
