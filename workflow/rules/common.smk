# Config validation, the experiment plan, input helpers and wildcard constraints.
# What a run or a method is lives in mindskip.plan (one place); rules only look it up.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from mindskip.data.prepare import check_assets_config, check_eval_tasks
from mindskip.data.packages import AssetPackageError
from mindskip.paths import Paths
from mindskip.plan import NATIVE, canonical, is_generated, plan
from mindskip.report import FIGURES, TABLES
from mindskip.schema import SCHEMA_PATH
from mindskip.sources import ModelSourceError, check_model_source


validate(config, str(SCHEMA_PATH))
config.update(canonical(dict(config)))

try:
    check_eval_tasks(config["eval"]["suite"], config["eval"]["tasks"], config["assets"])
except ValueError as e:
    raise WorkflowError(f"mindskip: {e}") from None
PLAN = plan(config)


def check_source_or_stop() -> None:
    """Called by ``onstart`` (not on dry runs): stop before any job starts when no job
    could load the model, or when an asset package the assets are built from is missing,
    with the reason in one line."""
    try:
        check_model_source(config["model"]["source"])
        a = config["assets"]
        # an embedded model.source (embedded, embedded:gemma3-270m) is converted by
        # convert_model; a folder or hub id converts nothing
        check_assets_config(a["tasks"], a["train_sources"], model=config["model"]["source"])
    except (ModelSourceError, AssetPackageError) as e:
        logger.error(f"mindskip: {e}")
        raise WorkflowError(str(e)) from None
PATHS = PLAN.paths
PATTERNS = Paths.patterns(PATHS.root)  # the same paths with wildcards: what rules output
MODEL = PATHS.model
SUITE = PATHS.suite
ASSETS = PATHS.assets
ASSET_INPUTS = PATHS.asset_inputs()  # the assets' manifest and the model's conversion
EMBEDDED_MODEL = PATHS.embedded  # None: a folder or hub id


wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    run=r"[A-Za-z0-9_.\-]+",
    lora=r"[A-Za-z0-9_.\-]+",
    unit=r"attn|mlp|block",
    ratio=r"native|\d\.\d{3}",
    suite=r"embedded|paper",
    method=r"[A-Za-z0-9_.\-]+",
    dataset=r"[A-Za-z0-9_.\-]+",


def baseline_settings(*keys: str) -> dict:
    """Only the baseline settings a rule uses, so that editing another one (a random seed,
    a static unit) does not rerun it."""
    return {k: config["baselines"][k] for k in keys}


def method_inputs(wildcards) -> dict[str, str]:
    """What a method needs at a ratio (routers, thresholds, a ranking, a reference score)."""
    return PLAN.inputs(wildcards.method, wildcards.ratio)


def profile_inputs(wildcards) -> dict[str, str]:
    """A method's inputs, and the prompts dense scored when the profile runs on them."""
    out = method_inputs(wildcards)
    if config["profile"]["inputs"] == "scored":
        out["prompts"] = PATHS.prompts("dense", NATIVE)
    return out


def method_params(wildcards) -> dict:
    """The planned method, recorded in every result (the report reads it from there)."""
    return PLAN.params(wildcards.method, wildcards.ratio)


def method_label(wildcards, output) -> str | None:
    """The method's display name (a run's ``name``), for its records. Taking ``output``
    makes it a derived param, which Snakemake leaves out of its params-changed check: editing
    a name reruns nothing (a record keeps the name it was written under)."""
    return PLAN.label(wildcards.method)


def run_params(wildcards) -> dict:
    """The run's training settings: editing its ratios, sweep, baselines or profiling
    changes the jobs planned from it, not its training's params."""
    return canonical(PLAN.runs[wildcards.run].settings)


def run_recipe(wildcards) -> dict:
    """The top-level recipe with this run's own changes (part of the run's identity)."""
    return canonical(config["recipe"] | (PLAN.runs[wildcards.run].entry.get("recipe") or {}))


