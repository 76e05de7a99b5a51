"""Shim: score one method at one skip ratio (mindskip.evaluate.evaluate_model)."""

from pathlib import Path

from mindskip.baselines import prepare_method
from mindskip.evaluate import evaluate_model
from mindskip.evaluate.cli import build_suite
from mindskip.evaluate.suites import check_suite_available
from mindskip.methods import resolve_method
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
e, m = sm.params.eval, sm.params.model
suite = build_suite(sm.wildcards.suite, limit=e["limit"], tasks=e["tasks"])
check_suite_available(suite)  # before the model loads
spec, meta = resolve_method(
    sm.params.method, **{k: sm.input.get(k) for k in ("routers", "calibration", "ranking")}
)
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
prepare_method(model, spec)
evaluate_model(
    model,
    tok,
    suite,
    out_dir=Path(sm.output.scores).parent,
    method=meta,
    batch_size=e["batch_size"],
    seed=e["seed"],
    model_id=m["source"],
)
