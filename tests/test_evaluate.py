"""lm-eval scoring: padding-independent routing, dense equivalence, early failure, pairing.

Everything runs offline: a tiny random model (conftest), a character-level tokenizer
built in memory, and a local multiple-choice task written into tmp_path.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml
from conftest import make_model, randomise_routers

from mindskip import (
    MindSkipConfig,
    apply_mindskip,
    mindskip_layers,
    routing_stats,
    set_thresholds,
)

lm_eval = pytest.importorskip("lm_eval")

from mindskip.evaluate import (  # noqa: E402
    Suite,
    SuiteUnavailableError,
    TaskSpec,
    check_suite_available,
    evaluate_model,
    paper_suite,
    read_items,
    run_evaluation,
    subset_indices,
)
from mindskip.evaluate.hflm import DocSeededSampler, MaskedHFLM  # noqa: E402

CHARS = " abcdefghijklmnopqrstuvwxyz0123456789.,?!:;'-\n"
WORDS = ["red", "blue", "green", "cat", "dog", "a big tree", "small", "river", "stone", "sky"]


def char_tokenizer():
    """A character-level fast tokenizer over 50 ids (the tiny model has 97)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {c: i + 4 for i, c in enumerate(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )


def tiny_docs(n: int = 16) -> list[dict]:
    rng = random.Random(0)
    docs = []
    for i in range(n):
        k = 2 + i % 3
        choices = rng.sample(WORDS, k)
        docs.append(
            {"question": f"item {i}: which is {choices[0]}?", "choices": choices, "label": i % k}
        )
    return docs


def write_task(folder, name: str = "tiny_mc", n: int = 16, num_fewshot: int = 0) -> str:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    data = (folder / "data" / f"{name}.jsonl").resolve()
    data.write_text("".join(json.dumps(d) + "\n" for d in tiny_docs(n)))
    cfg = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "q: {{question}}\na:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "num_fewshot": num_fewshot,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    if num_fewshot:
        cfg["fewshot_split"] = "test"  # the item itself is never its own example
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return str(folder.resolve())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    write_task(folder, "tiny_mc2", n=8)
    return write_task(folder)


def tiny_suite(task_dir: str, limit: int | None = None, task: str = "tiny_mc") -> Suite:
    spec = TaskSpec(task, 0, "acc_norm", limit=limit)
    return Suite("tiny", (spec,), include_path=task_dir)


def lls(result) -> list[float]:
    return [x for r in sorted(result.items, key=lambda r: r["doc_id"]) for x in r["loglikelihoods"]]


def prompts(tok, n: int = 16) -> list[str]:
    return [f"q: {d['question']}\na: {c}" for d in tiny_docs(n) for c in d["choices"]]


def calibrate_to_median(model, tok, texts: list[str]) -> None:
    """Per-layer tau = median router score over ``texts`` (so decisions really vary)."""
    enc = tok(texts, return_tensors="pt", padding=True)
    for _ in range(3):  # downstream scores depend on upstream decisions: iterate
        with torch.no_grad():
            model(**enc)
        taus = {i: float(layer.last_scores.median()) for i, layer in mindskip_layers(model).items()}
        set_thresholds(model, taus)


# --------------------------------------------------------------------------- scoring
def test_dense_and_all_execute_mindskip_score_identically(tok, task_dir, tmp_path):
    suite = tiny_suite(task_dir)
    dense = evaluate_model(make_model(), tok, suite, batch_size=8, out_dir=tmp_path / "dense")
    routed_model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    routed = evaluate_model(routed_model, tok, suite, batch_size=8, out_dir=tmp_path / "ms")

    assert lls(dense) == lls(routed)  # bit-identical: zero routers execute everything
    assert dense.scores() == routed.scores()
    row = routed.rows[0]
    assert row["realised_capacity"] == 1.0 and row["realised_skip_ratio"] == 0.0
    assert dense.rows[0]["method"] == "dense" and row["method"] == "mindskip"
    # same base weights -> same model hash (routers are not part of it)
    assert dense.record["model"]["hash"] == routed.record["model"]["hash"]

    # files: tidy record, lm-eval's own JSON, item log
    rec = json.loads((tmp_path / "ms" / "tiny.json").read_text())
    for key in ("task", "metric", "value", "stderr", "n", "num_fewshot", "chance", "method"):
        assert key in rec["rows"][0]
    assert rec["rows"][0]["n"] == 16 and 0.3 < rec["rows"][0]["chance"] < 0.5
    assert rec["routing"]["realised"]["capacity_per_layer"] == {str(i): 1.0 for i in range(1, 5)}
    assert rec["run"]["versions"]["lm_eval"] and rec["routers"]["state_hash"]
    own = json.loads((tmp_path / "ms" / "tiny.lm_eval.json").read_text())
    assert own["tiny_mc"]["results"]["tiny_mc"]["acc_norm,none"] == row["value"]
    items = read_items(tmp_path / "ms" / "tiny.items.jsonl.gz")
    assert [r["doc_id"] for r in items] == list(range(16))
    assert {"loglikelihoods", "pred", "pred_norm", "acc", "acc_norm", "target"} <= set(items[0])
    assert sum(r["acc_norm"] for r in items) / 16 == pytest.approx(row["value"])

    # the two runs' own item files, item by item: no difference at all
    dense_items = read_items(tmp_path / "dense" / "tiny.items.jsonl.gz")
    assert [(r["doc_id"], r["acc_norm"]) for r in items] == [
        (r["doc_id"], r["acc_norm"]) for r in dense_items
    ]


def test_routed_scores_do_not_depend_on_batch_size(tok, task_dir):
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, seed=1)
    calibrate_to_median(model, tok, prompts(tok))
    suite = tiny_suite(task_dir)

    one = evaluate_model(model, tok, suite, batch_size=1)
    eight = evaluate_model(model, tok, suite, batch_size=8)

    caps = one.record["routing"]["realised"]["capacity_per_layer"]
    assert sum(0.0 < c < 1.0 for c in caps.values()) >= 2, caps  # decisions really vary
    assert caps == eight.record["routing"]["realised"]["capacity_per_layer"]
    assert [r["pred"] for r in one.items] == [r["pred"] for r in eight.items]
    assert [r["acc_norm"] for r in one.items] == [r["acc_norm"] for r in eight.items]
    assert one.scores() == eight.scores()
    assert lls(one) == pytest.approx(lls(eight), abs=1e-4)

    # the reason for MaskedHFLM: stock HFLM pools padding into the routing decision
    from lm_eval.models.huggingface import HFLM

    def raw_lls(lm_cls, bs):
        lm = lm_cls(pretrained=model, tokenizer=tok, batch_size=bs)
        ids = [tok(t).input_ids for t in prompts(tok)]
        reqs = [(("", ""), x[:-1], x[-1:]) for x in ids]
        return [ll for ll, _ in lm._loglikelihood_tokens(reqs, disable_tqdm=True)]

    masked_8 = raw_lls(MaskedHFLM, 8)
    assert masked_8 == pytest.approx(raw_lls(MaskedHFLM, 1), abs=1e-4)
    stock_8 = raw_lls(HFLM, 8)
    assert max(abs(a - b) for a, b in zip(stock_8, masked_8, strict=True)) > 1e-3


