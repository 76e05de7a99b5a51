"""Shim: thresholds that hit a skip ratio (mindskip.baselines.calibrate_thresholds),
checked on other held-out records; the per-layer rates feed the random baseline."""

import json

from mindskip import load_routers, routers_hash
from mindskip.baselines import calibrate_thresholds, measure_skip_ratio, rates_from_stats
from mindskip.data import record_text, training_records
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads, stamp

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
b, m = sm.params.baselines, sm.params.model
n, length, target = b["calibration_samples"], b["calibration_length"], float(sm.wildcards.ratio)
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
routers = str(sm.input.routers).rsplit("/", 1)[0]
load_routers(model, routers)
# calibration and check text: the end of the embedded training set (training takes its head)
texts = [record_text(r) for r in training_records("embedded")[-2 * n :]]
history: list[float] = []
mode = b["calibration_mode"]
taus = calibrate_thresholds(
    model, tok, texts[n:], target, mode=mode, max_length=length, history=history
)
check = measure_skip_ratio(model, tok, texts[:n], max_length=length)
record = {
    "requested_skip_ratio": target,
    "mode": mode,
    "thresholds": {str(i): t for i, t in sorted(taus.items())},
    "realised_skip_ratio_calibration": history[-1] if history else None,
    "realised_skip_ratio_heldout": check,
    "rates_heldout": {str(i): r for i, r in sorted(rates_from_stats(model).items())},
    "history": history,
    "routers": routers,
    "routers_sha256": routers_hash(routers),
    "n_calibration": n,
    "n_heldout": n,
    "max_length": length,
    **stamp(),
}
with open(sm.output.calibration, "w") as f:
    json.dump(record, f, indent=2)
