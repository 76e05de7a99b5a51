"""``results/README.md`` written from the tables, so that no number in it is typed by hand.

``python -m mindskip.report.readme --results results --model smollm2-135m`` reads the
tables the report wrote (``tables/*.csv`` and ``*.md``), the job benchmarks
(``logs/benchmarks/**/*.tsv``) and the fresh-clone timing (``logs/fresh_clone.json``,
written by ``scripts/fresh_clone_run.sh``), and writes the README: how the run was made and
how long each stage took, the dense model beside its published scores, the main table,
the claims and the speed table. Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import write_text
from .findings import findings
from .tables import published_scores

PAPER_DIR = Path(__file__).resolve().parents[2] / "resources" / "paper"
BIGBENCH_COMMIT = "c8a2c957b5d6e8d59b3ed203f435b168f0518d60"  # the last BIG-bench results


def _stage_seconds(root: Path) -> dict[str, tuple[int, float]]:
    """(job count, summed job seconds) per rule, from Snakemake's benchmark TSVs."""
    out: dict[str, list[float]] = defaultdict(list)
    bench = root / "logs" / "benchmarks"
    for tsv in sorted(bench.rglob("*.tsv")):
        rule = tsv.relative_to(bench).parts[0].removesuffix(".tsv")
        rule = {"baselines": "rank + calibrate"}.get(rule, rule)
        out[rule].append(float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1]))
    return {k: (len(v), sum(v)) for k, v in out.items()}


def _fresh_clone(root: Path) -> dict[str, Any] | None:
    path = root / "logs" / "fresh_clone.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _how_it_ran(root: Path, config: dict[str, Any], config_path: Path) -> list[str]:
    lines = ["## How this run was made", ""]
    fresh = _fresh_clone(root)
    if fresh:
        lines += [
            f"`{fresh['command']}` on a fresh clone of commit `{fresh['commit'][:9]}` "
            f"({fresh['machine']}), {fresh['date']}: **{fresh['seconds'] / 60:.1f} minutes "
            f"from clone to report, install included** (install {fresh['install_seconds']:.0f} "
            f"s). `scripts/fresh_clone_run.sh` repeats it and writes `logs/fresh_clone.json`.",
            "",
        ]
    stages = _stage_seconds(root)
    if stages:
        lines += ["| stage | jobs | job seconds (summed; scoring runs two at a time) |"]
        lines += ["|---|---:|---:|"]
        for rule, (n, s) in sorted(stages.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"| {rule} | {n} | {s:.0f} |")
        lines.append("")
    e = config.get("eval", {})
    limits = e.get("task_limits") or {}
    tasks = ", ".join(f"`{t}` ({limits.get(t, e.get('limit'))} items)" for t in e["tasks"])
    shots = e.get("num_fewshot")
    shots_text = "the paper's few-shot counts" if shots is None else f"{shots}-shot"
    lines += [
        f"Scored: {tasks}, {shots_text}, routing decided on the prompt "
        f"(`route_on: {e.get('route_on', 'prompt')}`). The config is `{config_path}`; every "
        "result file records the settings, versions and input hashes that made it.",
        "",
    ]
    return lines


