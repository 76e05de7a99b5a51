"""Shim: speed and memory of one method against dense and its hand-removed ceiling, in one
process (mindskip.profile.profile). Strict: a variant that fails fails the job. Inputs:
``profile.inputs`` ("random", or a JSONL/.pt of token-id lists, e.g. the tokenised
evaluation prompts; an input named ``prompts`` takes precedence)."""

from pathlib import Path

from mindskip.method import resolve
from mindskip.modeling import load_model, model_num_layers, pick_device
from mindskip.profile import ProfileConfig, profile
from mindskip.provenance import log_to_file

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
p, m = sm.params.profile, sm.params.model
n_layers = model_num_layers(m["source"])  # its config: last-k static drop needs it
spec, meta = resolve(
    sm.params.method, dict(sm.input.items()), num_layers=n_layers, label=sm.params.label
)
model, _tok = load_model(m["source"], m["dtype"], m.get("device", "auto"))
config = ProfileConfig(
    model=m["name"],
    units=(),
    grid=tuple((g["batch"], g["prompt"], g["new_tokens"]) for g in p["grid"]),
    caches=("dynamic", "static") if p["static_cache"] else ("dynamic",),
    repeats=p["repeats"],
    warmup=p["warmup"],
    device=pick_device(m.get("device", "auto")),
    threads=sm.threads,
    strict=p["strict"],
    inputs=sm.input.get("prompts", "random"),
)
profile(
    config,
    model=model,
    methods={sm.wildcards.method: spec},
    out_dir=Path(sm.output.csv).parent,
    record={"method": meta},  # the report reads the planned method from profile.json
)
