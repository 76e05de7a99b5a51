"""Shim: score one method at one skip ratio (mindskip.evaluate.evaluate_model)."""

from functools import partial
from pathlib import Path

from mindskip.evaluate import evaluate_model
from mindskip.evaluate.cli import build_suite
from mindskip.evaluate.suites import check_suite_available
from mindskip.method import resolve
from mindskip.methods import prepare_method, set_task_rates
from mindskip.modeling import load_model, model_num_layers
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
e, m = sm.params.eval, sm.params.model
suite = build_suite(
    sm.wildcards.suite,
    limit=e["limit"],
    tasks=e["tasks"],
    task_limits=e.get("task_limits"),
    num_fewshot=e.get("num_fewshot"),
)
check_suite_available(suite)  # before the model loads
n_layers = model_num_layers(m["source"])  # its config: last-k static drop needs it
spec, meta = resolve(
    sm.params.method, dict(sm.input.items()), num_layers=n_layers, label=sm.params.label
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
    route_on=sm.params.method.get("route_on") or e["route_on"],
    before_task=partial(set_task_rates, model, spec),  # random skipping: each task's rates
)
