"""Shim: a LoRA-only fine-tune of the dense model (mindskip.train.train_lora)."""

from mindskip.artefacts import AdapterFolder
from mindskip.data import training_records
from mindskip.data.split import split_records
from mindskip.files import read_jsonl
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads
from mindskip.train import TrainConfig, train_lora

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
e, m, r = sm.params.lora, sm.params.model, dict(sm.params.recipe)
data = sm.input.get("data")  # a self-generated set, else the source itself
records = read_jsonl(data, "generated set") if data else training_records(sm.params.source)
split = split_records(records, **sm.params.split, max_samples=e["train_samples"])
r.pop("val_count")
recipe = TrainConfig.from_dict({**r, "lr": e["lr"], "lora_alpha": e["alpha"]})
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
train_lora(
    model,
    tok,
    split.train,
    split.validation,
    recipe,
    out_dir=AdapterFolder.holding(sm.output.lora).path,
    r=e["r"],
    data_source=f"{e['data']}: {sm.params.source}",
)
