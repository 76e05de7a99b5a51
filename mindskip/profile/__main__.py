"""The command line: ``python -m mindskip.profile --model ... --out FOLDER``.

A strict profile by default: a variant that fails stops the run with an error naming it
and the regime; ``--keep-going`` marks its rows ``status=error: ...`` instead.

    python -m mindskip.profile --model smollm2-135m --shape-only --out results/profile/x
    python -m mindskip.profile --model FOLDER --inputs prompts.jsonl --out results/profile/y
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import CACHES, SHAPES, TIMERS, ProfileConfig


def _grid(text: str) -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(int(v) for v in g.lower().split("x")) for g in text.split(","))  # type: ignore[misc]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m mindskip.profile",
        description="Speed and memory of MindSkip vs dense vs the hand-removed ceiling.",
    )
    ap.add_argument("--model", default="smollm2-135m", help=f"a folder, or {sorted(SHAPES)}")
    ap.add_argument("--shape-only", action="store_true", help="random weights from the shape")
    ap.add_argument(
        "--units", default="attn,mlp,block", help="forced-pattern methods ('' for none)"
    )
    ap.add_argument(
        "--layers", default=None, help="skip pattern, e.g. 13,15 (default: every other routed)"
    )
    ap.add_argument("--num-routed", type=int, default=16)
    ap.add_argument("--routing", default="sequence", choices=("sequence", "token"))
    ap.add_argument("--routers", nargs="*", default=[], help="trained router folders")
    ap.add_argument("--grid", default="1x512x0,8x512x0,1x128x32,8x128x32", help="BxTxNEW,...")
    ap.add_argument("--caches", default="dynamic", help=f"comma list of {CACHES}")
    ap.add_argument("--decode-timer", default="generate", choices=TIMERS)
    ap.add_argument("--repeats", type=int, default=ProfileConfig.repeats)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype", default=None, help="float32 | bfloat16 | float16 (default by device)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (pinned)")
    ap.add_argument("--compile-mode", default=None)
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting regimes after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--inputs",
        default="random",
        help="'random' token ids, or a .jsonl/.json/.pt file of token-id lists (real prompts)",
    )
    ap.add_argument("--ci-level", type=float, default=ProfileConfig.ci_level)
    ap.add_argument(
        "--keep-going",
        action="store_true",
        help="a failing variant marks its rows status=error instead of stopping the run",
    )
    ap.add_argument("--out", type=Path, required=True, help="folder for profile.{csv,json,md}")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def config_from_args(a: argparse.Namespace) -> ProfileConfig:
    return ProfileConfig(
        model=a.model,
        shape_only=a.shape_only,
        units=tuple(u for u in a.units.split(",") if u),
        layers=tuple(int(i) for i in a.layers.split(",")) if a.layers else None,
        num_routed=a.num_routed,
        routing=a.routing,
        routers=tuple(a.routers),
        grid=_grid(a.grid),
        caches=tuple(a.caches.split(",")),
        decode_timer=a.decode_timer,
        repeats=a.repeats,
        warmup=a.warmup,
        ceiling=not a.no_ceiling,
        device=a.device,
        dtype=a.dtype,
        threads=a.threads,
        compile_mode=a.compile_mode,
        budget_s=a.budget_s,
        seed=a.seed,
        strict=not a.keep_going,
        inputs=a.inputs,
        ci_level=a.ci_level,
    )


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    from .output import to_markdown, write_results
    from .run import profile

    hf_logging.set_verbosity_error()
    result = profile(config_from_args(a), out_dir=a.out, progress=not a.no_progress)
    result.env["command"] = "python -m mindskip.profile " + " ".join(argv or sys.argv[1:])
    write_results(result, a.out)
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
