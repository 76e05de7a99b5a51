"""Shim: thresholds that hit a skip ratio (mindskip.baselines.calibration_record), fitted
on the calibration part of the run's held-out split and checked on its check part."""

from pathlib import Path

from mindskip.baselines import calibration_record
from mindskip.data import record_text, training_records
from mindskip.data.split import split_records
from mindskip.files import write_json
from mindskip.methods import Dense, prepare_method
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
b, m = sm.params.baselines, sm.params.model
split = split_records(training_records(sm.params.data), **sm.params.split)
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
lora = sm.input.get("lora")
prepare_method(model, Dense(lora=str(Path(lora).parent) if lora else None))
record = calibration_record(
    model,
    tok,
    routers=str(Path(sm.input.routers).parent),
    target=float(sm.wildcards.ratio),
    fit=[record_text(r) for r in split.calibration],
    check=[record_text(r) for r in split.check],
    mode=b["calibration_mode"],
    max_length=b["calibration_length"],
)
write_json(sm.output.calibration, record)
