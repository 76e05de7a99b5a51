"""``python -m mindskip.report --results results/full``: the tables and figures of what has
finished under a results root, while a long run is still going (the workflow's ``report``
rule builds the same files once every job is done, and replaces these)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import build_report, build_training_report

PAPER_DIR = Path(__file__).resolve().parents[2] / "resources" / "paper"


def finished(root: Path, suite: str) -> dict[str, list[str]]:
    """The result files under ``root`` that the report reads (atomic writes: a file that
    exists is complete)."""
    return {
        "roles": sorted(str(p) for p in root.glob("plan/*/roles.json")),
        "evals": sorted(str(p) for p in root.glob(f"eval/*/*/*/{suite}.json")),
        "profiles": sorted(str(p) for p in root.glob("profile/*/*/*/profile.csv")),
        "metrics": sorted(str(p) for p in root.glob("routers/*/*/metrics.json")),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mindskip.report", description=__doc__)
    ap.add_argument("--results", type=Path, default=Path("results"), help="a results root")
    ap.add_argument("--suite", default="embedded")
    ap.add_argument("--model", default="", help="the model's name in the captions")
    ap.add_argument("--paper-dir", type=Path, default=PAPER_DIR)
    ap.add_argument(
        "--training-only",
        action="store_true",
        help="only the training and capacity tables and the training curves, from the runs' "
        "metrics (a root where routers were trained but not scored: config/capacity.yaml)",
    )
    args = ap.parse_args(argv)
    files = finished(args.results, args.suite)
    if args.training_only:
        files.pop("roles")
        if not files["metrics"]:
            ap.error(f"no finished router run under {args.results}/routers")
        written = build_training_report(
            files["metrics"],
            paper_dir=args.paper_dir,
            tables_dir=args.results / "tables",
            figures_dir=args.results / "figures",
            model_name=args.model,
        )
        print(f"training report of {len(files['metrics'])} runs:")
        print("\n".join(written["tables"] + written["figures"]))
        return 0
    if not files["evals"]:
        ap.error(f"no finished evaluation under {args.results}/eval")
    if len(files["roles"]) != 1:
        ap.error(
            f"{args.results}/plan/<model>/roles.json (which runs the claims compare): "
            f"{len(files['roles'])} found, one needed; write it with `snakemake --configfile "
            "<the config of this root> roles`"
        )
    (roles,) = files.pop("roles")
    written = build_report(
        roles,
        **files,
        paper_dir=args.paper_dir,
        tables_dir=args.results / "tables",
        figures_dir=args.results / "figures",
        model_name=args.model,
    )
    n = {k: len(v) for k, v in files.items()}
    print(f"report of {n['evals']} evaluations, {n['profiles']} profiles, {n['metrics']} runs:")
    print("\n".join(written["tables"] + written["figures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
