"""Do trained routers make the same decisions in bf16 as in float32? (issue-4 lr evidence)

Routers trained with a tiny learning rate sit a hair away from tau (logit margins ~1e-4), so
the rounding of a bf16 model can flip their decisions. For each router folder this loads
SmolLM2-135M-Instruct in float32 and in bfloat16, runs the validation records of that run
(same seeded split) with the routers deciding, and counts the (sequence, layer) decisions
that differ. Appends one JSON line per folder to ``benchmarks/router_decisions_bf16.jsonl``.

    python benchmarks/router_decisions_bf16.py results/routers/smollm2-135m/issue4/t050_*
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mindskip import load_routers, mindskip_layers
from mindskip.data import load_alpaca_jsonl
from mindskip.train import TrainConfig, collate, encode_record, lm_loss_sum, split_records

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "results/assets/models/smollm2-135m-instruct"
OUT = ROOT / "benchmarks/router_decisions_bf16.jsonl"


@torch.no_grad()
def decisions(run: Path, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """(sequences, layers) execute mask and response NLL per token on the run's val split."""
    metrics = json.loads((run / "metrics.json").read_text())
    tc = TrainConfig.from_dict(metrics["train_config"])
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=dtype).eval()
    load_routers(model, run)
    records = load_alpaca_jsonl(metrics["data"]["source"])
    _, val = split_records(records, tc.val_fraction, tc.val_count, tc.seed)
    examples = [e for e in (encode_record(tok, r, tc.max_length) for r in val) if e]
    cols, nll, n_tok = [], 0.0, 0
    for i in range(0, len(examples), 8):
        loss, n = lm_loss_sum(model, collate(examples[i : i + 8], tok.pad_token_id, "cpu"))
        nll, n_tok = nll + float(loss), n_tok + n
        cols.append(torch.stack([m.last_exec for m in mindskip_layers(model).values()], 1))
    return torch.cat(cols), nll / n_tok


def main() -> None:
    torch.set_num_threads(1)
    for run in map(Path, sys.argv[1:]):
        d32, nll32 = decisions(run, torch.float32)
        d16, nll16 = decisions(run, torch.bfloat16)
        cfg = json.loads((run / "metrics.json").read_text())
        row = {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "run": str(run),
            "lr": cfg["train_config"]["lr"],
            "val_logit_margin": cfg["val"].get("logit_margin"),
            "decisions": d32.numel(),
            "flipped_fp32_vs_bf16": int((d32 != d16).sum()),
            "flipped_share": float((d32 != d16).float().mean()),
            "capacity_fp32": float(d32.float().mean()),
            "capacity_bf16": float(d16.float().mean()),
            "ppl_routed_fp32": float(torch.tensor(nll32).exp()),
            "ppl_routed_bf16": float(torch.tensor(nll16).exp()),
        }
        with OUT.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
