"""Router-Tuning on the embedded SmolLM2-135M-Instruct (CPU): which start, penalty, objective
and data keep training in control and make the routers route (issue 15).

Three subcommands, each appending one JSON line (with the command that made it, the load
average and the process CPU time) to ``benchmarks/router_tuning_smollm2.jsonl``:

    python benchmarks/router_tuning_smollm2.py baseline      # today's committed routers
    python benchmarks/router_tuning_smollm2.py generate --samples 192
    python benchmarks/router_tuning_smollm2.py train --name margin2 --init margin \\
        --init-margin 2 --data generated

Every run uses the pipeline's held-out split (:func:`mindskip.data.split.split_records`,
64 calibration + 64 check records at the tail, 64 validation records) of the embedded
training set, the default run's routing (attn, sequence, 16 routed layers, target 0.5,
lambda 10) and recipe (lr 1e-3, cosine, global batch 16, max length 192), unless a flag
says otherwise. ``--data generated`` trains on the dense model's own answers to the same
training prompts (:func:`mindskip.data.generate.generate_responses`, cached under
``--work``); validation is reported on both the embedded and the generated answers of
the validation prompts, so runs on either data compare on the same records.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "benchmarks/router_tuning_smollm2.jsonl"
COMMITTED = ROOT / "results/routers/smollm2-135m/attn-seq-n16-c0.5-embedded-192/metrics.json"
log = logging.getLogger("router_tuning")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assets", type=Path, default=ROOT / "results/assets")
    p.add_argument("--work", type=Path, default=Path("/tmp/mindskip-router-tuning"))
    p.add_argument("--samples", type=int, default=192)
    p.add_argument("--val", type=int, default=64)
    p.add_argument("--calibration", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-prompt-tokens", type=int, default=128)
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("baseline", help="dynamic share of the committed default routers")
    sub.add_parser("table", help="print the runs in the .jsonl as a Markdown table")
    _common(sub.add_parser("generate", help="self-generated answers for train + val prompts"))
    t = sub.add_parser("train", help="one router-tuning run")
    _common(t)
    t.add_argument("--name", required=True)
    t.add_argument("--data", choices=["embedded", "generated"], default="embedded")
    t.add_argument("--objective", choices=["lm", "distill"], default="lm")
    t.add_argument("--penalty", choices=["global", "per_layer", "none"], default="global")
    t.add_argument("--init", choices=["zero", "margin"], default="margin")
    t.add_argument("--init-margin", type=float, default=2.0)
    t.add_argument("--init-spread", type=float, default=0.0)
    t.add_argument("--beta1", type=float, default=0.9)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup-ratio", type=float, default=0.03)
    t.add_argument("--penalty-warmup-ratio", type=float, default=0.0)
    t.add_argument("--lam", type=float, default=10.0)
    t.add_argument("--target", type=float, default=0.5)
    t.add_argument("--max-length", type=int, default=192)
    t.add_argument("--global-batch", type=int, default=16)
    t.add_argument("--micro-batch", type=int, default=8)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--executed-only", action="store_true", help="full_compute_in_training=False")
    return ap


def _stamp() -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "load_avg": os.getloadavg()}


def _append(row: dict[str, Any]) -> None:
    row = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), **row, **_stamp()}
    with SUMMARY.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if "per_layer" not in k}, indent=1))


def _split(args: argparse.Namespace):
    from mindskip.data import training_records
    from mindskip.data.split import split_records

    records = training_records("embedded", args.assets)
    return split_records(
        records,
        calibration=args.calibration,
        validation=args.val,
        seed=args.seed,
        max_samples=args.samples,
    )


def _model(args: argparse.Namespace):
    from mindskip.modeling import load_model, resolve_model_source

    return load_model(resolve_model_source("embedded", args.assets), "float32")


def _gen_paths(args: argparse.Namespace) -> dict[str, Path]:
    tag = f"p{args.max_prompt_tokens}-n{args.max_new_tokens}"
    return {
        "train": args.work / f"generated-train{args.samples}-{tag}.jsonl",
        "validation": args.work / f"generated-val{args.val}-{tag}.jsonl",
    }


def generate(args: argparse.Namespace) -> dict[str, Any]:
    """Generated answers for the split's training and validation prompts (cached)."""
    from mindskip.data.generate import generate_responses

    split, (model, tok) = _split(args), _model(args)
    out: dict[str, Any] = {"kind": "generate"}
    for part, path in _gen_paths(args).items():
        t0 = time.perf_counter()
        meta = generate_responses(
            model,
            tok,
            getattr(split, part),
            max_new_tokens=args.max_new_tokens,
            max_prompt_tokens=args.max_prompt_tokens,
            batch_size=args.gen_batch,
            out_path=path,
        )
        keep = ("rows", "dropped_long_prompts", "dropped_empty", "stopped_at_length")
        out[part] = {k: meta[k] for k in keep}
        out[part].update(
            inputs=meta["key"]["inputs"],
            new_tokens=meta["new_tokens"],
            seconds=round(meta["seconds"], 1),
            cpu_seconds=round(meta.get("cpu_seconds", float("nan")), 1),
            new_tokens_per_s=round(meta["new_tokens_per_s"], 2),
            seconds_per_prompt=round(meta["seconds_per_row"], 3),
            cached=time.perf_counter() - t0 < 0.5 * meta["seconds"],
            path=str(path),
        )
    out["settings"] = {
        "max_new_tokens": args.max_new_tokens,
        "max_prompt_tokens": args.max_prompt_tokens,
        "batch_size": args.gen_batch,
        "threads": args.threads,
    }
    return out


