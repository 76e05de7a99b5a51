"""``python -m mindskip.data prepare --out results/assets`` (build the embedded assets),
``python -m mindskip.data smoke --out results/assets --tasks bb_physics`` (score a few items)
and ``python -m mindskip.data generate --out results/assets/train/generated.jsonl``
(answer held-out prompts with the dense model: :func:`mindskip.data.generate.generate_responses`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .instructions import DEFAULT_TRAIN_TASKS
from .prepare import MODEL_SUBDIR, prepare_assets
from .tasks import DEFAULT_BIGBENCH_TASKS


def _summary(manifest: dict) -> str:
    lines = [f"assets in {manifest['out']}"]
    for a in manifest["assets"]:
        sha = (a.get("sha256") or "")[:12]
        lines.append(f"  {a['kind']:5s} {a['name']:34s} n={a['n']:<9} sha256={sha}")
    lines.append(f"  MMLU junk rows dropped: {manifest['mmlu_junk_rows']}")
    train = next(a for a in manifest["assets"] if a["kind"] == "train")
    lines.append(f"  training overlaps dropped: {train['overlaps_dropped']}")
    lines.append(f"  seconds per step: {manifest['seconds']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindskip.data", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prepare", help="build the model, task files and training set")
    p.add_argument("--out", type=Path, default=Path("results/assets"))
    p.add_argument(
        "--tasks",
        nargs="+",
        default=list(DEFAULT_BIGBENCH_TASKS),
        help="BIG-bench evaluation tasks (default: %(default)s)",
    )
    p.add_argument(
        "--train-tasks",
        nargs="+",
        default=list(DEFAULT_TRAIN_TASKS),
        help="BIG-bench tasks for the training set (default: %(default)s)",
    )
    p.add_argument("--no-mmlu", action="store_true", help="skip mmlu_embedded")
    p.add_argument("--no-gsm8k", action="store_true", help="skip gsm8k_embedded")
    p.add_argument("--no-model", action="store_true", help="skip the model conversion")
    p.add_argument("--per-task-cap", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("smoke", help="score the converted model on the first items of tasks")
    s.add_argument("--out", type=Path, default=Path("results/assets"))
    s.add_argument("--tasks", nargs="+", required=True, help="e.g. bb_physics mmlu_embedded")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--num-fewshot", type=int, default=None)

    _generate_parser(sub)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "generate":
        print(json.dumps(_generate(args), indent=2))
    elif args.cmd == "prepare":
        manifest = prepare_assets(
            args.out,
            eval_tasks=args.tasks,
            train_tasks=args.train_tasks,
            mmlu=not args.no_mmlu,
            gsm8k=not args.no_gsm8k,
            model=not args.no_model,
            per_task_cap=args.per_task_cap,
            seed=args.seed,
        )
        print(_summary(manifest))
    else:
        from .tasks import smoke_eval

        scores = smoke_eval(
            args.out / MODEL_SUBDIR,
            args.out / "tasks",
            args.tasks,
            limit=args.limit,
            batch_size=args.batch_size,
            num_fewshot=args.num_fewshot,
        )
        print(json.dumps(scores, indent=2))
    return 0


def _generate_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate",
        help="answer held-out training prompts with the dense model (a cached step)",
        description="Takes a part of the held-out split (mindskip.data.split.split_records) "
        "of a training source and writes the model's greedy answers as Alpaca JSONL, with a "
        "<stem>.manifest.json sidecar; does nothing when the sidecar already matches.",
    )
    g.add_argument("--out", type=Path, required=True, help="output JSONL")
    g.add_argument("--assets", type=Path, default=Path("results/assets"))
    g.add_argument("--model", default="embedded", help="embedded, a local folder or a hub id")
    g.add_argument("--dtype", default="float32")
    g.add_argument("--source", default="embedded", help="training records (as in datasets:)")
    g.add_argument("--part", choices=["train", "validation", "all"], default="train")
    g.add_argument("--calibration", type=int, default=64, help="split: calibration records")
    g.add_argument("--validation", type=int, default=64, help="split: validation records")
    g.add_argument("--max-samples", type=int, default=None, help="split: training records")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--max-prompt-tokens", type=int, default=256)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--threads", type=int, default=None)


def _generate(args: argparse.Namespace) -> dict:
    from ..modeling import load_model, resolve_model_source
    from ..provenance import set_threads
    from .generate import generate_responses
    from .instructions import training_records
    from .split import split_records

    set_threads(args.threads)
    records = training_records(args.source, args.assets)
    if args.part != "all":
        split = split_records(
            records,
            calibration=args.calibration,
            validation=args.validation,
            seed=args.seed,
            max_samples=args.max_samples,
        )
        records = split.train if args.part == "train" else split.validation
    model, tok = load_model(resolve_model_source(args.model, args.assets), args.dtype)
    meta = generate_responses(
        model,
        tok,
        records,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        batch_size=args.batch_size,
        out_path=args.out,
    )
    return {k: v for k, v in meta.items() if k != "provenance"}


if __name__ == "__main__":
    sys.exit(main())
