"""Routing on the prompt: shared-prefix scoring, cache expansion, the lm-eval model.

``route_on="prompt"`` prefills each context once (routing decisions are made and stored
there) and scores every choice on that cache; ``"request"`` is lm-eval's per-request path.
Tiny random models (conftest) for the mechanics, one test on the embedded SmolLM2 when
its assets are built, and one run of lm-eval's own command line in a subprocess.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model, randomise_routers
from transformers import DynamicCache, LlamaForCausalLM

from mindskip import (
    MindSkipConfig,
    apply_mindskip,
    mindskip_layers,
    save_routers,
    set_thresholds,
)
from mindskip.surgery import select_cache_rows

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from test_evaluate import char_tokenizer, tiny_docs, write_task  # noqa: E402

from mindskip.evaluate import Suite, TaskSpec, evaluate_model  # noqa: E402
from mindskip.evaluate.hflm import MindSkipLM  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
ROOT = Path(__file__).resolve().parents[1]


_CACHE_KW = (  # the cache keyword of this transformers: ``cache`` from 5.2x, else the old name
    "cache"
    if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters
    else "past_key_values"
)


def cached(cache) -> dict:
    return {_CACHE_KW: cache, "use_cache": True}


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def requests_for(docs: list[dict], shots: str = "") -> list[Instance]:
    """One loglikelihood request per (item, choice), as lm-eval builds them."""
    out = []
    for d in docs:
        ctx = f"{shots}q: {d['question']}\na:"
        for j, c in enumerate(d["choices"]):
            out.append(Instance("loglikelihood", d, (ctx, f" {c}"), j))
    return out


def scores(lm_cls, model, tok, reqs, **kw) -> tuple[list[tuple[float, bool]], object]:
    lm = lm_cls(pretrained=model, tokenizer=tok, **{"batch_size": 4, **kw})
    return lm.loglikelihood(reqs, disable_tqdm=True), lm


def routed_model(unit: str = "attn", routing: str = "sequence", seed: int = 1):
    """A routed tiny model whose per-layer tau is the median router score over the tiny
    contexts, so that some contexts skip a layer and others execute it."""
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, routing=routing, num_routed=4))
    randomise_routers(model, seed=seed, scale=3.0)
    tok = char_tokenizer()
    texts = [f"q: {d['question']}\na:" for d in tiny_docs(16)]
    enc = tok(texts, return_tensors="pt", padding=True)
    for _ in range(3):  # downstream scores depend on upstream decisions: iterate
        with torch.no_grad():
            model(**enc)
        taus = {}
        for i, layer in mindskip_layers(model).items():
            s = layer.last_scores.sort().values  # tau between the middle two: no score on it
            taus[i] = float(s[len(s) // 2 - 1 : len(s) // 2 + 1].mean())
        set_thresholds(model, taus)
    return model


def mixed(signatures) -> bool:
    """Some layer is skipped by some sequences and executed by others."""
    sigs = [s for s in signatures if s is not None]
    return any(len({s[k] for s in sigs}) == 2 for k in range(len(sigs[0])))


# --------------------------------------------------------------------------- cache rows
@torch.no_grad()
@pytest.mark.parametrize("unit", ["attn", "block", "mlp"])
def test_select_cache_rows_equals_prefilling_those_rows(unit):
    model = apply_mindskip(make_model(), MindSkipConfig(unit=unit, num_routed=4))
    randomise_routers(model, seed=1, scale=3.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, 90, (3, 7), generator=g)
    y = torch.randint(3, 90, (6, 4), generator=g)
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    cache = DynamicCache(config=model.config)
    model(x, **cached(cache))
    decisions = {i: layer.last_exec.clone() for i, layer in mindskip_layers(model).items()}
    assert any(d.any() and not d.all() for d in decisions.values()), "need mixed decisions"
    rows_before = [None if lay.keys is None else lay.keys.shape[0] for lay in cache.layers]

    expanded = select_cache_rows(model, cache, index)
    got = model(y, **cached(expanded)).logits
    ref_cache = DynamicCache(config=model.config)
    model(x[index], **cached(ref_cache))
    want = model(y, **cached(ref_cache)).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)

    stored = expanded._mindskip_decisions
    for i, d in decisions.items():
        assert torch.equal(stored[i].mask, d[index])  # decisions follow their rows
    # the prefix cache is untouched (its rows can be expanded again)
    assert [None if lay.keys is None else lay.keys.shape[0] for lay in cache.layers] == rows_before
    with pytest.raises(IndexError):
        select_cache_rows(model, cache, [3])


# --------------------------------------------------------------------------- dense
@pytest.mark.parametrize("attn,pack", [("sdpa", None), ("sdpa", False), ("eager", True)])
def test_dense_prompt_equals_request_and_stock_hflm(tok, attn, pack):
    model = make_model(attn=attn)
    shots = "q: which is red?\na: red\n\nq: which is sky?\na: sky\n\n"  # a few-shot context
    reqs = requests_for(tiny_docs(10), shots=shots)
    reqs.append(Instance("loglikelihood", {}, ("", "red"), 0))  # empty context: BOS prefix
    prompt, lm = scores(MindSkipLM, model, tok, reqs, route_on="prompt", pack_choices=pack)
    request, _ = scores(MindSkipLM, model, tok, reqs, route_on="request")
    stock, _ = scores(HFLM, model, tok, reqs)
    for a, b, c in zip(prompt, request, stock, strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-4) and a[0] == pytest.approx(c[0], abs=1e-4)
        assert a[1] == b[1] == c[1]
    assert lm.forward_calls < len(reqs) // 2  # the contexts ran once per item, batched

    # truncation to max_length from the left: each choice sees lm-eval's window
    cut = [Instance("loglikelihood", {}, (r.args[0] * 3, r.args[1]), 0) for r in reqs[:12]]
    short, _ = scores(MindSkipLM, model, tok, cut, route_on="prompt", max_length=24)
    stock_short, _ = scores(HFLM, model, tok, cut, max_length=24)
    assert [s[0] for s in short] == pytest.approx([s[0] for s in stock_short], abs=1e-4)


@pytest.mark.parametrize("unit", ["attn", "block"])
def test_static_drop_prompt_equals_request(tok, unit):
    """Hand-removed sublayers (static drop) write no cache for those layers either."""
    from mindskip import remove_sublayers

    model = remove_sublayers(make_model(), [2, 4], unit)
    reqs = requests_for(tiny_docs(6))
    prompt, _ = scores(MindSkipLM, model, tok, reqs, route_on="prompt")
    request, _ = scores(MindSkipLM, model, tok, reqs, route_on="request")
    assert [p[0] for p in prompt] == pytest.approx([r[0] for r in request], abs=1e-4)


def test_rolling_loglikelihood_keeps_the_stock_path(tok):
    model = make_model()
    reqs = [Instance("loglikelihood_rolling", {}, ("the cat and the dog by the river",), 0)]
    lm = MindSkipLM(pretrained=model, tokenizer=tok, batch_size=2, route_on="prompt")
    stock = HFLM(pretrained=model, tokenizer=tok, batch_size=2)
    got = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    assert got == pytest.approx(stock.loglikelihood_rolling(reqs, disable_tqdm=True), abs=1e-4)


# --------------------------------------------------------------------------- routed
@torch.no_grad()
def _by_hand(model, ctx: list[int], cont: list[int]) -> float:
    """Prefill the context with a cache, then run the continuation tokens on it."""
    cache = DynamicCache(config=model.config)
    last = model(torch.tensor([ctx]), **cached(cache)).logits[0, -1]
    total = last.log_softmax(-1)[cont[0]]
    if len(cont) > 1:
        logits = model(torch.tensor([cont[:-1]]), **cached(cache)).logits[0]
        total = total + logits.log_softmax(-1).gather(1, torch.tensor(cont[1:])[:, None]).sum()
    return float(total)


ROUTED = [("attn", "sequence"), ("block", "sequence"), ("mlp", "sequence"), ("attn", "token")]


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("unit,routing", ROUTED)
def test_routed_prompt_score_equals_prefill_then_continuation_by_hand(tok, unit, routing, pack):
    model = routed_model(unit, routing)
    reqs = requests_for(tiny_docs(10))
    kw = {"route_on": "prompt", "batch_size": 3, "pack_choices": pack}
    got, lm = scores(MindSkipLM, model, tok, reqs, **kw)
    if routing == "sequence":
        assert mixed(lm.decision_log.values()), "the routers should skip for some contexts"
    for r, (ll, _) in zip(reqs, got, strict=True):
        ctx, cont = lm._encode_pair(*r.args)
        assert ll == pytest.approx(_by_hand(model, ctx, cont), abs=1e-4)


def test_prompt_decisions_ignore_the_choice_text_and_the_batch_size(tok):
    model = routed_model()
    docs = tiny_docs(10)
    for d in docs:  # choices of very different text and length
        d["choices"] = [*d["choices"], "zzzz 999 !!! a very long and odd answer;;"]
    reqs = requests_for(docs)
    one, lm1 = scores(MindSkipLM, model, tok, reqs, route_on="prompt", batch_size=1)
    many, lm7 = scores(MindSkipLM, model, tok, reqs, route_on="prompt", batch_size=7)
    assert lm1.decision_log == lm7.decision_log
    assert [s[0] for s in one] == pytest.approx([s[0] for s in many], abs=1e-4)
    by_item: dict[str, set] = {}
    for r in reqs:
        by_item.setdefault(r.args[0], set()).add(lm1.decision_log[r.args])
    assert all(len(s) == 1 for s in by_item.values())  # one decision per item
    assert mixed(lm1.decision_log.values())
    # under request, the choice text enters the decision: some items split
    _, lm_req = scores(MindSkipLM, model, tok, reqs, route_on="request", batch_size=7)
    split = {
        ctx
        for ctx in by_item
        if len({lm_req.decision_log[r.args] for r in reqs if r.args[0] == ctx}) > 1
    }
    assert split


def test_evaluate_model_records_the_mode_and_routing_splits(tok, tmp_path):
    folder = write_task(tmp_path, "tiny_mc", n=12)
    suite = Suite("tiny", (TaskSpec("tiny_mc", 0, "acc_norm"),), include_path=folder)
    model = routed_model()
    prompt = evaluate_model(model, tok, suite, batch_size=4, out_dir=tmp_path / "p")
    request = evaluate_model(model, tok, suite, batch_size=4, route_on="request")
    assert prompt.record["run"]["route_on"] == "prompt" == prompt.rows[0]["route_on"]
    assert request.record["run"]["route_on"] == "request" == request.rows[0]["route_on"]
    assert {r["n_routes"] for r in prompt.items} == {1}
    assert prompt.rows[0]["items_routed_differently"] == 0
    differ = sum(r["n_routes"] > 1 for r in request.items)
    assert request.rows[0]["items_routed_differently"] == differ
    saved = json.loads((tmp_path / "p" / "tiny.json").read_text())
    assert saved["rows"][0]["route_on"] == "prompt" and saved["run"]["route_on"] == "prompt"
    with pytest.raises(ValueError, match="route_on"):
        evaluate_model(model, tok, suite, route_on="choice")
    # a dense model scores the same either way
    dense = make_model()
    a = evaluate_model(dense, tok, suite, batch_size=4)
    b = evaluate_model(dense, tok, suite, batch_size=4, route_on="request")
    lls = [[x for r in res.items for x in r["loglikelihoods"]] for res in (a, b)]
    assert lls[0] == pytest.approx(lls[1], abs=1e-4)
    assert a.rows[0]["items_routed_differently"] is None and "n_routes" not in a.items[0]


# --------------------------------------------------------------------------- embedded
def test_embedded_model_prompt_equals_request(embedded_assets):
    """On the real model and a real task, deciding on the prompt and scoring every choice
    on its cache gives lm-eval's per-request log-likelihoods for a dense model."""
    from mindskip.evaluate import embedded_suite
    from mindskip.modeling import load_model
    from mindskip.sources import resolve_model_source

    suite = embedded_suite(embedded_assets / "tasks", limit=4, tasks=["piqa_embedded"])
    model, tok = load_model(resolve_model_source("embedded", embedded_assets), dtype="float32")
    meta = {"model_hash": "not-hashed"}  # hashing 135M weights is not what is tested
    a = evaluate_model(model, tok, suite, batch_size=8, method=meta, route_on="prompt")
    b = evaluate_model(model, tok, suite, batch_size=8, method=meta, route_on="request")
    lls = [[x for r in res.items for x in r["loglikelihoods"]] for res in (a, b)]
    assert len(lls[0]) == 8
    assert lls[0] == pytest.approx(lls[1], abs=1e-4)
    assert a.scores() == b.scores()


