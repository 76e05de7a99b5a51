"""Router-Tuning runs on the embedded SmolLM2-135M-Instruct (CPU), for the issue-4 report.

Each run trains the routers with :func:`mindskip.train.train_routers`, writes its routers and
metrics.json under ``--out/<name>``, and appends a one-line summary (with the command that
made it) to ``benchmarks/router_tuning_smollm2.jsonl``.

    python benchmarks/router_tuning_smollm2.py --name t050 --target 0.5 --lam 1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mindskip import MindSkipConfig
from mindskip.data import load_alpaca_jsonl
from mindskip.train import TrainConfig, train_routers

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "results/assets/models/smollm2-135m-instruct"
DATA = ROOT / "results/assets/train/bigbench_heldout.jsonl"
SUMMARY = ROOT / "benchmarks/router_tuning_smollm2.jsonl"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, default=ROOT / "results/routers/smollm2-135m/issue4")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--unit", default="attn")
    p.add_argument("--routing", default="sequence")
    p.add_argument("--num-routed", type=int, default=16)
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--val", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    records = load_alpaca_jsonl(args.data)
    ms = MindSkipConfig(
        unit=args.unit,
        routing=args.routing,
        num_routed=args.num_routed,
        capacity_lambda=args.lam,
        capacity_target=args.target,
    )
    tc = TrainConfig(
        lr=args.lr,
        schedule=args.schedule,
        epochs=args.epochs,
        global_batch=args.global_batch,
        micro_batch=args.micro_batch,
        max_length=args.max_length,
        max_samples=args.samples,
        val_count=args.val,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    out = args.out / args.name
    m = train_routers(model, tok, records, ms, tc, out, data_source=str(args.data))
    summary = {
        "name": args.name,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "out": str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out),
        "unit": args.unit,
        "routing": args.routing,
        "target": args.target,
        "lambda": args.lam,
        "lr": args.lr,
        "steps": m["optimizer_steps"],
        "train_examples": m["data"]["train_examples"],
        "val_capacity": m["val"].get("capacity"),
        "val_capacity_per_layer": m["val"].get("capacity_per_layer"),
        "val_logit_margin": m["val"].get("logit_margin"),
        "ppl_dense": m["val"].get("ppl_dense"),
        "ppl_routed": m["val"].get("ppl_routed"),
        "target_reached": m["target_reached"],
        "final_train_capacity": m["final_capacity"],
        "capacity_curve": [round(e["capacity"], 4) for e in m["log"]],
        "lm_loss_curve": [round(e["lm_loss"], 4) for e in m["log"]],
        "train_time_s": round(m["train_time_s"], 1),
        "wall_time_s": round(m["wall_time_s"] + load_s, 1),
        "peak_rss_gib": round(m["peak_memory"]["bytes"] / 2**30, 2),
        "tokens_seen": m["tokens_seen"],
        "threads": args.threads,
    }
    with SUMMARY.open("a") as f:
        f.write(json.dumps(summary) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if "per_layer" not in k}, indent=1))
    return summary


if __name__ == "__main__":
    main()