def _dense_prose(tables: Path, model_name: str) -> list[str]:
    """The dense model against the published numbers, each difference computed here."""
    path = tables / "dense.md"
    if not path.is_file():
        return []
    dense = pd.read_csv(tables / "dense.csv")
    lines = [
        "## The dense model against its published scores",
        "",
        "A check on the data and the task files: the dense model, scored by this pipeline,",
        "beside the numbers its authors published for it (`resources/published/`, with the",
        "source of each).",
        "",
        path.read_text().split("\n", 2)[-1].strip(),  # the table without its caption
        "",
    ]
    published = published_scores(PAPER_DIR, model_name)
    if published is None:
        return lines
    own = published["model"].iloc[0]  # the model itself (rows for its base model follow)
    inst = published[published["model"] == own].set_index("task")
    keys = dense["task"].str.removesuffix("_embedded")
    ours = dict(zip(keys, 100 * dense["value"], strict=True))
    se = dict(zip(keys, 100 * dense["stderr"], strict=True))
    for key in ("hellaswag", "piqa"):
        if key in ours and key in inst.index:
            diff = ours[key] - inst.loc[key, "value"]
            within = abs(diff) <= 1.96 * se[key]
            verdict = "within" if within else "outside"
            lines.append(
                f"- {inst.loc[key, 'label']}: ours {ours[key]:.1f} ± {se[key]:.1f}, published "
                f"{inst.loc[key, 'value']:.1f} ({diff:+.1f} points, {verdict} 1.96 s.e. of ours"
                + (": not resolved)." if within else ").")
            )
    have = [k for k in ("arc_easy", "arc_challenge") if k in ours]
    if "arc" in inst.index and have:
        mean = sum(ours[k] for k in have) / len(have)
        note = "" if len(have) == 2 else " (one part only: not the same quantity)"
        lines.append(
            f"- ARC: published {inst.loc['arc', 'value']:.1f} as the mean of ARC-E and ARC-C; "
            f"ours {mean:.1f} over {', '.join(have)}{note}."
        )
    lines += [
        "",
        "Why they differ (beside sampling error: each of our rows has its s.e.): the weights",
        "are the 4-bit GGUF's, dequantised, not the original bf16 release; the authors score",
        "with lighteval (per-character normalisation without the leading space, the chat",
        "template for instruct models, bf16 on vLLM), we with lm-eval's own task definitions",
        "(its `acc_norm`, plain text, float32 on the CPU); and we score a seeded subset of the",
        "items, not the whole split.",
        "",
    ]
    return lines


def _findings(tables: Path) -> list[str]:
    path = tables / "claims.csv"
    return findings(pd.read_csv(path)) if path.is_file() else []


def _section(title: str, path: Path, lead: str = "") -> list[str]:
    if not path.is_file():
        return []
    return [f"## {title}", "", *([lead, ""] if lead else []), path.read_text().strip(), ""]


def _bigbench_gone() -> list[str]:
    return [
        "**The BIG-bench results are gone.** Until 2026-12-06 the embedded suite scored",
        "BIG-bench stand-ins for the paper's tasks; `bigbench==1.0.0` then left the package",
        "registry, so those runs (this folder and `results/full/`) can no longer be rebuilt and",
        "were removed. Their last version is in the git history (commit",
        f"`{BIGBENCH_COMMIT[:9]}`: `git show {BIGBENCH_COMMIT[:9]}:results/README.md`). The",
        "runs here score the paper's own tasks, through lm-eval's own task definitions.",
        "",
    ]


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
        *(_bigbench_gone() if root.name == "results" else []),
        *_how_it_ran(root, config, config_path),
        *_dense_prose(tables, model_name),
        *_section(
            "Main table",
            tables / "main.md",
            "The paper's rows (Llama-3-8B) sit under the same task columns; they are the "
            "paper's numbers, on an 8B model with the paper's few-shot settings.",
        ),
        *_findings(tables),
        *_section(
            "The paper's claims",
            tables / "claims.md",
            "Every comparison between two methods is made at the first method's realised "
            "skip ratio: where the second's differs by more than 0.02 it is replaced by the "
            "per-sequence mixture of its two neighbouring points (the weight is in the "
            "table); a comparison that cannot be matched decides nothing.",
        ),
        *_section("Speed", tables / "speed.md"),
        "Figures: `figures/` (and `report.html`); every table also as CSV and LaTeX in `tables/`.",
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
        *_how_it_ran(root, config, config_path),
        *_section("Training: where each recipe leaves the routers", tables / "training.md"),
        "## Each recipe against the best static mixture at its ratio",
        "",
        *_recipe_sentences(tables),
        "",
        *_section("The recipes table", tables / "recipes.md"),
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
        *_section("The capacity table", tables / "capacity.md"),
        *_section("Training", tables / "training.md"),
        "Figure: `figures/training_curves.png` (LM loss and capacity per step).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import yaml

    ap = argparse.ArgumentParser(prog="python -m mindskip.report.readme", description=__doc__)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--kind", choices=tuple(_KINDS), default="default")
    args = ap.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    write = _KINDS[args.kind]
    write_text(args.results / "README.md", write(args.results, config, args.model, args.config))
    print(args.results / "README.md")
    return 0


_KINDS = {"default": results_readme, "recipes": recipes_readme, "capacity": capacity_readme}

if __name__ == "__main__":
    sys.exit(main())