# --------------------------------------------------------------------------- lm-eval
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model folder (with tokenizer), its routers, and a local task."""
    root = tmp_path_factory.mktemp("lm_eval_cli")
    make_model().save_pretrained(root / "model")  # the dense weights routed_model wraps
    char_tokenizer().save_pretrained(root / "model")
    model = routed_model()
    save_routers(model, root / "routers")
    write_task(root / "tasks", "tiny_mc", n=8)
    return root, model


def test_simple_evaluate_by_name(saved_model, tok):
    from lm_eval.tasks import TaskManager

    root, model = saved_model
    args = {"pretrained": str(root / "model"), "routers": str(root / "routers")}
    tm = TaskManager(include_path=str(root / "tasks"), include_defaults=False)
    for route_on in ("prompt", "request"):
        out = lm_eval.simple_evaluate(
            model="mindskip",
            model_args={**args, "route_on": route_on, "device": "cpu"},
            tasks=["tiny_mc"],
            task_manager=tm,
        )
        suite = Suite("t", (TaskSpec("tiny_mc", 0, "acc"),), include_path=str(root / "tasks"))
        want = evaluate_model(model, tok, suite, batch_size=1, route_on=route_on)
        assert out["results"]["tiny_mc"]["acc,none"] == want.scores()["tiny_mc"]


def test_lm_eval_command_line_scores_a_mindskip_model(saved_model, tmp_path):
    root, _ = saved_model
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "mindskip.evaluate.lm_eval_cli",
        "--model",
        "mindskip",
        "--model_args",
        f"pretrained={root / 'model'},routers={root / 'routers'},route_on=prompt",
        "--tasks",
        "tiny_mc",
        "--include_path",
        str(root / "tasks"),
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--output_path",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shared prefix" in done.stderr  # the prompt path ran
    (path,) = (tmp_path / "out").rglob("results_*.json")
    res = json.loads(path.read_text())
    assert 0.0 <= res["results"]["tiny_mc"]["acc,none"] <= 1.0
    assert "route_on" in json.dumps(res["config"]["model_args"])