def test_limit_picks_the_same_items_at_any_batch_size(tok, task_dir):
    suite = tiny_suite(task_dir, limit=6)
    model = make_model()
    a = evaluate_model(model, tok, suite, batch_size=1)
    b = evaluate_model(model, tok, suite, batch_size=4)
    want = subset_indices(16, 6, seed=suite.seed, task="tiny_mc")
    assert [r["doc_id"] for r in a.items] == want == [r["doc_id"] for r in b.items]
    assert a.rows[0]["n"] == 6 and a.rows[0]["subset"] == "spread"
    # nested: the items of a smaller limit are among those of a larger one
    assert set(want) <= set(subset_indices(16, 10, seed=suite.seed, task="tiny_mc"))
    assert subset_indices(16, 6, how="first") == list(range(6))
    assert subset_indices(16, 20) is None


def test_fewshot_prompts_do_not_depend_on_the_limit(tok, tmp_path):
    folder = write_task(tmp_path, "tiny_fs", n=16, num_fewshot=2)
    model = make_model()

    def hashes(limit):
        spec = TaskSpec("tiny_fs", 2, "acc", limit=limit)
        res = evaluate_model(model, tok, Suite("fs", (spec,), include_path=folder), batch_size=8)
        return {r["doc_id"]: r["prompt_hash"] for r in res.items}

    small, large = hashes(4), hashes(10)
    assert set(small) < set(large)
    assert all(small[i] == large[i] for i in small)


