"""Tables and figures from the JSON and CSV that the other stages wrote.

Never imports torch: tables and figures rebuild in seconds from ``results/``. Every table
is written as CSV (numbers, tidy), Markdown and LaTeX; every figure as PNG and PDF. The
paper's numbers (``resources/paper/*.csv``) stand beside ours, labelled as the paper's.
The claims table gives each of the paper's claims a verdict by the rule in
:func:`mindskip.verdicts.verdict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..roles import Roles, read_roles
from ..verdicts import bootstrap_caption, claims_latex, claims_markdown
from .collect import (
    analyse_runs,
    collect_profiles,
    collect_training,
    eval_frame,
    layer_frame,
    load_runs,
)
from .figures import (
    figure_claim_lora,
    figure_claim_routing,
    figure_claim_samples,
    figure_claim_static,
    figure_claim_units,
    figure_layer_skip,
    figure_pareto,
    figure_quality_vs_skip,
    figure_training_curves,
)
from .tables import (
    PAPER_MODEL,
    capacity_table,
    dense_table,
    layers_table,
    main_table,
    published_scores,
    recipes_table,
    speed_table,
    sweep_points,
    sweep_table,
    training_table,
    write_table,
)

TABLES = (
    "main",
    "sweep",
    "claims",
    "metrics",
    "layers",
    "training",
    "speed",
    "dense",
    "paper_main",
    "recipes",
)
FIGURES = (
    "quality_vs_skip",
    "claim2_units",
    "claim3_routing",
    "claim4_static",
    "claim5_samples",
    "claim6_lora",
    "pareto",
    "layer_skip",
    "training_curves",
)

__all__ = [
    "FIGURES",
    "build_training_report",
    "capacity_table",
    "TABLES",
    "analyse_runs",
    "build_report",
    "collect_profiles",
    "collect_training",
    "eval_frame",
    "load_runs",
    "main_table",
    "speed_table",
    "sweep_points",
    "sweep_table",
    "training_table",
    "write_table",
]


def build_report(
    roles: str | Path | Roles,
    evals: Sequence[str | Path],
    profiles: Sequence[str | Path],
    metrics: Sequence[str | Path],
    paper_dir: str | Path,
    tables_dir: str | Path,
    figures_dir: str | Path,
    model_name: str = "",
) -> dict[str, list[str]]:
    """Every table and figure. Returns the paths written. ``roles``: which runs the claims
    compare (:mod:`mindskip.roles`: the plan's ``roles.json``, or the record itself). The
    inputs are read in path order, so the same files give byte-identical tables whatever
    order they are passed in (the workflow's ``report`` rule and ``python -m
    mindskip.report`` agree)."""
    paper_dir, tables_dir, figures_dir = Path(paper_dir), Path(tables_dir), Path(figures_dir)
    evals, profiles, metrics = (sorted(map(str, x)) for x in (evals, profiles, metrics))
    runs = load_runs(evals)
    analysis = analyse_runs(runs, roles if isinstance(roles, Roles) else read_roles(roles))
    ev = eval_frame(runs, analysis)
    layers = layer_frame(runs)
    pr = collect_profiles(profiles)
    tr = collect_training(metrics)
    tag = f"ours: {model_name}" if model_name else "ours"
    written: dict[str, list[str]] = {"tables": [], "figures": []}
    _claims_tables(analysis, tables_dir, tag, written)
    published = published_scores(paper_dir, model_name)
    for name, frames, caption in _tables(ev, pr, layers, tr, analysis, paper_dir, published, tag):
        numeric, shown = frames if isinstance(frames, tuple) else (frames, None)
        written["tables"] += map(str, write_table(numeric, tables_dir, name, caption, shown))
    specs = {r.method.name: r.method for r in runs}  # methods named in words from their settings
    for fn, args in (
        (figure_quality_vs_skip, (ev,)),
        (figure_claim_units, (ev,)),
        (figure_claim_routing, (ev,)),
        (figure_claim_static, (ev,)),
        (figure_claim_samples, (ev,)),
        (figure_claim_lora, (ev,)),
        (figure_pareto, (ev, pr)),
        (figure_layer_skip, (layers,)),
        (figure_training_curves, (tr,)),
    ):
        paths, _ = fn(*args, figures_dir, tag, specs=specs)
        written["figures"] += [str(p) for p in paths]
    return written


def _tables(ev, pr, layers, tr, analysis, paper_dir: Path, published, tag: str) -> list[tuple]:
    """``(name, frame or (numeric, shown), caption)`` of every table but the claims'."""
    paper_main = pd.read_csv(paper_dir / "main_results.csv")
    paper_drop = pd.read_csv(paper_dir / "attention_drop_comparison.csv")
    paper_sizes = pd.read_csv(paper_dir / "dataset_size_ablation.csv")
    paired = (
        "paired against dense on the same items: Δ accuracy in points and KL(dense ‖ method) "
        f"of the length-normalised choice distribution, each with its CI ({bootstrap_caption()})"
    )
    return [
        (
            "main",
            main_table(ev, pr, paper_main),
            f"Main table ({tag}): score ± s.e. in % per task (n items), pooled over items, "
            f"{paired}; speedup per regime with its CI ('not resolved' when it spans 1.0); "
            f"the paper's {PAPER_MODEL} row for the same unit and routing (the paper's "
            "numbers).",
        ),
        (
            "sweep",
            sweep_table(ev, pr, paper_drop),
            f"Skip-ratio sweep ({tag}): every method at each requested ratio, {paired}; the "
            "paper's MindSkip vs Attention Drop (read off its bar chart, task unlabelled).",
        ),
        (
            "metrics",
            analysis.metrics_frame(),
            f"Every paired metric ({tag}), per task and pooled, long format.",
        ),
        (
            "layers",
            layers_table(layers),
            f"Per layer ({tag}): skip rate (dynamic share) averaged over tasks; the dynamic "
            "share min(c, 1 - c) is the share of a layer's decisions no static layer choice "
            "reproduces.",
        ),
        ("training", training_table(tr, paper_sizes), _training_caption(tag)),
        (
            "speed",
            speed_table(pr, ev),
            f"Speed per regime ({tag}): speedup over dense in the same process with its 95% "
            "CI, the hand-removed ceiling's, the skip ratio on the profiled vs the scored "
            "inputs; machine: the CPU (or GPU) that timed it (rows from two machines "
            "compare each to its own dense); load: the machine's 1-minute load average at "
            "the profile's start and end against the threads it timed with (a load well "
            "above the threads means other work shared the CPU while it was timed).",
        ),
        (
            "dense",
            dense_table(ev, published),
            f"The dense model ({tag}) per task, with the scores its authors published for it "
            "(resources/published/; their setting differs from ours where the row says so).",
        ),
        ("paper_main", paper_main, "The paper's main table (Llama-3-8B), for reference."),
        (
            "recipes",
            recipes_table(analysis.frontier, ev, tr),
            f"Every router run at a calibrated ratio ({tag}), whatever its recipe: the "
            "capacity its training reached, its realised skip ratio at its own threshold "
            f"(native) and after calibration, {paired}, and KL against the best static "
            "mixture at its realised ratio (the lowest-KL per-sequence mixture of two static "
            "drops, or one and dense, by point estimate: it errs against the router).",
        ),
    ]


def _training_caption(tag: str) -> str:
    return f"Router-Tuning runs ({tag}): data, capacity reached, validation perplexity, cost."


def build_training_report(
    metrics: Sequence[str | Path],
    paper_dir: str | Path,
    tables_dir: str | Path,
    figures_dir: str | Path,
    model_name: str = "",
) -> dict[str, list[str]]:
    """The training and capacity tables and the training curves of router runs that were
    trained but not scored (``python -m mindskip.report --training-only``)."""
    tr = collect_training(sorted(map(str, metrics)))
    paper_sizes = pd.read_csv(Path(paper_dir) / "dataset_size_ablation.csv")
    tag = f"ours: {model_name}" if model_name else "ours"
    written: dict[str, list[str]] = {"tables": [], "figures": []}
    for frame, name, caption in (
        (
            training_table(tr, paper_sizes),
            "training",
            _training_caption(tag),
        ),
        (
            capacity_table(tr),
            "capacity",
            f"Capacity control ({tag}): each run with a target, how lambda was controlled "
            "(fixed, or dual: a signed multiplier moved by dual_lr x the capacity error "
            "after every step and restarted at +-lambda start when the target is crossed) and "
            "where it ended, the validation capacity against the target, and whether it was "
            "reached (|error| <= tolerance).",
        ),
    ):
        written["tables"] += [str(p) for p in write_table(frame, tables_dir, name, caption)]
    paths, _ = figure_training_curves(tr, Path(figures_dir), tag)
    written["figures"] += [str(p) for p in paths]
    return written


def _claims_tables(analysis, tables_dir: Path, tag: str, written: dict) -> None:
    from ..files import write_text

    caption = (
        f"The paper's claims ({tag}): each comparison at A's realised skip ratio (B mixed to "
        "it per sequence where the two differ by more than 0.02), its effect on the deciding "
        "metric and on accuracy with CIs, n, the smallest detectable effect (MDE), the items "
        "that would decide an undecided comparison, and the verdict by the rule in README.md "
        f"(verdicts are about this model and these items). {bootstrap_caption()}."
    )
    paths = [tables_dir / f"claims.{ext}" for ext in ("csv", "md", "tex")]
    write_text(paths[0], analysis.claims.to_csv(index=False))
    summary = analysis.summary.to_markdown(index=False) if len(analysis.summary) else ""
    write_text(paths[1], claims_markdown(analysis.claims, caption) + f"\n{summary}\n")
    write_text(paths[2], claims_latex(analysis.claims, caption))
    written["tables"] += [str(p) for p in paths]
