"""``python -m mindskip.data prepare --out results/assets`` (build the embedded assets) and
``python -m mindskip.data smoke --out results/assets --tasks bb_physics`` (score a few items).
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

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "prepare":
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


if __name__ == "__main__":
    sys.exit(main())
