"""Shim: Router-Tuning of one run (mindskip.train.train_routers) on its held-out split."""

from mindskip import MindSkipConfig
from mindskip.artefacts import AdapterFolder, RouterFolder
from mindskip.data import training_records
from mindskip.data.split import split_records
from mindskip.files import read_jsonl
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads
from mindskip.train import TrainConfig, train_routers

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
run, m, r = sm.params.run, sm.params.model, dict(sm.params.recipe)
data = sm.input.get("data")  # a self-generated set, else the source itself
records = read_jsonl(data, "generated set") if data else training_records(sm.params.source)
split = split_records(records, **sm.params.split, max_samples=run["train_samples"])
config = MindSkipConfig(
    unit=run["unit"],
    routing=run["routing"],
    num_routed=run["num_routed"],
    threshold=run["threshold"],
    capacity_lambda=run["capacity_lambda"],
    capacity_target=run["capacity_target"],
    full_compute_in_training=run.get("full_compute_in_training", True),
    router_dtype=run.get("router_dtype", "float32"),
)
r.pop("val_count")
recipe = TrainConfig.from_dict({**r, "lora_r": run["lora_r"]})  # bad values stop here
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
lora = sm.input.get("lora")
train_routers(
    model,
    tok,
    split.train,
    split.validation,
    config,
    recipe,
    out_dir=RouterFolder.holding(sm.output.routers).path,
    lora_dir=AdapterFolder.holding(lora).path if lora else None,
    data_source=f"{run['data']}: {sm.params.source}",
)
