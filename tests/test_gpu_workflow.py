"""The workflow on a GPU box (workflow/profiles/gpu): a dry run of the paper's config plans
every model-loading job with one GPU, at most one such job at a time, and the profile job
alone on the machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "gpu"
CORES = 16


def dry_run_jobs(tmp_path: Path, *args: str) -> list[dict]:
    """Each planned job of a dry run: rule, threads and resources."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile")]
    cmd += ["--workflow-profile", str(PROFILE), "--configfile", str(ROOT / "config" / "paper.yaml")]
    cmd += ["--dry-run", "--cores", str(CORES), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"workflow specific profile {PROFILE}" in proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", proc.stdout)[1:]:
        rule = re.match(r"rule (\w+):", block).group(1)
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        pairs = dict(p.split("=", 1) for p in res.group(1).split(", ")) if res else {}
        jobs.append(
            {"rule": rule, "threads": int(threads.group(1)) if threads else 1, "res": pairs}
        )
    return jobs


def model_rules() -> set[str]:
    """Rules whose script loads a model (mindskip.modeling.load_model)."""
    out = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(
            r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.M | re.S
        ):
            script = re.search(r'script:\s*\n\s*"([^"]+)"', body)
            if script and "load_model" in (smk.parent / script.group(1)).resolve().read_text():
                out.add(rule)
    return out


def test_gpu_profile_plans_one_gpu_job_at_a_time(tmp_path):
    jobs = dry_run_jobs(tmp_path, "--resources", "gpu=1")
    rules = {j["rule"] for j in jobs}
    gpu_rules = model_rules()
    assert {"train_routers", "train_lora", "evaluate", "profile"} <= gpu_rules
    assert gpu_rules - rules == {"generate_data"}  # the paper's config trains on Alpaca
    for job in jobs:
        gpu = int(job["res"].get("gpu", 0))
        # the scheduler admits a job only while the GPUs it asks for are free: with gpu=1
        # on offer and every model job asking for one, one model job runs at a time
        assert gpu == (1 if job["rule"] in gpu_rules else 0), job
    profile = [j for j in jobs if j["rule"] == "profile"]
    assert profile and all(j["threads"] == CORES for j in profile)  # alone on the machine
    assert sum(j["rule"] == "evaluate" for j in jobs) > 1  # the case that needs the limit


def test_gpu_profile_offers_one_gpu_by_default():
    config = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert config["resources"] == {"gpu": 1}
    assert config["cores"] == "all"
    assert set(config["set-resources"]) == model_rules()
