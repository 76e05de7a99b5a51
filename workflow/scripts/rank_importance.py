"""Shim: static-drop importance ranking (mindskip.baselines.ranking_record)."""

from mindskip.baselines import ranking_record, save_ranking
from mindskip.data import record_text, training_records
from mindskip.data.split import split_records
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
b, s, m = sm.params.baselines, sm.params.split, sm.params.model
held = split_records(training_records(sm.params.data), **s).calibration
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
record = ranking_record(
    model,
    tok,
    [record_text(r) for r in held],
    unit=sm.wildcards.unit,
    max_length=b["calibration_length"],
    model_id=m["source"],
    data=f"{sm.params.data}: the calibration part of its held-out split ({len(held)} records)",
)
save_ranking(record, sm.output.ranking)
