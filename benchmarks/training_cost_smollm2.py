"""Step time and peak memory: router-only training vs full fine-tuning of SmolLM2-135M.

Both modes use the same routed model (attn, sequence routing, 16 routed layers), the same
micro-batch of training records and the same loss (:func:`mindskip.train.benchmark_training_cost`).
On CPU each mode runs in its own fresh process (``--modes`` one at a time), because the
allocator keeps memory that the first mode freed; the results are merged into
``benchmarks/training_cost_smollm2.json`` together with the command that made them.

    python benchmarks/training_cost_smollm2.py            # both modes, one process each
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "results/assets/models/smollm2-135m-instruct"
DATA = ROOT / "results/assets/train/embedded.jsonl"
OUT = ROOT / "benchmarks/training_cost_smollm2.json"


def run_mode(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mindskip import MindSkipConfig
    from mindskip.data import load_alpaca_jsonl
    from mindskip.train import benchmark_training_cost

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    records = load_alpaca_jsonl(args.data)[: 4 * args.micro_batch]
    cfg = MindSkipConfig(unit="attn", routing="sequence", num_routed=16)
    return benchmark_training_cost(
        model,
        tok,
        records,
        cfg,
        modes=args.modes,
        micro_batch=args.micro_batch,
        max_length=args.max_length,
        steps=args.steps,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--modes", nargs="+", default=None, help="run these modes in this process")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.modes:  # child (or a same-process run)
        print(json.dumps(run_mode(args)))
        return
    merged: dict = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv)}
    for mode in ("routers", "full"):
        cmd = [sys.executable, __file__, "--modes", mode]
        for flag in ("model", "data", "micro_batch", "max_length", "steps", "threads"):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res = json.loads(out.strip().splitlines()[-1])
        merged[mode] = res.pop(mode)
        merged.setdefault("setup", res)
    merged["full_over_routers"] = {
        "step_time": merged["full"]["step_s_mean"] / merged["routers"]["step_s_mean"],
        "peak_bytes": merged["full"]["peak_bytes"] / merged["routers"]["peak_bytes"],
        "peak_minus_start_bytes": (merged["full"]["peak_bytes"] - merged["full"]["start_bytes"])
        / (merged["routers"]["peak_bytes"] - merged["routers"]["start_bytes"]),
    }
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps(merged, indent=2))


if __name__ == "__main__":
    main()