def test_fewshot_examples_depend_only_on_the_item():
    pool = [{"q": str(i)} for i in range(30)]
    s1 = DocSeededSampler(pool, rnd=1234)
    s2 = DocSeededSampler(pool, rnd=1234)
    first = [s1.sample(3, eval_doc=d) for d in pool]
    second = [s2.sample(3, eval_doc=d) for d in reversed(pool)][::-1]  # other order
    assert first == second
    assert all(d not in shots for d, shots in zip(pool, first, strict=True))


# --------------------------------------------------------------------------- paper suite
def _no_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


def test_paper_suite_offline_fails_early(monkeypatch, tmp_path, tok):
    _no_hub(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(SuiteUnavailableError, match="offline mode.*embedded"):
        check_suite_available(paper_suite())
    # a job checks before it loads the model: a model path that does not exist is fine
    with pytest.raises(SuiteUnavailableError, match="arc_challenge"):
        run_evaluation(tmp_path / "no-such-model", paper_suite(), tmp_path / "out")
    # and evaluate_model checks before scoring: the model never runs
    model, calls = make_model(), []
    model.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(SuiteUnavailableError):
        evaluate_model(model, tok, "paper")
    assert calls == []


def test_paper_suite_unreachable_hub_fails_early(monkeypatch, tmp_path):
    _no_hub(monkeypatch, tmp_path)
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(SuiteUnavailableError, match="not reachable"):
        check_suite_available(paper_suite(tasks=["boolq"]), timeout=2)
    # a cached dataset needs no hub
    (tmp_path / "hf" / "hub" / "datasets--aps--super_glue").mkdir(parents=True)
    check_suite_available(paper_suite(tasks=["boolq"]), timeout=2)


def test_paper_suite_matches_eval_settings():
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "resources" / "paper" / "eval_settings.csv"
    want = {r["lm_eval_task"]: r for r in csv.DictReader(path.open())}
    suite = paper_suite()
    assert {t.task for t in suite.tasks} == set(want)
    for t in suite.tasks:
        assert (t.num_fewshot, t.metric) == (
            int(want[t.task]["num_fewshot"]),
            want[t.task]["metric"],
        )


def test_embedded_suite_without_task_files_fails_early(tmp_path):
    from mindskip.evaluate import embedded_suite

    with pytest.raises(SuiteUnavailableError, match="mindskip.data prepare"):
        check_suite_available(embedded_suite(tmp_path / "nothing"))
    folder = tmp_path / "moved"
    check_suite_available(tiny_suite(write_task(folder)))
    (folder / "data" / "tiny_mc.jsonl").unlink()  # YAML holds an absolute path
    with pytest.raises(SuiteUnavailableError, match="do not exist"):
        check_suite_available(tiny_suite(str(folder)))


@pytest.mark.parametrize("route_on", ["prompt", "request"])
def test_routing_stats_are_reset_per_task(tok, task_dir, route_on):
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=2))
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7]]))  # stale decisions before evaluation
    suite = tiny_suite(task_dir, limit=4)
    res = evaluate_model(model, tok, suite, batch_size=4, route_on=route_on)
    decisions = res.record["routing"]["realised"]["decisions_per_layer"]
    # prompt: one decision per item (its context); request: one per (context, choice)
    per_item = [len(r["loglikelihoods"]) for r in res.items]
    want = len(per_item) if route_on == "prompt" else sum(per_item)
    assert set(decisions.values()) == {float(want)}
    assert routing_stats(model).capacity == 1.0
    assert res.record["run"]["route_on"] == route_on == res.rows[0]["route_on"]


def test_merge_parts_into_one_record(tok, task_dir, tmp_path):
    from mindskip.evaluate import merge_results

    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=4))
    randomise_routers(model, seed=2)
    meta = {"method": "router", "requested_skip_ratio": 0.25}
    p1 = evaluate_model(model, tok, tiny_suite(task_dir, 5), method=meta, out_dir=tmp_path / "p1")
    suite2 = tiny_suite(task_dir, 3, task="tiny_mc2")
    p2 = evaluate_model(model, tok, suite2, method=meta, out_dir=tmp_path / "p2")
    merged = merge_results([tmp_path / "p1", tmp_path / "p2"], tmp_path / "all", suite="tiny")

    assert [r["task"] for r in merged.rows] == ["tiny_mc", "tiny_mc2"]
    assert len(read_items(tmp_path / "all" / "tiny.items.jsonl.gz")) == 8
    real = merged.record["routing"]["realised"]
    r1, r2 = (p.record["routing"]["realised"] for p in (p1, p2))
    for i, n in real["decisions_per_layer"].items():
        assert n == r1["decisions_per_layer"][i] + r2["decisions_per_layer"][i]
        want = (
            r1["capacity_per_layer"][i] * r1["decisions_per_layer"][i]
            + r2["capacity_per_layer"][i] * r2["decisions_per_layer"][i]
        ) / n
        assert real["capacity_per_layer"][i] == pytest.approx(want)
    assert merged.rows[0]["requested_skip_ratio"] == 0.25
    # parts of another model do not merge
    other = evaluate_model(make_model(seed=5), tok, suite2, method=meta, out_dir=tmp_path / "o")
    assert other.record["model"]["hash"] != p1.record["model"]["hash"]
    with pytest.raises(ValueError, match="model.hash"):
        merge_results([tmp_path / "p1", tmp_path / "o"], tmp_path / "bad", suite="tiny")


