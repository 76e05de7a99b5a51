"""The parts every results README is made of, each read from the tables or the logs the
workflow wrote (never typed): how a run was made and how long each stage took, which of
the plan's jobs have finished, the dense model beside its published scores, the findings,
one table as a section. :mod:`mindskip.report.readme` puts them together. No torch."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..paths import Paths
from .findings import findings
from .tables import published_scores

PAPER_DIR = Path(__file__).resolve().parents[2] / "resources" / "paper"
BIGBENCH_COMMIT = "c8a2c957b5d6e8d59b3ed203f435b168f0518d60"  # the last BIG-bench results


def stage_seconds(root: Path) -> dict[str, tuple[int, float]]:
    """(job count, summed job seconds) per rule, from Snakemake's benchmark TSVs."""
    out: dict[str, list[float]] = defaultdict(list)
    bench = Path(Paths.patterns(str(root)).benchmarks)
    for tsv in sorted(bench.rglob("*.tsv")):
        rule = tsv.relative_to(bench).parts[0].removesuffix(".tsv")
        rule = {"baselines": "rank + calibrate"}.get(rule, rule)
        out[rule].append(float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1]))
    return {k: (len(v), sum(v)) for k, v in out.items()}


def fresh_clone(root: Path) -> dict[str, Any] | None:
    path = root / "logs" / "fresh_clone.json"
    return json.loads(path.read_text()) if path.is_file() else None


def how_it_ran(root: Path, config: dict[str, Any], config_path: Path) -> list[str]:
    lines = ["## How this run was made", ""]
    fresh = fresh_clone(root)
    if fresh:
        lines += [
            f"`{fresh['command']}` on a fresh clone of commit `{fresh['commit'][:9]}` "
            f"({fresh['machine']}), {fresh['date']}: **{fresh['seconds'] / 60:.1f} minutes "
            f"from clone to report, install included** (install {fresh['install_seconds']:.0f} "
            f"s). `scripts/fresh_clone_run.sh` repeats it and writes `logs/fresh_clone.json`.",
            "",
        ]
    stages = stage_seconds(root)
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


def dense_prose(tables: Path, model_name: str) -> list[str]:
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


def findings_section(tables: Path) -> list[str]:
    path, speed = tables / "claims.csv", tables / "speed.csv"
    if not path.is_file():
        return []
    fast = None
    if speed.is_file():
        try:
            fast = pd.read_csv(speed, dtype={"ratio": str})
        except pd.errors.EmptyDataError:  # the report writes no columns when nothing ran
            pass
    return findings(pd.read_csv(path), fast)


def section(title: str, path: Path, lead: str = "") -> list[str]:
    if not path.is_file():
        return []
    return [f"## {title}", "", *([lead, ""] if lead else []), path.read_text().strip(), ""]


def bigbench_gone() -> list[str]:
    return [
        "**The BIG-bench results are gone.** Until 2026-12-06 the embedded suite scored",
        "BIG-bench stand-ins for the paper's tasks; `bigbench==1.0.0` then left the package",
        "registry, so those runs (this folder and `results/full/`) can no longer be rebuilt and",
        "were removed. Their last version is in the git history (commit",
        f"`{BIGBENCH_COMMIT[:9]}`: `git show {BIGBENCH_COMMIT[:9]}:results/README.md`). The",
        "runs here score the paper's own tasks, through lm-eval's own task definitions.",
        "",
    ]


def workflow_config(path: Path, base: Path = Path("config.yaml")) -> dict[str, Any]:
    """The config Snakemake runs with ``--configfile path``: ``path`` merged over
    ``config.yaml``, validated with the schema's defaults filled in."""
    import yaml
    from snakemake.utils import update_config

    from ..schema import validated

    config = yaml.safe_load(base.read_text())
    if path.resolve() != base.resolve():
        update_config(config, yaml.safe_load(path.read_text()))
    return validated(config)


def progress(config: dict[str, Any], config_path: Path) -> tuple[bool, list[str]]:
    """Which of the plan's jobs have written their result (complete?, the lines)."""
    from ..plan import plan

    p = plan(config)
    stages = {
        "router trainings": [p.paths.routers(run).metrics for run in p.runs],
        "LoRA fine-tunes": [p.paths.lora(slug).metrics for slug in p.loras],
        "scorings": [Path(p.paths.eval(m, r)) for m, r in p.eval_jobs],
        "speed profiles": [Path(p.paths.profile(m, r)) for m, r in p.profile_jobs],
    }
    lines = ["| stage | finished | planned |", "|---|---:|---:|"]
    complete = True
    for stage, files in stages.items():
        done = sum(f.is_file() for f in files)
        complete &= done == len(files)
        lines.append(f"| {stage} | {done} | {len(files)} |")
    scored = dict(zip(p.eval_jobs, stages["scorings"], strict=True))
    missing = sorted(f"{m}@{r}" for (m, r), f in scored.items() if not f.is_file())
    if missing:
        lines += ["", "Scorings not finished: " + ", ".join(f"`{m}`" for m in missing) + "."]
    lines += [
        "",
        f"Resume (it runs only what is missing): `bash scripts/run.sh --configfile "
        f"{config_path}`; what remains: `snakemake --configfile {config_path} --dry-run "
        "--quiet rules`.",
        "",
    ]
    return complete, lines
