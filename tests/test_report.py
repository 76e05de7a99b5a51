"""Tables, claims and figures from fixture records: no torch, no model."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mindskip.evaluate.items import write_items
from mindskip.records import check_evaluation, check_profile
from mindskip.report import analyse_runs, build_report, eval_frame, load_runs, sweep_points
from mindskip.report.collect import available_items, collect_profiles, layer_frame
from mindskip.report.figures import figure_layer_skip, figure_quality_vs_skip
from mindskip.roles import Roles, write_roles

PAPER = Path(__file__).resolve().parents[1] / "resources" / "paper"
N = 40  # items per task


def _items(task: str, shift: float, wrong: set[int]) -> list[dict]:
    """Three-choice items; the gold is choice 0 unless the item is in ``wrong``; ``shift``
    moves log-likelihood mass off the gold (a method further from dense)."""
    rows = []
    for i in range(N):
        lls = [-1.0 - shift - (2.0 if i in wrong else 0.0), -2.0 - (i % 3) * 0.1, -2.5]
        chars = [10, 10, 10]
        pred = max(range(3), key=lambda k: lls[k] / chars[k])
        rows.append(
            {
                "task": task, "doc_id": i, "filter": "none", "target": 0, "n_choices": 3,
                "loglikelihoods": lls, "choice_chars": chars, "pred": pred, "pred_norm": pred,
                "acc": float(pred == 0), "acc_norm": float(pred == 0), "doc_hash": f"{task}{i}",
            }
        )  # fmt: skip
    return rows


def _record(tmp: Path, spec: dict, shift: float, wrong: dict[str, set[int]], skip: float):
    """An evaluation record (the layout mindskip.evaluate writes) with per-item rows."""
    folder = tmp / spec["name"] / spec["ratio"]
    items, rows = [], []
    for task, bad in wrong.items():
        task_items = _items(task, shift, bad)
        items += task_items
        mean = sum(r["acc_norm"] for r in task_items) / N
        rows.append(
            {
                "task": task, "label": task, "metric": "acc_norm", "filter": "none",
                "value": mean, "stderr": (mean * (1 - mean) / (N - 1)) ** 0.5, "n": N,
                "num_fewshot": 0, "chance": 1 / 3, "realised_skip_ratio": skip,
                "n_available": 10 * N,  # the runner counts the task's scored part
            }
        )  # fmt: skip
    write_items(folder / "embedded.items.jsonl.gz", items)
    cap = {str(i): (0.5 if skip and i % 2 else 1.0) for i in range(13, 29)}
    stats = {"capacity_per_layer": cap, "decisions_per_layer": dict.fromkeys(cap, float(N))}
    ratio = spec["ratio"]
    rec = {
        "rows": rows,
        "method": {
            "method": spec["kind"],
            "spec": spec,
            "requested_skip_ratio": None if ratio == "native" else float(ratio),
        },
        "routing": {
            "realised": {"skip_ratio": skip, "num_layers": 30, **stats},
            "realised_per_task": {t: stats for t in wrong},
        },
        "run": {"route_on": "prompt"},
        "files": {"items": "embedded.items.jsonl.gz"},
    }
    path = folder / "embedded.json"
    path.write_text(json.dumps(rec))
    return path


RUN = {"unit": "attn", "routing": "sequence", "run": "r1", "train_samples": 100}
ROLES = Roles(mindskip="r1", samples={100: "r1"})  # as the plan would choose them


@pytest.fixture
def fixture_results(tmp_path: Path) -> dict[str, list[Path]]:
    none = {"t1": set(), "t2": set()}
    few = {"t1": {1, 2}, "t2": {3}}
    many = {"t1": {1, 2, 5, 7, 9}, "t2": {3, 4, 8, 11}}
    evals = [
        _record(tmp_path, {"name": "dense", "kind": "dense", "ratio": "native"}, 0.0, none, 0),
        _record(tmp_path, {"name": "r1", "kind": "router", "ratio": "native"} | RUN, 0.1, few, 0.2),
        _record(tmp_path, {"name": "r1", "kind": "router", "ratio": "0.250"} | RUN, 0.1, few, 0.25),
        _record(
            tmp_path,
            {"name": "drop-attn-all", "kind": "static", "ratio": "0.250", "unit": "attn",
             "candidates": "all"},
            0.6, many, 0.267,
        ),
    ]  # fmt: skip
    profiles = []
    for ratio, speed, lo, ceiling in (("native", 1.1, 1.05, 1.12), ("0.250", 1.02, 0.97, 1.1)):
        prof = tmp_path / "profile" / "r1" / ratio / "profile.csv"
        prof.parent.mkdir(parents=True)
        regime = {"phase": "prefill", "batch": 1, "prompt_len": 8, "new_tokens": 0}
        common = {**regime, "cache": "dynamic", "skip_ratio": 0.25, "aten_ops": 10}
        common |= {"kv_cache_bytes": -1, "repeats": 5, "method": "r1", "status": "ok"}
        common |= {"threads": 2}
        common |= {"speedup_ci_low": None, "speedup_ci_high": None, "resolved": False}
        rows = [
            {**common, "variant": "dense", "speedup": 1.0},
            {**common, "variant": "mindskip", "speedup": speed, "speedup_ci_low": lo,
             "speedup_ci_high": speed + 0.05, "achieved_vs_ceiling": speed / ceiling,
             "resolved": lo > 1},
            {**common, "variant": "ceiling", "speedup": ceiling, "speedup_ci_low": 1.08,
             "speedup_ci_high": 1.15, "resolved": True},
        ]  # fmt: skip
        pd.DataFrame(rows).to_csv(prof, index=False)
        spec = {"name": "r1", "kind": "router", "ratio": ratio, **RUN}
        record = {"method": {"spec": spec}, "rows": rows, "versions": {}, "environment": {}}
        busy = ratio == "0.250"  # other work shared the CPU while this one was timed
        record["measurement"] = {"loadavg_start": [3.5 if busy else 0.4, 1.0, 1.0]}
        record["measurement"]["loadavg_end"] = [4.2 if busy else 2.1, 1.0, 1.0]
        check_profile(record, prof)  # the schema the profiler writes by
        prof.with_suffix(".json").write_text(json.dumps(record))
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


def test_paired_metrics_in_the_eval_frame(fixture_results):
    runs = load_runs(fixture_results["evals"])
    df = eval_frame(runs, analyse_runs(runs, ROLES))
    r = df[(df["name"] == "r1@0.250") & (df["task"] == "t2")].iloc[0]
    assert r["acc_diff"] == pytest.approx(-1 / N)  # one of 40 items lost
    assert r["flip_loss"] == pytest.approx(1 / N) and r["flip_gain"] == 0
    assert r["kl"] > 0 and r["kl_ci_low"] <= r["kl"] <= r["kl_ci_high"]
    pooled = df[(df["name"] == "r1@0.250") & (df["task"] == "pooled")].iloc[0]
    assert pooled["acc_diff"] == pytest.approx(-3 / (2 * N))
    assert pooled["n"] == 2 * N
    dense = df[df["name"] == "dense@native"]
    assert (dense["kl"] == 0).all() and (dense["acc_diff"] == 0).all()
    drop = df[(df["name"] == "drop-attn-all@0.250") & (df["task"] == "pooled")].iloc[0]
    assert drop["kl"] > pooled["kl"]  # the drop moved more mass off the gold


def test_a_record_without_its_planned_method_is_refused(fixture_results, tmp_path):
    rec = json.loads(fixture_results["evals"][0].read_text())
    del rec["method"]["spec"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="does not record its planned method"):
        load_runs([bad])


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda r: r["rows"][1].pop("n"), "rows.1"),
        (lambda r: r["rows"][0].update(value="0.6"), "rows.0.value"),
        (
            lambda r: r["routing"]["realised"].update(skip_ratio="high"),
            "routing.realised.skip_ratio",
        ),
        (lambda r: r.pop("files"), "(top level)"),
        (lambda r: r.update(rows=[]), "rows"),
    ],
)
def test_a_record_the_report_cannot_read_is_refused_with_its_key(
    fixture_results, tmp_path, change, key
):
    """The fixture records pass the schema the runner writes by (mindskip.records); a
    record without a read key, or with one of the wrong type, is refused by name."""
    rec = json.loads(fixture_results["evals"][1].read_text())
    change(rec)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rec))
    with pytest.raises(
        ValueError, match=re.escape(f"bad.json: not an evaluation record at {key}:")
    ):
        load_runs([bad])


def test_every_committed_evaluation_record_holds_what_the_report_reads():
    records = sorted(Path(__file__).resolve().parents[1].glob("results/**/eval/*/*/*/*.json"))
    records = [p for p in records if not p.name.endswith(".lm_eval.json")]
    assert len(records) > 50
    for path in records:
        check_evaluation(json.loads(path.read_text()), path)


def test_the_items_the_tasks_hold_come_from_the_record_else_the_task_files(tmp_path):
    """Without the count, a comparison more items could not decide would read
    "inconclusive" instead of "not decidable": a missing count is an error, not a blank."""
    rows = [{"task": "piqa_embedded", "n_available": 1638}, {"task": "g", "leaf_tasks": ["a"]}]
    with pytest.raises(FileNotFoundError, match="a.test.jsonl is missing.*prepare"):
        available_items({"rows": rows}, tmp_path)
    (tmp_path / "a.test.jsonl").write_text('{"x": 1}\n{"x": 2}\n\n')
    assert available_items({"rows": rows}, tmp_path) == 1638 + 2
    assert available_items({"rows": []}, tmp_path) is None


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r["rows"][1].pop("status"), "not a profile record at rows.1"),
        (lambda r: r["rows"][1].update(speedup="1.2"), "not a profile record at rows.1.speedup"),
        (lambda r: r["rows"][0].update(variant="fast"), "not a profile record at rows.0.variant"),
        (lambda r: r["rows"][2].update(batch=0), "not a profile record at rows.2.batch"),
        (lambda r: r.update(rows=[]), "not a profile record at rows"),
        (lambda r: r["rows"].pop(), "not the rows of its profile.json"),  # CSV has 3
    ],
)
def test_a_profile_the_speed_tables_cannot_read_is_refused(
    fixture_results, tmp_path, change, error
):
    prof = tmp_path / "p" / "profile.csv"
    prof.parent.mkdir()
    shutil.copy(fixture_results["profiles"][1], prof)
    record = json.loads(fixture_results["profiles"][1].with_suffix(".json").read_text())
    change(record)
    prof.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=re.escape(error)):
        collect_profiles([prof])


def test_a_regime_timed_at_or_below_zero_gives_no_speed_ratio(fixture_results, tmp_path):
    """A decode timed as generate(N) - generate(1) can come out <= 0 on a loaded machine;
    no ratio of that regime is a speed, and the table says so instead of a CI."""
    from mindskip.report.tables import speed_table

    prof = tmp_path / "p" / "profile.csv"
    prof.parent.mkdir()
    shutil.copy(fixture_results["profiles"][0].with_suffix(".json"), prof.with_suffix(".json"))
    df = pd.read_csv(fixture_results["profiles"][0])
    df["time_s_min"] = [0.2, -0.01, 0.1]  # the routed variant's fastest repeat: not a time
    df.to_csv(prof, index=False)
    evals = pd.DataFrame(columns=["task", "method", "ratio", "realised_skip_ratio"])
    _, shown = speed_table(collect_profiles([prof]), evals)
    assert shown.iloc[0]["speedup [95% CI]"].startswith("no measurement: a decode time <= 0")
    df["time_s_min"] = [0.2, 0.1, 0.1]
    df.to_csv(prof, index=False)
    _, shown = speed_table(collect_profiles([prof]), evals)
    assert shown.iloc[0]["speedup [95% CI]"] == "1.10x [1.05, 1.15]"


def test_the_speed_table_names_the_machine_each_profile_ran_on(fixture_results, tmp_path):
    """Profiles taken on two machines stand in one table: each row says which CPU (or
    GPU) timed it."""
    from mindskip.report.tables import speed_table

    evals = pd.DataFrame(columns=["task", "method", "ratio", "realised_skip_ratio"])
    paths = []
    for name, env in {"a": {"cpu": "AMD EPYC"}, "b": {"cpu": "Xeon", "gpu": "H100"}}.items():
        prof = tmp_path / name / "profile.csv"
        prof.parent.mkdir()
        shutil.copy(fixture_results["profiles"][0], prof)
        record = json.loads(fixture_results["profiles"][0].with_suffix(".json").read_text())
        record["environment"] = env
        prof.with_suffix(".json").write_text(json.dumps(record))
        paths.append(prof)
    _, shown = speed_table(collect_profiles(paths), evals)
    assert list(shown["machine"]) == ["AMD EPYC", "Xeon"]  # CPU rows: the CPU, not the GPU


def test_every_committed_profile_record_holds_what_the_speed_tables_read():
    records = sorted(Path(__file__).resolve().parents[1].glob("results/**/profile.json"))
    assert records
    for path in records:
        check_profile(json.loads(path.read_text()), path)
    assert len(collect_profiles([p.with_suffix(".csv") for p in records])) > 0


def test_the_profiler_writes_no_record_the_speed_tables_cannot_read(tmp_path):
    from mindskip.profile.output import write_results

    class Result:  # what write_results reads of a ProfileResult
        env = {"model": "m", "gpu": None, "device": "cpu", "dtype": "float32"}
        stamp = {"versions": {}, "environment": {"torch_threads": 1}}
        record: dict = {}
        config: dict = {}
        rows = [{"variant": "dense", "phase": "prefill"}]  # no speed, no regime

    with pytest.raises(ValueError, match="not a profile record at rows.0"):
        write_results(Result(), tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_runner_writes_no_record_the_report_cannot_read(fixture_results, tmp_path):
    from mindskip.evaluate.runner import EvalResult, write_result

    rec = json.loads(fixture_results["evals"][1].read_text())
    del rec["rows"][0]["metric"]
    with pytest.raises(ValueError, match="not an evaluation record at rows.0"):
        write_result(EvalResult(rec, [], {}), tmp_path / "out", "embedded")
    assert not (tmp_path / "out").exists()  # nothing written


def test_sweep_has_one_point_per_method_and_ratio(fixture_results, tmp_path):
    many = {"t1": {1, 2, 5}, "t2": {3, 4}}
    spec = {"name": "r1", "kind": "router", "ratio": "0.500", **RUN}
    extra = _record(tmp_path / "more", spec, 0.3, many, 0.5)
    runs = load_runs([*fixture_results["evals"], extra])
    points = sweep_points(eval_frame(runs, analyse_runs(runs, ROLES)))
    router = points[points["kind"] == "router"].set_index("ratio")
    assert sorted(router.index) == ["0.250", "0.500"]
    assert router.loc["0.500", "acc_diff"] == pytest.approx(-5 / (2 * N))
    assert router.loc["0.500", "realised_skip_ratio"] == pytest.approx(0.5)
    assert len(points[points["kind"] == "static"]) == 1


def test_claims_table_decides_claim_4_and_says_what_did_not_run(fixture_results, tmp_path):
    build_report(
        ROLES, fixture_results["evals"], fixture_results["profiles"], fixture_results["metrics"],
        PAPER, tmp_path / "tables", tmp_path / "figures", model_name="tiny",
    )  # fmt: skip
    claims = pd.read_csv(tmp_path / "tables" / "claims.csv")
    c4 = claims[(claims["claim"] == 4) & claims["comparison"].str.contains("all layers")]
    row = c4[c4["comparison"].str.contains("0.25")].iloc[0]
    assert row["verdict"] == "holds"  # the router's KL is lower, its CI excludes 0
    assert row["value"] < 0 and row["ci_high"] < 0
    not_run = claims[claims["claim"].isin([2, 3, 5, 6])]
    assert (not_run["verdict"] == "not run").all()
    assert not_run["note"].str.len().min() > 10  # each names the edit that would run it
    for col in ("value", "ci_low", "ci_high", "n", "mde"):
        assert pd.api.types.is_numeric_dtype(claims[col]), col
    md = (tmp_path / "tables" / "claims.md").read_text()
    assert "holds" in md and "[" in md
    # a missing claim-4 row may be planned and unfinished: the roles cannot tell, so the
    # note names both the edit and resuming
    missing = claims[(claims["claim"] == 4) & (claims["verdict"] == "not run")]
    assert len(missing) and missing["note"].str.contains("; to run it: ").all()
    assert missing["note"].str.contains("where the config has it already, resume the").all()


def test_a_planned_run_that_has_not_finished_is_not_asked_for_again(fixture_results, tmp_path):
    """A claim whose runs the plan names but whose records are missing says the runs have
    not finished (resume), not that the config should be edited to add them."""
    roles = Roles(
        mindskip="r1", units={"mlp": "m1"}, token="t1", samples={100: "r1", 500: "r5"},
        lora_routers="lr", lora="lora-a",
    )  # fmt: skip
    analysis = analyse_runs(load_runs(fixture_results["evals"]), roles)
    notes = {(c.claim, c.label): c.note for c in analysis.comparisons if c.a is None}
    planned = {
        (2, "attention vs mlp (sequence routing)"): "m1",
        (3, "attention: sequence vs token routing"): "t1",
        (5, "quality vs train_samples"): "r5",
        (6, "LoRA + routers vs LoRA"): "lr",
    }
    for key, run in planned.items():
        assert notes[key].startswith(f"planned ({run}) but not finished"), notes[key]
        assert "resume the workflow" in notes[key] and "add" not in notes[key]
    block = notes[(2, "attention vs block (sequence routing)")]  # not in the plan
    assert block.startswith("no such router run; to run it: add")
    # the 500-sample run has scored natively, not yet at the swept ratio
    spec = {"name": "r5", "kind": "router", "ratio": "native"} | RUN
    r5 = _record(
        tmp_path, spec | {"run": "r5", "train_samples": 500}, 0.1, {"t1": set(), "t2": set()}, 0.2
    )
    analysis = analyse_runs(load_runs([*fixture_results["evals"], r5]), roles)
    (c5,) = [c for c in analysis.comparisons if c.claim == 5]
    assert c5.note.startswith("no swept ratio scored for every count yet; to run it: set")
    assert "resume the workflow" in c5.note


def test_tables_hold_numbers_and_the_markdown_the_strings(fixture_results, tmp_path):
    out = build_report(
        ROLES, fixture_results["evals"], fixture_results["profiles"], fixture_results["metrics"],
        PAPER, tmp_path / "tables", tmp_path / "figures", model_name="tiny",
    )  # fmt: skip
    names = {Path(p).name for p in out["tables"] + out["figures"]}
    for t in ("main", "sweep", "claims", "metrics", "layers", "training", "speed", "paper_main"):
        assert {f"{t}.csv", f"{t}.md", f"{t}.tex"} <= names
    for t in ("main", "sweep", "metrics", "speed"):
        csv = (tmp_path / "tables" / f"{t}.csv").read_text()
        assert "±" not in csv and "not resolved" not in csv, t
    main = pd.read_csv(tmp_path / "tables" / "main.csv")
    assert {"value", "stderr", "n", "acc_diff", "acc_diff_ci_low", "kl_ci_high"} <= set(main)
    md = (tmp_path / "tables" / "main.md").read_text()
    assert "69.4" in md  # the paper's attention/sequence row beside ours
    assert "1.10x [1.05, 1.15]" in md  # a resolved speedup, with its CI
    sweep_md = (tmp_path / "tables" / "sweep.md").read_text()
    assert "not resolved [0.97, 1.07]" in sweep_md  # a CI spanning 1.0 gives no ratio
    assert "44.6" in sweep_md  # the paper's MindSkip at 0.25
    speed = pd.read_csv(tmp_path / "tables" / "speed.csv")
    flags = speed.set_index("ratio")["skip_ratios_differ"]
    assert bool(flags["native"]) and not bool(flags["0.250"])  # 0.25 profiled vs 0.2 scored
    speed_md = (tmp_path / "tables" / "speed.md").read_text()
    assert "| 0.4-2.1 / 2 " in speed_md and "| 3.5-4.2 / 2 " in speed_md  # the load it ran under
    training = pd.read_csv(tmp_path / "tables" / "training.csv")
    assert training.iloc[0]["paper avg at this size (Llama-3-8B-Instruct)"] == pytest.approx(63.8)


def test_figures_draw_every_method_with_its_interval(fixture_results, tmp_path):
    runs = load_runs(fixture_results["evals"])
    ev = eval_frame(runs, analyse_runs(runs, ROLES))
    paths, drawn = figure_quality_vs_skip(ev, tmp_path, "t")
    labels = {d["label"] for d in drawn}
    assert {"MindSkip: attention, sequence", "attention drop (similarity, all layers)"} <= labels
    assert all(p.stat().st_size > 1000 for p in paths)
    paths, drawn = figure_layer_skip(layer_frame(runs), tmp_path, "t")
    assert [d["name"] for d in drawn] == ["r1@native", "r1@0.250"]
    assert math.isclose(drawn[0]["overall"], 0.25)  # half the layers at c = 0.5
    assert drawn[0]["grid"][0][:2] == [0.5, 0.0]  # layer 13 skips half, layer 14 never


def test_report_module_does_not_import_torch():
    code = "import sys, mindskip.report; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_of_what_has_finished_under_a_results_root(fixture_results, tmp_path, capsys):
    """``python -m mindskip.report --results ROOT`` finds the finished files by layout."""

    from mindskip.report import TABLES
    from mindskip.report.__main__ import main

    root = tmp_path / "root"
    for p in fixture_results["evals"]:
        dest = root / "eval" / "m" / p.parent.parent.name / p.parent.name
        shutil.copytree(p.parent, dest)
    for p in fixture_results["profiles"]:
        shutil.copytree(p.parent, root / "profile" / "m" / "r1" / p.parent.name)
    (root / "routers" / "m" / "r1").mkdir(parents=True)
    shutil.copy(fixture_results["metrics"][0], root / "routers" / "m" / "r1" / "metrics.json")
    with pytest.raises(SystemExit):  # no roles.json: which runs the claims compare is unknown
        main(["--results", str(root), "--model", "m"])
    assert "roles.json" in capsys.readouterr().err
    write_roles(ROLES, root / "plan" / "m" / "roles.json")
    assert main(["--results", str(root), "--model", "m"]) == 0
    assert "report of 4 evaluations, 2 profiles, 1 runs" in capsys.readouterr().out
    for name in TABLES:
        assert (root / "tables" / f"{name}.csv").stat().st_size > 0
    assert "drop-attn-all" in (root / "tables" / "metrics.csv").read_text()
    with pytest.raises(SystemExit):
        main(["--results", str(tmp_path / "empty")])  # nothing finished: a clear error


def test_tables_do_not_depend_on_the_order_of_the_inputs(fixture_results, tmp_path):
    from mindskip.report import build_report

    paper = Path(__file__).resolve().parents[1] / "resources" / "paper"
    out = {}
    for name, order in (("a", 1), ("b", -1)):
        files = {k: list(v)[::order] for k, v in fixture_results.items()}
        build_report(ROLES, **files, paper_dir=paper, tables_dir=tmp_path / name / "t",
                     figures_dir=tmp_path / name / "f")  # fmt: skip
        out[name] = {p.name: p.read_bytes() for p in (tmp_path / name / "t").iterdir()}
    assert out["a"] == out["b"] and len(out["a"]) >= 8 * 3


def test_the_paper_s_rows_sit_under_our_task_columns_and_dense_beside_published(tmp_path):
    """Our tasks carry lm-eval's names (``piqa_embedded`` is lm-eval's ``piqa``): the main
    table gives the paper's number for each under the same column, and the dense table
    puts the scores published for the embedded model beside ours."""
    tasks = {"piqa_embedded": set(), "hellaswag_embedded": {1}}
    evals = [
        _record(tmp_path, {"name": "dense", "kind": "dense", "ratio": "native"}, 0.0, tasks, 0),
        _record(tmp_path, {"name": "r1", "kind": "router", "ratio": "native"} | RUN, 0.1,
                tasks, 0.2),
    ]  # fmt: skip
    build_report(
        ROLES, evals, [], [], PAPER, tmp_path / "t", tmp_path / "f", model_name="smollm2-135m"
    )
    main = (tmp_path / "t" / "main.md").read_text()
    row = next(x for x in main.splitlines() if "paper Llama-3-8B: attn/sequence" in x)
    cells = [c.strip() for c in row.split("|")]
    header = [c.strip() for c in main.splitlines()[2].split("|")]
    assert cells[header.index("piqa_embedded (acc_norm, n=40)")] == "80.5"
    assert cells[header.index("hellaswag_embedded (acc_norm, n=40)")] == "80.7"
    assert any("paper Llama-3-8B: dense" in x for x in main.splitlines())
    assert not any("block/" in x for x in main.splitlines())  # only the units we show
    dense = pd.read_csv(tmp_path / "t" / "dense.csv")
    assert list(dense["task"]) == ["piqa_embedded", "hellaswag_embedded"]
    md = (tmp_path / "t" / "dense.md").read_text()
    assert "66.3" in md and "40.9" in md  # the model card's PIQA and HellaSwag


def test_the_results_readme_takes_its_numbers_from_the_tables(tmp_path):
    from mindskip.report.readme import results_readme

    tasks = {"piqa_embedded": {1, 2, 3}, "hellaswag_embedded": {1}}
    evals = [
        _record(tmp_path, {"name": "dense", "kind": "dense", "ratio": "native"}, 0.0, tasks, 0)
    ]
    root = tmp_path / "results"
    tables, figures = root / "tables", root / "figures"
    build_report(ROLES, evals, [], [], PAPER, tables, figures, model_name="smollm2-135m")
    bench = root / "logs" / "benchmarks" / "eval"
    bench.mkdir(parents=True)
    (bench / "x.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")
    config = {"eval": {"tasks": list(tasks), "limit": 40, "num_fewshot": 0}}
    text = results_readme(root, config, "smollm2-135m", Path("config.yaml"))
    dense = pd.read_csv(root / "tables" / "dense.csv").set_index("task")["value"]
    piqa = 100 * dense["piqa_embedded"]
    assert f"- PIQA: ours {piqa:.1f} ± " in text
    assert f", published 66.3 ({piqa - 66.3:+.1f} points, " in text
    assert "| eval | 1 | 12 |" in text  # job seconds per stage, from the benchmark TSVs
    assert "`piqa_embedded` (40 items)" in text and "0-shot" in text
    assert "git show c8a2c95" in text  # where the removed BIG-bench results still are
    assert "The config is `config.yaml`" in text
    # another results root (a second model's run): its own config, no BIG-bench history
    other = root.rename(tmp_path / "gemma3")
    text = results_readme(other, config, "gemma3-270m", Path("config/gemma3.yaml"))
    assert "The config is `config/gemma3.yaml`" in text and "git show" not in text
    assert f"--results {other}`" in text


def test_the_matrix_readme_counts_what_has_finished_against_the_plan(tmp_path, monkeypatch):
    """results/full's README says how many of the plan's jobs have written their result,
    names the scorings that have not, and reads "complete" only when every one has."""
    from mindskip.plan import plan
    from mindskip.report.readme import full_readme, workflow_config

    repo = Path(__file__).resolve().parents[1]
    config = workflow_config(repo / "config" / "full.yaml", repo / "config.yaml")
    monkeypatch.chdir(tmp_path)
    config["results"] = "results/full"
    p = plan(config)
    root = Path(p.paths.root)
    done = p.eval_jobs[:3]
    for m, r in done:
        Path(p.paths.eval(m, r)).parent.mkdir(parents=True)
        Path(p.paths.eval(m, r)).write_text("{}")
    text = full_readme(root, config, "smollm2-135m", Path("config/full.yaml"))
    assert text.startswith("# The whole matrix (smollm2-135m, the paper's tasks offline): in ")
    assert f"| scorings | 3 | {len(p.eval_jobs)} |" in text
    assert f"| router trainings | 0 | {len(p.runs)} |" in text
    m, r = p.eval_jobs[3]
    assert f"`{m}@{r}`" in text and f"`{done[0][0]}@{done[0][1]}`" not in text
    assert "bash scripts/run.sh --configfile config/full.yaml" in text
    files = [Path(p.paths.eval(m, r)) for m, r in p.eval_jobs]
    files += [Path(p.paths.profile(m, r)) for m, r in p.profile_jobs]
    files += [p.paths.routers(run).metrics for run in p.runs]
    files += [p.paths.lora(slug).metrics for slug in p.loras]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
    text = full_readme(root, config, "smollm2-135m", Path("config/full.yaml"))
    assert ": complete" in text.splitlines()[0] and "not finished:" not in text


def test_the_findings_say_no_more_than_the_claims_table(tmp_path):
    """Every number in the findings is a number of the claims table, and each sentence's
    wording follows from the row's verdict (a CI across the bound is "not resolved")."""
    import re

    from mindskip.report.findings import findings
    from mindskip.verdicts import Comparison, analyse, format_claims

    rng = np.random.default_rng(1)
    dense = [
        {"task": "t", "doc_id": i, "filter": "none", "target": 0, "acc": 1.0,
         "loglikelihoods": [float(x) for x in rng.normal(size=2)], "choice_chars": [1, 1],
         "doc_hash": f"h{i}", "acc_norm": 1.0}
        for i in range(80)
    ]  # fmt: skip
    for r in dense:
        r["acc"] = r["acc_norm"] = float(r["loglikelihoods"][0] > r["loglikelihoods"][1])

    def moved(scale):
        out = []
        for r in dense:
            lls = list(np.array(r["loglikelihoods"]) + rng.normal(scale=scale, size=2))
            ok = float(lls[0] > lls[1])
            out.append(r | {"loglikelihoods": lls, "acc": ok, "acc_norm": ok})
        return out

    runs = {"dense": dense, "near": moved(0.05), "far": moved(2.0)}
    comparisons = [
        Comparison(4, "near vs far", "near", "far", "dense", ratio_a=0.2, ratio_b=0.21),
        Comparison(1, "far vs dense", "far", "dense", "dense", "noninferior", "acc_diff", 0.005),
        Comparison(3, "far vs near", "far", "near", "dense"),
    ]
    table = analyse(runs, "dense", comparisons=comparisons, n_boot=300, available=100).claims
    text = "\n".join(findings(table))
    shown = format_claims(table).to_csv(index=False) + table.to_csv(index=False)
    bullets = "\n".join(x for x in text.splitlines() if x.startswith("- "))  # not the paper's
    for number in re.findall(r"[+-]?\d+\.\d+", bullets):
        assert number in shown, number
    verdicts = dict(zip(table["comparison"], table["verdict"], strict=True))
    assert verdicts["near vs far"] == "holds" and "**holds**" in text
    assert verdicts["far vs near"] == "contradicted" and "**contradicted**" in text
    line = next(x for x in text.splitlines() if x.startswith("- far vs dense"))
    if verdicts["far vs dense"] in ("inconclusive", "not decidable at this n"):
        assert "holds" not in line and "items would decide it" in line


