"""benchmarks/gpu_h200.sh in its smoke mode (CPU, a tiny shape): every part runs, and the
one archive holds the checks, both profiles (eager and captured decode, with their token
checks), the training cost and the summary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_smoke_mode_writes_one_complete_archive(tmp_path):
    env = {**os.environ, "MINDSKIP_GPU_BENCH_SMOKE": "1", "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_h200.sh"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["gpu-h200.tar.gz"]
    with tarfile.open(tmp_path / "out" / "gpu-h200.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    got = tmp_path / "x" / "gpu-h200"
    parts = [line.split("\t") for line in (got / "parts.tsv").read_text().splitlines()]
    assert [(p[0], p[1]) for p in parts] == [
        ("checks", "0"), ("prefill", "0"), ("captured", "0"), ("train", "0"), ("eager", "0"),
    ]  # fmt: skip
    checks = json.loads((got / "checks.json").read_text())
    assert checks["ok"] and len(checks["cases"]) == 24
    for name, cache in (("prefill", "dynamic"), ("captured", "captured"), ("eager", "dynamic")):
        with open(got / name / "profile.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 7 and all(r["status"] == "ok" and r["cache"] == cache for r in rows)
        if name != "prefill":  # greedy tokens of each routed variant == its ceiling's
            assert sum("tokens == ceiling" in r["check"] for r in rows) == 3
    cost = json.loads((got / "train.json").read_text())
    assert cost["routers"]["trainable_parameters"] < cost["full"]["trainable_parameters"]
    summary = (got / "SUMMARY.md").read_text()
    assert "Checks (6 layers, float32): 24/24 ok" in summary and "Training step" in summary
