"""Shim: static-drop importance ranking (mindskip.baselines.ranking_record)."""

from mindskip.baselines import ranking_record, save_ranking
from mindskip.data import record_text, training_records
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
b, m = sm.params.baselines, sm.params.model
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
# calibration text: the end of the embedded training set (training takes its head)
texts = [record_text(r) for r in training_records("embedded")[-b["calibration_samples"] :]]
record = ranking_record(
    model,
    tok,
    texts,
    unit=sm.wildcards.unit,
    max_length=b["calibration_length"],
    model_id=m["source"],
    data=f"embedded training set, last {len(texts)} records",
)
save_ranking(record, sm.output.ranking)