def test_every_router_row_meets_the_static_frontier_in_the_recipes_table(fixture_results, tmp_path):
    from mindskip.report.readme import recipes_readme

    root = tmp_path / "results"
    build_report(
        ROLES, fixture_results["evals"], fixture_results["profiles"], fixture_results["metrics"],
        PAPER, root / "tables", root / "figures", model_name="tiny",
    )  # fmt: skip
    recipes = pd.read_csv(root / "tables" / "recipes.csv")
    # r1 at 0.25 (realised 0.25) against static drop at 0.267 mixed with dense
    (row,) = recipes.itertuples(index=False)
    assert row.a == "r1@0.250" and row.ratio_a == pytest.approx(0.25)
    assert row.weight == pytest.approx(0.25 / 0.267, rel=1e-3)
    config = {"eval": {"tasks": ["t1", "t2"], "limit": 10, "num_fewshot": 0}}
    text = recipes_readme(root, config, "tiny", Path("config/authors.yaml"))
    assert f"{row.value:+.4f} [{row.ci_low:+.4f}, {row.ci_high:+.4f}]: **{row.verdict}**" in text


def _claims_rows(rows: list[tuple[int, bool, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["claim", "decides", "verdict"])


def test_each_models_verdicts_stand_beside_the_paper():
    """One row per claim, a column per model: the claim's combined verdict there and how
    many of its deciding comparisons ran (context rows do not count); a model without a
    claims table reads "not run"; the agreement line follows the verdicts."""
    from mindskip.report.findings import verdicts_per_model
    from mindskip.verdicts import CLAIMS

    a = _claims_rows(
        [(1, True, "contradicted"), (2, True, "holds"), (2, True, "holds"), (4, False, "holds")]
        + [(4, True, "contradicted"), (5, True, "not run")]
    )
    b = _claims_rows([(1, True, "holds"), (2, True, "holds"), (4, True, "contradicted")])
    lines = verdicts_per_model({"a": a, "b": b, "c": None})
    assert lines[0] == "| claim | title | the paper | a | b | c |"
    rows = {int(x.split("|")[1]): [c.strip() for c in x.split("|")[4:-1]] for x in lines[2:8]}
    assert rows[1] == ["contradicted (1 of 1)", "holds (1 of 1)", "not run"]
    assert rows[2] == ["holds (2 of 2)", "holds (1 of 1)", "not run"]
    assert rows[3] == ["not run", "not run", "not run"]
    assert rows[4] == ["contradicted (1 of 1)", "contradicted (1 of 1)", "not run"]
    assert rows[5] == ["not run (0 of 1)", "not run", "not run"]
    assert CLAIMS[0].paper in lines[2]
    text = "\n".join(lines)
    # c has run nothing: no claim holds or is contradicted at every model
    assert "holds at every model): claims none." in text
    assert "Contradicted at every model: claims none." in text
    two = "\n".join(verdicts_per_model({"a": a, "b": b}))
    assert "holds at every model): claims 2." in two
    assert "Contradicted at every model: claims 4." in two
    assert "the models differ): claims 1, 3, 5, 6." in two


def test_the_matrix_readme_reads_the_other_models_from_their_configs(tmp_path, monkeypatch):
    """`--also config/full-gemma3.yaml`: the README reads that matrix's own results root
    and model name from its config, says where its README is and how to resume it; the
    option is refused for a README that is not the matrix's, and a missing config is
    named before anything is written."""
    import shutil

    from mindskip.report.readme import full_readme, main, workflow_config

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "config").mkdir()
    shutil.copy(repo / "config.yaml", tmp_path / "config.yaml")
    for name in ("full.yaml", "full-gemma3.yaml"):
        shutil.copy(repo / "config" / name, tmp_path / "config" / name)
    monkeypatch.chdir(tmp_path)
    gemma = Path("results/full-gemma3/tables")
    gemma.mkdir(parents=True)
    _claims_rows([(1, True, "holds")]).to_csv(gemma / "claims.csv", index=False)
    config = workflow_config(Path("config/full.yaml"))
    root = Path(config["results"])
    text = full_readme(
        root,
        config,
        "smollm2-135m",
        Path("config/full.yaml"),
        also=(Path("config/full-gemma3.yaml"),),
    )
    assert "## Verdicts per model" in text
    assert "| claim | title | the paper | smollm2-135m | gemma3-270m |" in text
    assert "| not run | holds (1 of 1) |" in text  # claim 1: no table here yet
    assert (
        "- gemma3-270m: `results/full-gemma3/README.md` (in progress; resume: "
        "`bash scripts/run.sh --configfile config/full-gemma3.yaml`)."
    ) in text
    assert "## Verdicts per model" not in full_readme(
        root, config, "smollm2-135m", Path("config/full.yaml")
    )
    for argv in (
        ["--kind", "default", "--also", "config/full-gemma3.yaml"],
        ["--kind", "full", "--config", "config/full.yaml", "--also", "config/nope.yaml"],
    ):
        with pytest.raises(SystemExit) as stop:
            main(["--results", str(root), *argv])
        assert stop.value.code == 2
    assert not (root / "README.md").exists()


def test_a_claim_with_the_papers_speedup_gets_its_measured_speed_beside_it():
    """Claims 1 and 6 quote the paper's 1.21x: the findings give the speed table's rows of
    the claim's first deciding method at its ratio (its speedup and the hand-removed
    ceiling's, "not resolved" where the CI spans 1.0), say when it was not profiled, and
    never compare a regime whose decode time was not positive."""
    from mindskip.report.findings import speed_sentence
    from mindskip.verdicts import CLAIMS

    one, two = CLAIMS[0], CLAIMS[1]
    rows = pd.DataFrame(
        [
            ("r@0.125", False, "holds"),  # context: not the claim's method
            ("r@0.250", True, "contradicted"),
        ],
        columns=["a", "decides", "verdict"],
    )

    def regime(name, s, lo, hi, c, clo, chi, bad=False):
        return {
            "method": "r", "ratio": "0.250", "regime": name, "speedup": s,
            "speedup_ci_low": lo, "speedup_ci_high": hi, "ceiling_speedup": c,
            "ceiling_ci_low": clo, "ceiling_ci_high": chi, "time_not_positive": bad,
            "device": "cpu", "threads": 2, "repeats": 6,
        }  # fmt: skip

    speed = pd.DataFrame(
        [
            regime("prefill b8x256", 1.03, 0.95, 1.11, 1.10, 1.03, 1.15),
            regime("decode b8x128+16", 1.25, 1.10, 1.40, 1.30, 1.20, 1.45),
        ]
    )
    text = speed_sentence(one, rows, speed)
    assert text.startswith("Speed (the paper: 1.21x over dense) of `r` at 0.250, against dense")
    assert "(cpu, 2 threads, 6 repeats)" in text
    assert "prefill b8x256 not resolved [0.95, 1.11] (removed by hand: 1.10x [1.03, 1.15])" in text
    assert "decode b8x128+16 1.25x [1.10, 1.40] (removed by hand: 1.30x [1.20, 1.45])" in text
    speed.loc[1, "time_not_positive"] = True
    assert "decode b8x128+16 no measurement" in speed_sentence(one, rows, speed)
    assert "no speed profile of it" in speed_sentence(one, rows, speed.assign(ratio="native"))
    assert "no speed profile of it" in speed_sentence(one, rows, None)
    assert speed_sentence(two, rows, speed) == ""  # the paper gives no speedup for it
    unrun = rows.assign(verdict="not run")
    assert speed_sentence(one, unrun, speed) == ""
