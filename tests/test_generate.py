"""The self-generated instruction set: greedy answers in input order, long prompts left out,
a sidecar with settings and hashes, and a second call that does no work."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model
from test_train import make_records, make_tokenizer

from mindskip import MindSkipConfig, apply_mindskip
from mindskip.data.generate import generate_responses, prompt_ids, sidecar_path
from mindskip.data.instructions import load_alpaca_jsonl
from mindskip.files import read_json, read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

SETTINGS = dict(max_new_tokens=5, max_prompt_tokens=12, batch_size=3)


class CountingModel:
    """Counts ``generate`` calls of the wrapped model."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self._generate = model.generate

        def generate(*a, **k):
            self.calls += 1
            return self._generate(*a, **k)

        model.generate = generate


def test_generate_writes_answers_and_a_sidecar(tmp_path):
    tok, recs = make_tokenizer(), make_records(10, seed=3)
    model = CountingModel(make_model())
    out = tmp_path / "gen.jsonl"
    meta = generate_responses(model.model, tok, recs, out_path=out, **SETTINGS)
    long = [i for i, r in enumerate(recs) if len(prompt_ids(tok, r)) > 12]
    kept = len(recs) - len(long)
    assert meta["dropped_long_prompts"] == len(long) and long  # some prompts are too long
    assert model.calls == -(-kept // 3)  # batches of 3
    rows = read_jsonl(out)
    assert len(rows) == meta["rows"] == kept - meta["dropped_empty"]
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)  # input order
    for r in rows:
        src = recs[r["index"]]
        assert (r["instruction"], r["input"]) == (src["instruction"], src["input"])
        assert r["output"] and 1 <= r["response_tokens"] <= 5
        assert r["stopped"] in ("eos", "length")
    assert load_alpaca_jsonl(out)  # a valid Alpaca file
    side = read_json(sidecar_path(out))
    assert side["key"]["settings"]["max_new_tokens"] == 5
    assert {"input_sha256", "model_sha256", "tokenizer_sha256"} <= set(side["key"])
    assert {"versions", "environment"} <= set(side["provenance"])
    assert side["new_tokens_per_s"] > 0


def test_greedy_answer_equals_a_single_prompt_generate(tmp_path):
    tok, recs = make_tokenizer(), make_records(4, seed=5)
    model = make_model()
    generate_responses(model, tok, recs, out_path=tmp_path / "g.jsonl", **SETTINGS)
    row = read_jsonl(tmp_path / "g.jsonl")[0]
    ids = torch.tensor([prompt_ids(tok, recs[row["index"]])])
    with torch.no_grad():
        alone = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    text = tok.decode(alone[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert row["output"] == text or row["stopped"] == "eos"


def test_second_call_does_no_work(tmp_path):
    tok, recs = make_tokenizer(), make_records(8, seed=3)
    out = tmp_path / "gen.jsonl"
    first = generate_responses(make_model(), tok, recs, out_path=out, **SETTINGS)
    model = CountingModel(make_model())
    again = generate_responses(model.model, tok, recs, out_path=out, **SETTINGS)
    assert model.calls == 0 and again == first
    # a changed setting, input, model or output file is new work
    generate_responses(model.model, tok, recs, out_path=out, **{**SETTINGS, "max_new_tokens": 4})
    assert model.calls > 0
    calls = model.calls
    generate_responses(model.model, tok, recs[:-1], out_path=out, **SETTINGS)
    assert model.calls > calls
    calls = model.calls
    other = CountingModel(make_model(seed=1))
    generate_responses(other.model, tok, recs[:-1], out_path=out, **SETTINGS)
    assert other.calls > 0
    out.write_text(out.read_text() + "\n")
    generate_responses(other.model, tok, recs[:-1], out_path=out, **SETTINGS)
    assert other.calls > 1


def test_refuses_a_routed_model(tmp_path):
    model = apply_mindskip(make_model(), MindSkipConfig(num_routed=2))
    with pytest.raises(ValueError, match="dense model"):
        generate_responses(model, make_tokenizer(), make_records(2), out_path=tmp_path / "g.jsonl",
                           **SETTINGS)  # fmt: skip
