"""Shim: a self-generated training set (mindskip.data.generate.generate_responses)."""

from mindskip.data import training_records
from mindskip.data.generate import generate_responses
from mindskip.data.split import split_records
from mindskip.modeling import load_model
from mindskip.provenance import log_to_file, set_threads

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
set_threads(sm.threads)
g, m = sm.params.generate, sm.params.model
split = split_records(
    training_records(sm.params.source), **sm.params.split, max_samples=g["samples"]
)
model, tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
generate_responses(
    model,
    tok,
    split.train,
    max_new_tokens=g["max_new_tokens"],
    max_prompt_tokens=g["max_prompt_tokens"],
    batch_size=g["batch_size"],
    out_path=sm.output.data,
)