def data_inputs(name: str) -> dict[str, str]:
    """A self-generated dataset is a file another rule builds; a source string is read
    where it is (assets, a local JSONL, the hub)."""
    return {"data": PATHS.data(name)} if is_generated(config["datasets"][name]) else {}


def data_source(name: str) -> str:
    value = config["datasets"][name]
    return f"generated:{value['generate']}" if is_generated(value) else value


def run_inputs(wildcards) -> dict[str, str]:
    run = PLAN.runs[wildcards.run]
    out = ASSET_INPUTS | data_inputs(run.entry["data"])
    if run.lora is not None:
        out |= PATHS.lora(run.lora).inputs()
    return out


def lora_inputs(wildcards) -> dict[str, str]:
    return ASSET_INPUTS | data_inputs(PLAN.loras[wildcards.lora].entry["data"])


def split_settings(name: str | None = None) -> dict:
    """How training records are split (mindskip.data.split.split_records): rules that read
    training records get only these, so a change of lr does not rerun a ranking. A
    self-generated set holds no calibration records (calibration reads
    ``baselines.calibration_data``, whose calibration part no generated prompt comes from)."""
    generated = name is not None and is_generated(config["datasets"][name])
    return {
        "calibration": 0 if generated else config["baselines"]["calibration_samples"],
        "validation": config["recipe"]["val_count"],
        "seed": config["recipe"]["seed"],
    }


def calibration_text_settings() -> dict:
    """Only what the calibration texts depend on: the evaluation's tasks, limit and seed
    (its held-out items), or the records' split."""
    if config["baselines"]["calibration_text"] == "eval":
        e = config["eval"]
        keys = ("suite", "tasks", "limit", "task_limits", "seed", "num_fewshot")
        return {k: e.get(k) for k in keys}
    data = config["datasets"][config["baselines"]["calibration_data"]]
    return {"data": data, "split": split_settings()}


def generation_settings(name: str) -> dict:
    """A generated dataset's settings with the schema's defaults filled in."""
    from mindskip.schema import dataset_generation_defaults

    return canonical(dataset_generation_defaults() | config["datasets"][name])


def generated_datasets() -> list[str]:
    used = {r.entry["data"] for r in PLAN.runs.values()}
    used |= {lr.entry["data"] for lr in PLAN.loras.values()}
    return sorted(n for n in used if is_generated(config["datasets"][n]))


def calibration_inputs(wildcards) -> dict[str, str]:
    run = PLAN.runs[wildcards.run]
    out = ASSET_INPUTS | PATHS.routers(wildcards.run).inputs()
    if run.lora is not None:
        out |= PATHS.lora(run.lora).inputs()
    return out


def eval_outputs() -> list[str]:
    return [PATHS.eval(m, r) for m, r in PLAN.eval_jobs]


def profile_outputs() -> list[str]:
    return [PATHS.profile(m, r) for m, r in PLAN.profile_jobs]


def metrics_outputs() -> list[str]:
    return [str(PATHS.routers(run).metrics) for run in PLAN.runs]


def lora_outputs() -> list[str]:
    return [str(PATHS.lora(slug).weights) for slug in PLAN.loras]


PAPER_DIR = str(Path(workflow.basedir).parent / "resources" / "paper")


def published_inputs() -> list[str]:
    """The scores published for the model (the dense table puts them beside ours), if any."""
    path = Path(PAPER_DIR).parent / "published" / f"{config['model']['name']}.csv"
    return [str(path)] if path.is_file() else []


def table_outputs() -> list[str]:
    return [PATHS.table(t, ext) for t in TABLES for ext in ("csv", "md", "tex")]


def figure_outputs(ext: str) -> list[str]:
    return [PATHS.figure(f, ext) for f in FIGURES]


def report_outputs() -> list[str]:
    return table_outputs() + figure_outputs("png") + figure_outputs("pdf")


def all_outputs() -> list[str]:
    return [
        ASSETS,
        *lora_outputs(),
        *metrics_outputs(),
        *eval_outputs(),
        *profile_outputs(),
        *report_outputs(),
    ]
