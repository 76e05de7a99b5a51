"""Tables and figures from the JSON and CSV that the other stages wrote.

Never imports torch: tables and figures rebuild in seconds from ``results/``. Every table
is written as CSV, Markdown and LaTeX; every figure as PNG and PDF. The paper's numbers
(``resources/paper/*.csv``) stand beside ours, labelled as the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .collect import collect_evals, collect_profiles, collect_training, read_json
from .figures import (
    figure_accuracy_vs_skip,
    figure_layer_skip,
    figure_pareto,
    figure_training_curves,
)
from .tables import (
    PAPER_MODEL,
    main_table,
    speed_table,
    sweep_points,
    sweep_table,
    training_table,
    write_table,
)

__all__ = [
    "build_report",
    "collect_evals",
    "collect_profiles",
    "collect_training",
    "main_table",
    "speed_table",
    "sweep_points",
    "sweep_table",
    "training_table",
    "write_table",
]


def build_report(
    evals: Sequence[str | Path],
    profiles: Sequence[str | Path],
    metrics: Sequence[str | Path],
    paper_dir: str | Path,
    tables_dir: str | Path,
    figures_dir: str | Path,
    model_name: str = "",
) -> dict[str, list[str]]:
    """Every table and figure. Returns the paths written."""
    paper_dir = Path(paper_dir)
    ev = collect_evals(evals)
    pr = collect_profiles(profiles)
    tr = collect_training(metrics)
    paper_main = pd.read_csv(paper_dir / "main_results.csv")
    paper_drop = pd.read_csv(paper_dir / "attention_drop_comparison.csv")
    paper_sizes = pd.read_csv(paper_dir / "dataset_size_ablation.csv")
    tag = f"ours: {model_name}" if model_name else "ours"
    written: dict[str, list[str]] = {"tables": [], "figures": []}

    def table(df: pd.DataFrame, name: str, caption: str) -> None:
        written["tables"] += [str(p) for p in write_table(df, tables_dir, name, caption)]

    table(
        main_table(ev, pr, paper_main),
        "main",
        f"Main table ({tag}): score ± s.e. in %, n items per task, average, paired "
        f"difference to dense, speedup per regime; the paper's {PAPER_MODEL} row for the "
        "same unit and routing beside ours (paper numbers are the paper's, not ours).",
    )
    table(
        sweep_table(ev, pr, paper_drop),
        "sweep",
        f"Skip-ratio sweep ({tag}): MindSkip calibrated to each ratio, static drop and "
        "random skipping at the same ratio; the paper's MindSkip vs Attention Drop values "
        "(read off its bar chart, task unlabelled) at the same ratio.",
    )
    table(
        training_table(tr, paper_sizes),
        "training",
        f"Router-Tuning runs ({tag}): data, capacity reached, validation perplexity, cost.",
    )
    table(speed_table(pr), "speed", f"Speed per regime ({tag}), with the hand-removed ceiling.")
    table(paper_main, "paper_main", "The paper's main table (Llama-3-8B), for reference.")

    figures_dir = Path(figures_dir)
    records = [read_json(p) for p in evals]
    written["figures"] += [str(p) for p in figure_accuracy_vs_skip(ev, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_pareto(ev, pr, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_layer_skip(records, figures_dir, tag)]
    written["figures"] += [str(p) for p in figure_training_curves(tr, figures_dir, tag)]
    return written
