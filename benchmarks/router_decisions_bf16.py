"""Do trained routers make the same decisions in bf16 as in float32?

The routers and their pooling always run in float32 (autocast off), so what can still
differ is the hidden states a bf16 model feeds them. For each router folder this loads
SmolLM2-135M-Instruct in float32 and in bfloat16, runs the validation records of the
pipeline's held-out split (:func:`mindskip.data.split.split_records`, checked against the
run's ``data.val_sha256`` when it recorded one) with the routers deciding, and counts the
(sequence, layer) decisions that differ. It also runs the float32 model under CPU bf16
autocast. Appends one JSON line per folder to ``benchmarks/router_decisions_bf16.jsonl``.

    python benchmarks/router_decisions_bf16.py results/routers/smollm2-135m/<run> \\
        [--assets results/assets] [--validation 64 --calibration 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from pathlib import Path

import torch

from mindskip import load_routers, mindskip_layers
from mindskip.data import training_records
from mindskip.data.split import split_records
from mindskip.modeling import load_model, resolve_model_source
from mindskip.train import TrainConfig, collate, encode_records, lm_loss_sum, records_sha256

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks/router_decisions_bf16.jsonl"


@torch.no_grad()
def decisions(run: Path, args, dtype: torch.dtype, autocast: bool) -> tuple[torch.Tensor, float]:
    """(sequences, layers) execute mask and response NLL per token on the validation split."""
    metrics = json.loads((run / "metrics.json").read_text())
    tc = TrainConfig.from_dict(
        {k: v for k, v in metrics["train_config"].items() if k in TrainConfig.__dataclass_fields__}
    )
    model, tok = load_model(resolve_model_source("embedded", args.assets), dtype)
    load_routers(model, run)
    split = split_records(
        training_records("embedded", args.assets),
        calibration=args.calibration,
        validation=args.validation,
        seed=tc.seed,
    )
    want = metrics.get("data", {}).get("val_sha256")
    if want and want != records_sha256(split.validation):
        print(f"note: {run} validated on other records than this split", file=sys.stderr)
    examples = encode_records(tok, split.validation, tc.max_length)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    cols, nll, n_tok = [], 0.0, 0
    with ctx:
        for i in range(0, len(examples), 8):
            loss, n = lm_loss_sum(model, collate(examples[i : i + 8], tok, "cpu"))
            nll, n_tok = nll + float(loss), n_tok + n
            cols.append(torch.stack([m.last_exec for m in mindskip_layers(model).values()], 1))
    return torch.cat(cols), nll / n_tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--assets", type=Path, default=ROOT / "results/assets")
    p.add_argument("--validation", type=int, default=64)
    p.add_argument("--calibration", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        d32, nll32 = decisions(run, args, torch.float32, autocast=False)
        d16, nll16 = decisions(run, args, torch.bfloat16, autocast=False)
        dac, nllac = decisions(run, args, torch.float32, autocast=True)
        cfg = json.loads((run / "metrics.json").read_text())
        row = {
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "run": str(run),
            "val_logit_margin": cfg["val"].get("logit_margin"),
            "decisions": d32.numel(),
            "flipped_fp32_vs_bf16_model": int((d32 != d16).sum()),
            "flipped_fp32_vs_cpu_autocast": int((d32 != dac).sum()),
            "capacity_fp32": float(d32.float().mean()),
            "capacity_bf16": float(d16.float().mean()),
            "ppl_routed_fp32": float(torch.tensor(nll32).exp()),
            "ppl_routed_bf16": float(torch.tensor(nll16).exp()),
            "ppl_routed_autocast": float(torch.tensor(nllac).exp()),
        }
        with OUT.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    main()
