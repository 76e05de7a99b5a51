# Config validation, run identities, input helpers and wildcard constraints.
import json
from pathlib import Path

from snakemake.utils import validate


validate(config, workflow.source_path("../schemas/config.schema.yaml"))


def canonical(value):
    """The same settings in one key order. Snakemake compares a rule's params in order,
    so without this a config re-dumped with sorted keys would rerun every job."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


config.update(canonical(dict(config)))

MODEL = config["model"]["name"]
SUITE = config["eval"]["suite"]
ASSETS = "results/assets/manifest.json"


def fmt_ratio(r) -> str:
    return f"{float(r):.3f}"


def run_slug(run: dict) -> str:
    """A short, readable identity for one router-tuning run (its wildcard value)."""
    target = "free" if run.get("capacity_target") is None else f"c{run['capacity_target']:g}"
    return (
        f"{run['unit']}-{run['routing'][:3]}-n{run['num_routed']}-{target}"
        f"-{run['data']}-{run['train_samples']}"
    )


RUNS = {run_slug(r): r for r in config["routers"]}
if len(RUNS) != len(config["routers"]):
    raise ValueError("config 'routers': two entries give the same run identity; make them differ")
for _slug, _run in RUNS.items():
    if _run["data"] not in config["datasets"]:
        raise ValueError(
            f"config 'routers' entry {_slug}: data {_run['data']!r} is not a key of 'datasets' "
            f"(known: {sorted(config['datasets'])})"
        )
SWEPT = [s for s, r in RUNS.items() if r.get("sweep", False)]
RATIOS = [fmt_ratio(r) for r in config["sweep"]["skip_ratios"]]
STATIC = [f"drop-{u}" for u in config["baselines"]["static_units"]]
SEEDS = config["baselines"]["random_seeds"]
RANDOM = [f"random{s}-{run}" for run in SWEPT for s in SEEDS]

wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    run=r"(attn|mlp|block)-(seq|tok)-n\d+-(free|c[0-9.]+)-[A-Za-z0-9_]+-\d+",
    unit=r"attn|mlp|block",
    ratio=r"native|\d\.\d{3}",
    suite=r"embedded|paper",
    method=r"[A-Za-z0-9_.\-]+",


def baseline_settings(*keys: str) -> dict:
    """Only the baseline settings a rule uses, so that editing another one (a random seed,
    a static unit) does not rerun it."""
    return {k: config["baselines"][k] for k in keys}


def eval_jobs() -> list[tuple[str, str]]:
    """Every (method, ratio) that is scored."""
    jobs = [("dense", "native")]
    jobs += [(run, "native") for run in RUNS]
    for ratio in RATIOS:
        jobs += [(run, ratio) for run in SWEPT]
        jobs += [(m, ratio) for m in STATIC]
        jobs += [(m, ratio) for m in RANDOM]
    return jobs


def profile_jobs() -> list[tuple[str, str]]:
    """Native runs, and the swept methods at the profiled ratios (default: every ratio)."""
    jobs = [(run, "native") for run in RUNS]
    chosen = config["profile"]["ratios"]
    for ratio in RATIOS if chosen is None else [fmt_ratio(r) for r in chosen]:
        jobs += [(run, ratio) for run in SWEPT]
        jobs += [(m, ratio) for m in STATIC]
    return jobs


def eval_file(method: str, ratio: str) -> str:
    return f"results/eval/{MODEL}/{method}/{ratio}/{SUITE}.json"


def profile_file(method: str, ratio: str) -> str:
    return f"results/profile/{MODEL}/{method}/{ratio}/profile.csv"


def router_dir(run: str) -> str:
    return f"results/routers/{MODEL}/{run}"


def router_file(run: str) -> str:
    return f"results/routers/{MODEL}/{run}/routers.safetensors"


def metrics_file(run: str) -> str:
    return f"results/routers/{MODEL}/{run}/metrics.json"


TABLES = ["main", "sweep", "training", "speed", "paper_main"]
FIGURES = ["accuracy_vs_skip", "pareto", "layer_skip", "training_curves"]
PAPER_DIR = str(Path(workflow.basedir).parent / "resources" / "paper")


def report_outputs() -> list[str]:
    out = [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    out += [f"results/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    return out


def method_kind(method: str) -> str:
    if method == "dense":
        return "dense"
    if method in RUNS:
        return "router"
    if method.startswith("drop-"):
        return "static"
    if method.startswith("random"):
        return "random"
    raise ValueError(f"unknown method {method!r}")


def random_parts(method: str) -> tuple[int, str]:
    seed, run = method[len("random") :].split("-", 1)
    return int(seed), run


def method_inputs(wildcards) -> dict[str, str]:
    """What a method needs at a ratio: routers, thresholds, a ranking, or rates."""
    method, ratio = wildcards.method, wildcards.ratio
    kind = method_kind(method)
    inputs = {"assets": ASSETS}
    if kind == "router":
        inputs["routers"] = router_file(method)
        if ratio != "native":
            inputs["calibration"] = f"results/baselines/{MODEL}/{method}/calibration-{ratio}.json"
    elif kind == "static":
        inputs["ranking"] = f"results/baselines/{MODEL}/ranking-{method[5:]}.json"
    elif kind == "random":
        _, run = random_parts(method)
        inputs["routers"] = router_file(run)
        if ratio != "native":
            inputs["calibration"] = f"results/baselines/{MODEL}/{run}/calibration-{ratio}.json"
    return inputs


def method_params(wildcards) -> dict:
    """A JSON-able description of the method, recorded in every result."""
    method, ratio = wildcards.method, wildcards.ratio
    kind = method_kind(method)
    spec = {"name": method, "kind": kind, "ratio": ratio}
    if kind in ("router", "random"):
        run = method if kind == "router" else random_parts(method)[1]
        spec.update(run=run, **{k: RUNS[run][k] for k in ("unit", "routing", "num_routed")})
        if kind == "random":
            spec["seed"] = random_parts(method)[0]
    if kind == "static":
        spec["unit"] = method[5:]
    return spec


def all_outputs() -> list[str]:
    out = [ASSETS]
    out += [metrics_file(run) for run in RUNS]
    out += [eval_file(m, r) for m, r in eval_jobs()]
    if config["profile"]["enabled"]:
        out += [profile_file(m, r) for m, r in profile_jobs()]
    out += report_outputs()
    return out