def _val_sets(args: argparse.Namespace, split, tok) -> dict[str, list]:
    from mindskip.data import load_alpaca_jsonl
    from mindskip.train import encode_records

    sets = {"embedded": encode_records(tok, split.validation, args.max_length)}
    path = _gen_paths(args)["validation"]
    if path.is_file():
        sets["generated"] = encode_records(tok, load_alpaca_jsonl(path), args.max_length)
    return sets


def _brief(val: dict[str, Any]) -> dict[str, Any]:
    caps = val.get("capacity_per_layer", {})
    keys = ("ppl_dense", "ppl_routed", "kl_to_dense", "capacity", "dynamic_share")
    return {
        **{k: val.get(k) for k in keys},
        "stuck_layers": sum(c in (0.0, 1.0) for c in caps.values()),
        "capacity_per_layer": {k: round(c, 3) for k, c in caps.items()},
        "logit_margin_median": (val.get("logit_margin") or {}).get("median"),
    }


def train(args: argparse.Namespace) -> dict[str, Any]:
    from mindskip import MindSkipConfig
    from mindskip.data import load_alpaca_jsonl
    from mindskip.train import TrainConfig, train_routers, validate

    split, (model, tok) = _split(args), _model(args)
    train_recs, val_recs = split.train, split.validation
    if args.data == "generated":
        paths = _gen_paths(args)
        if not paths["train"].is_file():
            raise SystemExit(f"{paths['train']} is missing: run the generate subcommand first")
        train_recs = load_alpaca_jsonl(paths["train"])
        val_recs = load_alpaca_jsonl(paths["validation"])
    ms = MindSkipConfig(
        num_routed=16,
        capacity_lambda=args.lam,
        capacity_target=args.target,
        full_compute_in_training=not args.executed_only,
    )
    tc = TrainConfig(
        lr=args.lr,
        warmup_ratio=args.warmup_ratio,
        global_batch=args.global_batch,
        micro_batch=args.micro_batch,
        max_length=args.max_length,
        epochs=args.epochs,
        seed=args.seed,
        objective=args.objective,
        penalty=args.penalty,
        penalty_warmup_ratio=args.penalty_warmup_ratio,
        init=args.init,
        init_margin=args.init_margin,
        init_spread=args.init_spread,
        adam_beta1=args.beta1,
        bf16=False,
        progress=False,
    )
    out = args.work / "runs" / args.name
    m = train_routers(model, tok, train_recs, val_recs, ms, tc, out, data_source=args.data)
    cross = {
        name: _brief(m["val"] if name == args.data else validate(model, ex, tok, 8, bf16=False))
        for name, ex in _val_sets(args, split, tok).items()
    }
    curve = m["log"]
    return {
        "kind": "train",
        "name": args.name,
        "out": str(out),
        "data": args.data,
        "recipe": {k: v for k, v in tc.to_dict().items() if k not in ("progress", "lora_targets")},
        "routing": {"lambda": args.lam, "target": args.target, "executed_only": args.executed_only},
        "steps": m["optimizer_steps"],
        "warmup_steps": m["warmup_steps"],
        "train_examples": m["data"]["train_examples"],
        "tokens_seen": m["tokens_seen"],
        "response_tokens_seen": m["response_tokens_seen"],
        "init_margin_logits_mean": _mean((m["init"].get("margin_logits") or {}).values()),
        "capacity_curve": [round(e["capacity"], 4) for e in curve],
        "lm_loss_curve": [round(e["lm_loss"], 4) for e in curve],
        "distill_curve": [round(e["distill_loss"], 4) for e in curve if "distill_loss" in e],
        "min_capacity_after_warmup": m["min_capacity_after_warmup"],
        "val": _brief(m["val"]),
        "val_on": cross,
        "target_reached": m["target_reached"],
        "train_time_s": round(m["train_time_s"], 1),
        "train_cpu_s": round(m["train_cpu_s"], 1),
        "wall_time_s": round(m["wall_time_s"], 1),
        "s_per_train_example": round(m["train_time_s"] / m["data"]["train_examples"], 3),
        "peak_rss_gib": round(m["peak_memory"]["bytes"] / 2**30, 2),
        "threads": args.threads,
    }