def test_heldout_contexts_are_the_unscored_items_in_the_scoring_format(tok, task_dir):
    """Calibration texts in the evaluation's format: exactly the items the seeded subset
    leaves out, as lm-eval builds their contexts; none when every item is scored."""
    from mindskip.evaluate.heldout import heldout_contexts

    suite = tiny_suite(task_dir, limit=6)
    scored = evaluate_model(make_model(), tok, suite, batch_size=4)
    held = heldout_contexts(suite, count=100, seed=suite.seed)
    ids = {h["doc_id"] for h in held}
    assert ids == set(range(16)) - {r["doc_id"] for r in scored.items}
    doc = tiny_docs()[held[0]["doc_id"]]
    assert held[0]["text"] == f"q: {doc['question']}\na:"  # doc_to_text, as scored
    assert [h["doc_id"] for h in heldout_contexts(suite, 3, suite.seed)] == [
        h["doc_id"] for h in held[:3]
    ]  # a smaller count is a prefix: stable
    with pytest.raises(ValueError, match="no task has a calibration part"):
        heldout_contexts(tiny_suite(task_dir, limit=None), count=4, seed=suite.seed)


def test_embedded_suite_takes_the_paper_settings_and_labels():
    import csv
    from pathlib import Path

    from mindskip.evaluate import embedded_suite

    path = Path(__file__).resolve().parents[1] / "resources" / "paper" / "eval_settings.csv"
    want = {f"{r['lm_eval_task']}_embedded": r for r in csv.DictReader(path.open())}
    suite = embedded_suite(tasks=list(want))
    for t in suite.tasks:
        w = want[t.task]
        assert (t.num_fewshot, t.metric, t.label) == (
            int(w["num_fewshot"]),
            w["metric"],
            w["task"],
        )
    shots = embedded_suite(tasks=list(want), num_fewshot={"hellaswag_embedded": 0})
    assert shots.task("hellaswag_embedded").num_fewshot == 0
    assert shots.task("arc_challenge_embedded").num_fewshot == 25
    assert {t.num_fewshot for t in embedded_suite(tasks=list(want), num_fewshot=1).tasks} == {1}
    with pytest.raises(ValueError, match="unknown embedded task"):
        embedded_suite(tasks=["bb_physics", "physics_embedded"])


def test_calibration_contexts_come_from_the_calibration_part_only(tmp_path, monkeypatch):
    """Thresholds are fitted on the tasks' calibration items, in the scoring format, never
    on a scored item or a few-shot example."""
    from mindskip.data import write_task_suite
    from mindskip.data._io import read_jsonl
    from mindskip.evaluate import embedded_suite
    from mindskip.evaluate.heldout import heldout_contexts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rec = write_task_suite(tmp_path, ["piqa", "winogrande"])["tasks"]
    suite = embedded_suite(tmp_path, tasks=["piqa_embedded", "winogrande_embedded"], limit=None)
    got = heldout_contexts(suite, 40, seed=1234)
    assert len(got) == 40 and {c["part"] for c in got} == {"calibration"}
    assert {c["task"] for c in got} == {"piqa_embedded", "winogrande_embedded"}
    goals = {r["goal"] for r in read_jsonl(rec["piqa_embedded"]["splits"]["calibration"]["path"])}
    scored = {r["goal"] for r in read_jsonl(rec["piqa_embedded"]["splits"]["test"]["path"])}
    piqa = [c for c in got if c["task"] == "piqa_embedded"]
    texts = {c["text"].removeprefix("Question: ").removesuffix("\nAnswer:") for c in piqa}
    assert texts <= goals and not texts <= scored  # (PIQA repeats some goals across items)
    for c in got:
        if c["task"] == "piqa_embedded":
            continue
        assert isinstance(c["text"], str) and "_" not in c["text"]  # gold option filled in
