"""``results/README.md`` written from the tables, so that no number in it is typed by hand.

``python -m mindskip.report.readme --results results --model smollm2-135m`` reads the
tables the report wrote (``tables/*.csv`` and ``*.md``), the job benchmarks
(``logs/benchmarks/**/*.tsv``) and the fresh-clone timing (``logs/fresh_clone.json``,
written by ``scripts/fresh_clone_run.sh``), and writes the README: how the run was made and
how long each stage took, the dense model beside its published scores, the main table,
the claims and the speed table. ``--kind full --also config/full-gemma3.yaml`` (the
matrix README) puts each claim's verdict at every model beside the paper's evidence,
read from each model's own claims table. Never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import write_text
from .findings import verdicts_per_model
from .sections import (
    bigbench_gone,
    dense_prose,
    findings_section,
    how_it_ran,
    progress,
    section,
    workflow_config,
)


def results_readme(root: Path, config: dict[str, Any], model_name: str, config_path: Path) -> str:
    tables = root / "tables"
    lines = [
        f"# Results of the default run ({model_name}, the paper's tasks offline)",
        "",
        "<!-- Written by `python -m mindskip.report.readme` from the tables below it: edit",
        "     the code, not the numbers. -->",
        "",
        f"Everything here was written by the workflow on `{config_path}`. The inputs",
        "of every table are committed beside it (`routers/`, `baselines/`, `eval/` with the",
        f"per-item logs, `profile/`, `logs/`); `python -m mindskip.report --results {root}`",
        "rebuilds the tables and figures from them in seconds, without torch.",
        "",
        *(bigbench_gone() if root.name == "results" else []),
        *how_it_ran(root, config, config_path),
        *dense_prose(tables, model_name),
        *section(
            "Main table",
            tables / "main.md",
            "The paper's rows (Llama-3-8B) sit under the same task columns; they are the "
            "paper's numbers, on an 8B model with the paper's few-shot settings.",
        ),
        *findings_section(tables),
        *section(
            "The paper's claims",
            tables / "claims.md",
            "Every comparison between two methods is made at the first method's realised "
            "skip ratio: where the second's differs by more than 0.02 it is replaced by the "
            "per-sequence mixture of its two neighbouring points (the weight is in the "
            "table); a comparison that cannot be matched decides nothing.",
        ),
        *section("Speed", tables / "speed.md"),
        "Figures: `figures/` (and `report.html`); every table also as CSV and LaTeX in `tables/`.",
        "",
    ]
    return "\n".join(lines)


def _other_models(also: Sequence[Path]) -> tuple[dict[str, pd.DataFrame | None], list[str]]:
    """Each other model's matrix (its config, as Snakemake runs it): its claims table,
    if written yet, and a line saying where its own README is and how to resume it."""
    claims: dict[str, pd.DataFrame | None] = {}
    lines = []
    for path in also:
        other = workflow_config(path)
        name, root = other["model"]["name"], Path(other["results"])
        table = root / "tables" / "claims.csv"
        claims[name] = pd.read_csv(table) if table.is_file() else None
        complete, _ = progress(other, path)
        lines.append(
            f"- {name}: `{root}/README.md` ({'complete' if complete else 'in progress'}; "
            f"resume: `bash scripts/run.sh --configfile {path}`)."
        )
    return claims, lines


def full_readme(
    root: Path,
    config: dict[str, Any],
    model_name: str,
    config_path: Path,
    also: Sequence[Path] = (),
) -> str:
    """The whole matrix: what has finished, then every table written so far; with
    ``also`` (other models' matrix configs), every claim's verdict per model first."""
    tables = root / "tables"
    per_model: list[str] = []
    if also:
        own = tables / "claims.csv"
        others, where = _other_models(also)
        claims = {model_name: pd.read_csv(own) if own.is_file() else None, **others}
        per_model = [
            "## Verdicts per model",
            "",
            "Each model's claims table, combined per claim by the rule in the claims "
            "section below; the other models' tables, findings and progress are in their "
            "own READMEs:",
            "",
            *where,
            "",
            *verdicts_per_model(claims),
        ]
    complete, done = progress(config, config_path)
    state = "complete" if complete else "in progress"
    lines = [
        f"# The whole matrix ({model_name}, the paper's tasks offline): {state}",
        "",
        "<!-- Written by `python -m mindskip.report.readme --kind full` from the tables below",
        "     it: edit the code, not the numbers. -->",
        "",
        f"Everything here was written by the workflow on `{config_path}`, in parts (Snakemake",
        "resumes where it stopped). The tables hold what has finished; a claim whose runs",
        "have not finished says so in its note. `python -m mindskip.report --results "
        f"{root} --model {model_name}` rebuilds them from the committed records.",
        "",
        "## Progress",
        "",
        *done,
        *how_it_ran(root, config, config_path),
        *per_model,
        *findings_section(tables),
        *section(
            "The paper's claims",
            tables / "claims.md",
            "Every comparison between two methods is made at the first method's realised "
            "skip ratio (the second mixed per sequence to it where the two differ by more "
            "than 0.02); a comparison the items cannot decide says how many items would.",
        ),
        *section(
            "Table 1: unit x routing",
            tables / "main.md",
            "The paper's rows (Llama-3-8B, its few-shot settings) sit under the same task "
            "columns: they are the paper's numbers, not ours.",
        ),
        *dense_prose(tables, model_name),
        *section("Sweep", tables / "sweep.md"),
        *section("Recipes", tables / "recipes.md"),
        *section("Speed", tables / "speed.md"),
        "Figures: `figures/`; every table also as CSV and LaTeX in `tables/`.",
        "",
    ]
    return "\n".join(lines)


def _recipe_sentences(tables: Path) -> list[str]:
    """One line per recipe, every number read from the recipes and training tables."""
    path = tables / "recipes.csv"
    if not path.is_file():
        return []
    shown = pd.read_csv(tables / "recipes.csv")
    if shown.empty:
        return []
    lines = []
    for r in shown.itertuples(index=False):
        method = r.comparison.removesuffix(" vs the best static mixture at its ratio")
        if not r.matched:
            lines.append(f"- **{method}**: not compared with static drop: {r.note}.")
            continue
        lines.append(
            f"- **{method}**: realised skip ratio {r.ratio_a:.3f} after calibration; KL "
            f"against the best static mixture at that ratio {r.value:+.4f} [{r.ci_low:+.4f}, "
            f"{r.ci_high:+.4f}]: **{r.verdict}** (lower than static: holds)."
        )
    return lines


def recipes_readme(root: Path, config: dict[str, Any], model_name: str, config_path: Path) -> str:
    """``results/authors/README.md``: ours beside the authors' released recipes."""
    tables = root / "tables"
    lines = [
        f"# The authors' recipes beside ours ({model_name})",
        "",
        "<!-- Written by `python -m mindskip.report.readme --kind recipes` from the tables",
        "     below it: edit the code, not the numbers. -->",
        "",
        "`config/authors.yaml`: the default run's router (our recipe) and the authors' two",
        "released recipes (`mindskip/presets.py`: `authors`, the paper-era release, and",
        "`authors-v2`, the later one), each calibrated to 0.25 on held-out items and scored on",
        "the default run's items, beside static attention drop at 0.2 and 0.25. Our run,",
        "dense and the static drops are the same jobs as the default run's (same settings,",
        "same items); their committed files here were copied from `results/`.",
        "",
        *how_it_ran(root, config, config_path),
        *section("Training: where each recipe leaves the routers", tables / "training.md"),
        "## Each recipe against the best static mixture at its ratio",
        "",
        *_recipe_sentences(tables),
        "",
        *section("The recipes table", tables / "recipes.md"),
    ]
    return "\n".join(lines)


def _capacity_sentences(tables: Path) -> list[str]:
    """Per unit and routing, each control's validation capacity against its target."""
    path = tables / "capacity.csv"
    if not path.is_file():
        return []
    df = pd.read_csv(path)
    lines = []
    for (unit, routing), sub in df.groupby(["unit", "routing"], sort=False):
        parts = []
        for r in sub.sort_values("control", ascending=False).to_dict("records"):
            lo, hi = r["lambda end (min)"], r["lambda end (max)"]
            end = f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
            lam = f"lambda {r['lambda start']:g}"
            lam += "" if r["control"] == "fixed" else f" -> {end}"
            ok = "reached" if bool(r["reached"]) else "**missed**"
            parts.append(
                f"{r['control']} ({lam}): capacity {r['capacity (val)']:.3f} for target "
                f"{r['target']:g}, {ok}"
            )
        lines.append(f"- **{unit}, {routing}**: " + "; ".join(parts) + ".")
    missed = df[~df["reached"].astype(bool)]
    by = missed.groupby("control").size().to_dict()
    total = df.groupby("control").size().to_dict()
    lines += [
        "",
        "Targets missed: "
        + ", ".join(f"{by.get(c, 0)} of {n} {c}" for c, n in sorted(total.items()))
        + ".",
    ]
    return lines


def capacity_readme(root: Path, config: dict[str, Any], model_name: str, config_path: Path) -> str:
    """``results/capacity/README.md``: fixed lambda against dual control, every unit."""
    tables = root / "tables"
    lines = [
        f"# Capacity control: does every unit's router end at its target? ({model_name})",
        "",
        "<!-- Written by `python -m mindskip.report.readme --kind capacity` from the tables",
        "     below it: edit the code, not the numbers. -->",
        "",
        "`config/capacity.yaml`: our recipe (192 long answers, 12 steps, target capacity",
        "0.5) for every unit (attention, MLP, block) and routing (sequence, token), with the",
        "penalty's lambda fixed at 10 (`capacity_control: fixed`, the default) and with",
        "lambda as a signed multiplier of capacity = target (`capacity_control: dual`,",
        "moved after every step by `dual_lr` x the step's capacity error and restarted at",
        "-10 or +10 when the capacity crosses the target, so it pulls capacity back from",
        "either side; its end value follows the last step's side of the target). Routers",
        "are trained, not scored:",
        "",
        "    snakemake --configfile config/capacity.yaml --until train_routers --cores 2",
        "    python -m mindskip.report --results results/capacity --training-only",
        "    python -m mindskip.report.readme --results results/capacity --kind capacity",
        "",
        "Capacity is measured on the held-out validation sequences after training (their",
        "count is in the training table); a",
        "target counts as reached within the recipe's tolerance (0.05).",
        "",
        *_capacity_sentences(tables),
        "",
        *section("The capacity table", tables / "capacity.md"),
        *section("Training", tables / "training.md"),
        "Figure: `figures/training_curves.png` (LM loss and capacity per step).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m mindskip.report.readme", description=__doc__)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--kind", choices=tuple(_KINDS), default="default")
    ap.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="(--kind full) another model's matrix config: its verdicts beside these",
    )
    args = ap.parse_args(argv)
    if args.also and args.kind != "full":
        ap.error("--also is for --kind full (the matrix README)")
    for path in [args.config, *args.also]:
        if not path.is_file():
            ap.error(f"no config at {path}")
    config = workflow_config(args.config)  # as Snakemake runs it: over config.yaml
    write = _KINDS[args.kind]
    extra = {"also": tuple(args.also)} if args.also else {}
    text = write(args.results, config, args.model, args.config, **extra)
    write_text(args.results / "README.md", text)
    print(args.results / "README.md")
    return 0


_KINDS = {
    "default": results_readme,
    "recipes": recipes_readme,
    "capacity": capacity_readme,
    "full": full_readme,
}

if __name__ == "__main__":
    sys.exit(main())
