"""Shim: Router-Tuning of one run (mindskip.train.train_routers)."""

from pathlib import Path

from mindskip import MindSkipConfig
from mindskip.data import training_records
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads
from mindskip.train import TrainConfig, train_routers

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
run, m, data = sm.params.run, sm.params.model, sm.params.data
records = training_records(data)
if data == "embedded":
    # the tail of the embedded set is kept for rankings and calibration (never trained on)
    records = records[: -2 * sm.params.holdout]
config = MindSkipConfig(
    unit=run["unit"],
    routing=run["routing"],
    num_routed=run["num_routed"],
    threshold=run["threshold"],
    capacity_lambda=run["capacity_lambda"],
    capacity_target=run["capacity_target"],
)
recipe = TrainConfig.from_dict(
    {**sm.params.recipe, "max_samples": run["train_samples"], "lora_r": run["lora_r"]}
)
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
train_routers(
    model,
    tok,
    records,
    config,
    recipe,
    out_dir=Path(sm.output.routers).parent,
    data_source=f"{run['data']}: {data}",
)