def _mean(xs: Any) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def baseline() -> dict[str, Any]:
    """Today's committed routers: their validation dynamic share, from metrics.json."""
    from mindskip.train import dynamic_share

    m = json.loads(COMMITTED.read_text())
    caps = m["val"]["capacity_per_layer"]
    share = dynamic_share(caps)
    return {
        "kind": "baseline",
        "name": "committed-default",
        "metrics": str(COMMITTED.relative_to(ROOT)),
        "val": {
            "ppl_dense": m["val"]["ppl_dense"],
            "ppl_routed": m["val"]["ppl_routed"],
            "capacity": m["val"]["capacity"],
            "dynamic_share": share["overall"],
            "stuck_layers": sum(c in (0.0, 1.0) for c in caps.values()),
            "capacity_per_layer": caps,
        },
        "capacity_curve": [round(e["capacity"], 4) for e in m["log"]],
        "lm_loss_curve": [round(e["lm_loss"], 4) for e in m["log"]],
        "min_capacity_after_warmup": min(e["capacity"] for e in m["log"][m["warmup_steps"] :]),
        "train_time_s": m["train_time_s"],
        "train_examples": m["data"]["train_examples"],
    }


def _row(r: dict[str, Any]) -> str:
    v, rec = r["val"], r.get("recipe") or {}
    gen = (r.get("val_on") or {}).get("generated")
    if rec:
        spread = rec.get("init_spread", 0.0)
        start = "zero" if rec["init"] == "zero" else f"{rec['init_margin']}/{spread}"
        start += f", b1 {rec.get('adam_beta1', 0.9)}"
    else:
        start = "zero (committed run)"
    on_gen = f"{gen['ppl_dense']:.2f} / {gen['ppl_routed']:.2f}" if gen else "-"
    cells = [
        r["name"],
        r.get("data", "embedded"),
        rec.get("objective", "lm"),
        start,
        rec.get("penalty", "global"),
        f"{r['min_capacity_after_warmup']:.3f}",
        f"{v['capacity']:.3f}",
        str(v["stuck_layers"]),
        f"{v['dynamic_share']:.3f}",
        f"{v['ppl_dense']:.2f} / {v['ppl_routed']:.2f}",
        on_gen,
        f"{r['train_time_s']:.0f} ({r.get('train_cpu_s', '-')})",
    ]
    return "| " + " | ".join(cells) + " |"


def table() -> str:
    """The runs of the summary file as a Markdown table (the last row of each name)."""
    rows: dict[str, dict[str, Any]] = {}
    for line in SUMMARY.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] in ("train", "baseline"):
            rows[r["name"]] = r
    cols = [
        "run",
        "data",
        "objective",
        "start (margin/spread steps, beta1)",
        "penalty",
        "min capacity after warm-up",
        "val capacity",
        "layers stuck at 0/1",
        "val dynamic share",
        "val ppl dense / routed",
        "ppl dense / routed on generated val",
        "train s (cpu s)",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + [_row(r) for r in rows.values()])


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "table":
        print(table())
        return
    if args.cmd == "baseline":
        _append(baseline())
        return
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    _append(generate(args) if args.cmd == "generate" else train(args))


if __name__ == "__main__":
    main()
