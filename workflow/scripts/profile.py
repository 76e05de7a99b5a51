"""Shim: speed and memory of one method against dense and its hand-removed ceiling, in one
process (mindskip.profile.profile)."""

from pathlib import Path

from mindskip.methods import resolve_method
from mindskip.modeling import load_model, pick_device
from mindskip.profile import ProfileConfig, profile
from mindskip.provenance import log_to_file

sm = snakemake  # noqa: F821
log_to_file(sm.log[0])
p, m = sm.params.profile, sm.params.model
spec, _ = resolve_method(
    sm.params.method, **{k: sm.input.get(k) for k in ("routers", "calibration", "ranking")}
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
)
profile(
    config, model=model, methods={sm.wildcards.method: spec}, out_dir=Path(sm.output.csv).parent
)
