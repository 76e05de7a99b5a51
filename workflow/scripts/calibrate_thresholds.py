"""Shim: thresholds that hit a skip ratio (mindskip.baselines.calibration_record), fitted on
one half of the held-out texts and checked on the other: held-out evaluation items in the
scoring format (calibration_text: eval), or the calibration / check parts of the records'
split (records)."""

from mindskip.artefacts import AdapterFolder, RouterFolder
from mindskip.baselines import calibration_record
from mindskip.data import record_text, training_records
from mindskip.data.split import split_records
from mindskip.evaluate.cli import build_suite
from mindskip.evaluate.heldout import heldout_contexts
from mindskip.files import write_json
from mindskip.methods import Dense, prepare_method
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
b, t, m = sm.params.baselines, sm.params.texts, sm.params.model
if b["calibration_text"] == "eval":
    suite = build_suite(
        t["suite"],
        limit=t["limit"],
        tasks=t["tasks"],
        task_limits=t.get("task_limits"),
        num_fewshot=t.get("num_fewshot"),
    )
    texts = [c["text"] for c in heldout_contexts(suite, 2 * b["calibration_samples"], t["seed"])]
    fit, check = texts[0::2], texts[1::2]
else:
    split = split_records(training_records(t["data"]), **t["split"])
    fit = [record_text(r) for r in split.calibration]
    check = [record_text(r) for r in split.check]
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
lora = sm.input.get("lora")
prepare_method(model, Dense(lora=str(AdapterFolder.holding(lora).path) if lora else None))
record = calibration_record(
    model,
    tok,
    routers=str(RouterFolder.holding(sm.input.routers).path),
    target=float(sm.wildcards.ratio),
    fit=fit,
    check=check,
    mode=b["calibration_mode"],
    max_length=b["calibration_length"],
)
record["texts"] = {"source": b["calibration_text"], "fit": len(fit), "check": len(check)}
write_json(sm.output.calibration, record)
