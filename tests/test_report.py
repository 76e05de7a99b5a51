"""Tables and figures from fixture records: no torch, no model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mindskip.evaluate.items import write_items
from mindskip.report import build_report, collect_evals, sweep_points

PAPER = Path(__file__).resolve().parents[1] / "resources" / "paper"


def _record(tmp: Path, name: str, spec: dict, correct: dict[str, list[int]], skip: float):
    """An evaluation record (the layout mindskip.evaluate writes) with per-item rows."""
    folder = tmp / name
    items, rows = [], []
    for task, flags in correct.items():
        for i, c in enumerate(flags):
            items.append({"task": task, "doc_id": i, "filter": "none", "acc": float(c)})
        n = len(flags)
        mean = sum(flags) / n
        rows.append(
            {
                "task": task,
                "label": task,
                "metric": "acc",
                "filter": "none",
                "value": mean,
                "stderr": (mean * (1 - mean) / (n - 1)) ** 0.5,
                "n": n,
                "num_fewshot": 0,
                "chance": 0.25,
                "unit": spec.get("unit"),
                "routing": spec.get("routing"),
                "realised_skip_ratio": skip,
            }
        )
    write_items(folder / "embedded.items.jsonl.gz", items)
    layers = {str(i): (0.5 if skip else 1.0) for i in range(13, 29)}
    per_task = {t: {"capacity_per_layer": layers} for t in correct}
    rec = {
        "rows": rows,
        "method": {"method": spec["kind"], "spec": spec},
        "routing": {"realised": {"skip_ratio": skip}, "realised_per_task": per_task},
        "files": {"items": "embedded.items.jsonl.gz"},
    }
    path = folder / "embedded.json"
    path.write_text(json.dumps(rec))
    return path


@pytest.fixture
def fixture_results(tmp_path: Path) -> dict[str, list[Path]]:
    base = {"t1": [1, 1, 0, 0, 1, 0, 1, 0], "t2": [1, 0, 1, 0, 1, 1, 0, 0]}
    one_lost = {"t1": [1, 1, 0, 0, 1, 0, 1, 0], "t2": [0, 0, 1, 0, 1, 1, 0, 0]}
    run = {"unit": "attn", "routing": "sequence", "run": "r1", "num_routed": 16}
    evals = [
        _record(tmp_path, "dense", {"name": "dense", "kind": "dense", "ratio": "native"}, base, 0),
        _record(
            tmp_path, "r1", {"name": "r1", "kind": "router", "ratio": "native", **run}, base, 0.27
        ),
        _record(
            tmp_path,
            "r1-25",
            {"name": "r1", "kind": "router", "ratio": "0.250", **run},
            one_lost,
            0.25,
        ),
        _record(
            tmp_path,
            "drop",
            {"name": "drop-attn", "kind": "static", "ratio": "0.250", "unit": "attn"},
            one_lost,
            0.267,
        ),
    ]
    profiles = []
    for ratio, speed, ceiling in (("native", 1.1, 1.12), ("0.250", 1.08, 1.1)):
        prof = tmp_path / "profile" / "r1" / ratio / "profile.csv"
        prof.parent.mkdir(parents=True)
        regime = {"phase": "prefill", "batch": 1, "prompt_len": 8, "new_tokens": 0}
        pd.DataFrame(
            [
                {**regime, "cache": "dynamic", "variant": "dense", "speedup": 1.0},
                {**regime, "cache": "dynamic", "variant": "mindskip", "speedup": speed},
                {**regime, "cache": "dynamic", "variant": "ceiling", "speedup": ceiling},
            ]
        ).to_csv(prof, index=False)
        profiles.append(prof)
    metrics = tmp_path / "r1" / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "mindskip_config": {"unit": "attn", "routing": "sequence", "capacity_target": 0.5},
                "log": [
                    {"step": 1, "lm_loss": 2.0, "capacity": 1.0},
                    {"step": 2, "lm_loss": 2.1, "capacity": 0.6},
                ],
                "val": {"capacity": 0.52, "ppl_dense": 10.0, "ppl_routed": 11.0},
                "target_reached": True,
                "data": {"source": "embedded", "train_records": 1000, "train_examples": 990},
                "peak_memory": {"bytes": 2**30},
            }
        )
    )
    return {"evals": evals, "profiles": profiles, "metrics": [metrics]}


def test_paired_difference_in_tables(fixture_results):
    df = collect_evals(fixture_results["evals"])
    r = df[(df["method"] == "r1") & (df["ratio"] == "0.250") & (df["task"] == "t2")].iloc[0]
    assert r["diff"] == pytest.approx(-1 / 8)
    same = df[(df["method"] == "r1") & (df["ratio"] == "native")]
    assert (same["diff"] == 0).all() and (same["diff_se"] == 0).all()


def test_sweep_has_one_point_per_family_and_ratio(fixture_results, tmp_path):
    """Two ratios of one router run are two points (not one averaged point)."""
    two_lost = {"t1": [0, 1, 0, 0, 1, 0, 1, 0], "t2": [0, 0, 1, 0, 1, 1, 0, 0]}
    run = {"unit": "attn", "routing": "sequence", "run": "r1", "num_routed": 16}
    spec = {"name": "r1", "kind": "router", "ratio": "0.500", **run}
    extra = _record(tmp_path / "more", "r1-50", spec, two_lost, 0.5)
    points = sweep_points(collect_evals([*fixture_results["evals"], extra]))
    router = points[points["kind"] == "router"].set_index("ratio")
    assert sorted(router.index) == ["0.250", "0.500"]
    assert router.loc["0.250", "diff"] == pytest.approx(-1 / 16)  # one of 16 items lost
    assert router.loc["0.500", "diff"] == pytest.approx(-2 / 16)
    assert router.loc["0.500", "realised"] == pytest.approx(0.5)
    assert len(points[points["kind"] == "static"]) == 1


def test_build_report_writes_every_table_and_figure(fixture_results, tmp_path):
    out = build_report(
        fixture_results["evals"],
        fixture_results["profiles"],
        fixture_results["metrics"],
        PAPER,
        tmp_path / "tables",
        tmp_path / "figures",
        model_name="tiny",
    )
    names = {Path(p).name for p in out["tables"] + out["figures"]}
    for t in ("main", "sweep", "training", "speed", "paper_main"):
        assert {f"{t}.csv", f"{t}.md", f"{t}.tex"} <= names
    for f in ("accuracy_vs_skip", "pareto", "layer_skip", "training_curves"):
        assert {f"{f}.png", f"{f}.pdf"} <= names
    for p in out["tables"] + out["figures"]:
        assert Path(p).stat().st_size > 0
    main = pd.read_csv(tmp_path / "tables" / "main.csv")
    router = main[main["method"] == "r1"].iloc[0]
    assert router["paper avg (Llama-3-8B)"] == pytest.approx(69.4)
    assert router["speedup prefill b1x8"] == "1.10x"
    sweep = pd.read_csv(tmp_path / "tables" / "sweep.csv")
    assert set(sweep["family"]) == {"mindskip", "static drop"}
    assert sweep["paper (Llama-3-8B)"].str.startswith("44.6").any()  # paper's MindSkip at 0.25
    training = pd.read_csv(tmp_path / "tables" / "training.csv")
    assert training.iloc[0]["paper avg at this size (Llama-3-8B-Instruct)"] == pytest.approx(63.8)


def test_report_module_does_not_import_torch():
    code = "import sys, mindskip.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
