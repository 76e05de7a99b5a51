"""Shim: tables and figures (mindskip.report.build_report)."""

from pathlib import Path

from mindskip.provenance import log_to_file
from mindskip.report import build_report

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
build_report(
    roles=sm.input.roles,
    evals=list(sm.input.evals),
    profiles=list(sm.input.profiles),
    metrics=list(sm.input.metrics),
    paper_dir=sm.params.paper_dir,
    tables_dir=Path(sm.output.tables[0]).parent,
    figures_dir=Path(sm.output.pngs[0]).parent,
    model_name=sm.params.model,
)
