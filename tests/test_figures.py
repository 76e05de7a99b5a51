"""Figures name methods in words and keep each claim's figure readable: no torch, no model.

The eval frames here are built by hand (the columns :func:`mindskip.report.eval_frame`
writes), shaped like the full matrix: every unit and routing, sample counts, recipe
variants, LoRA, static drop by ranking and candidates, three random seeds, each run named
by a slug that ends in a hash as the workflow names them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mindskip.report import FIGURES, build_report
from mindskip.report.figures import (
    CLAIM_FIGURES,
    MAX_SERIES,
    figure_layer_skip,
    figure_pareto,
    figure_quality_vs_skip,
    figure_training_curves,
)
from mindskip.report.names import describe, distinct
from mindskip.roles import Roles

HASHY = re.compile(r"[0-9a-f]{6}$")
RATIOS = ("0.125", "0.250", "0.375", "0.500")
PAPER = Path(__file__).resolve().parents[1] / "resources" / "paper"


def _router(slug: str, unit: str, routing: str, n: int, **extra) -> dict:
    return {"name": slug, "kind": "router", "unit": unit, "routing": routing, "run": slug,
            "train_samples": n, **extra}  # fmt: skip


def _matrix() -> dict[str, tuple[dict, tuple[str, ...]]]:
    """{method: (spec, ratios)} shaped like the full matrix (the slugs end in hashes)."""
    main = "attn-seq-n16-c0.5-embedded-192-e5c141"
    out = {
        "dense": ({"name": "dense", "kind": "dense"}, ("native",)),
        main: (_router(main, "attn", "sequence", 192), ("native", *RATIOS)),
        "lora-r8-embedded-500-869eba": (
            {"name": "lora-r8-embedded-500-869eba", "kind": "lora",
             "lora": "r8-embedded-500-869eba", "run": "r8-embedded-500-869eba"},
            ("native",),
        ),
    }  # fmt: skip
    for slug, args, extra in (
        ("attn-tok-n16-c0.5-embedded-192-b9d975", ("attn", "token", 192), {}),
        ("mlp-seq-n16-c0.5-embedded-192-e44125", ("mlp", "sequence", 192), {}),
        ("mlp-tok-n16-c0.5-embedded-192-08d1d8", ("mlp", "token", 192), {}),
        ("block-seq-n16-c0.5-embedded-192-d752e4", ("block", "sequence", 192), {}),
        ("block-tok-n16-c0.5-embedded-192-dc668c", ("block", "token", 192), {}),
        ("attn-seq-n16-c0.5-embedded-500-b8f890", ("attn", "sequence", 500), {}),
        ("attn-seq-n16-c0.5-embedded-1000-29d14f", ("attn", "sequence", 1000), {}),
        ("attn-seq-n16-c0.5-embedded-192-distill-a1f8ec", ("attn", "sequence", 192),
         {"variant": "distill"}),
        ("attn-seq-n16-c0.5-answered-192-772f09", ("attn", "sequence", 192),
         {"variant": "data=answered"}),
        ("attn-seq-n16-c0.5-embedded-192-on-a-d1d0be", ("attn", "sequence", 192),
         {"lora": "r8-embedded-500-869eba"}),
    ):  # fmt: skip
        out[slug] = (_router(slug, *args, **extra), ("native", "0.250"))
    for unit in ("attn", "mlp", "block"):
        for cand, tag in (("routed", "n16"), ("all", "all")):
            for ranking, prefix in (("similarity", "drop"), ("last", "last")):
                name = f"{prefix}-{unit}-{tag}"
                spec = {"name": name, "kind": "static", "unit": unit, "candidates": cand,
                        "ranking": ranking}  # fmt: skip
                out[name] = (spec, RATIOS)
    for seed in (0, 1, 2):
        name = f"random{seed}-{main}"
        out[name] = ({"name": name, "kind": "random", "unit": "attn", "run": main,
                      "seed": seed}, RATIOS)  # fmt: skip
    out[f"pattern-{main}"] = (
        {"name": f"pattern-{main}", "kind": "pattern", "unit": "attn", "run": main},
        RATIOS,
    )
    return out


def _frame(matrix: dict[str, tuple[dict, tuple[str, ...]]]) -> pd.DataFrame:
    """Pooled rows as eval_frame writes them: quality falls with the skip ratio."""
    rows = []
    for i, (method, (spec, ratios)) in enumerate(sorted(matrix.items())):
        for ratio in ratios:
            r = 0.0 if spec["kind"] in ("dense", "lora") else (
                0.18 if ratio == "native" else float(ratio) + 0.001 * (i % 5)
            )  # fmt: skip
            kl, acc = 0.1 * r * r + 0.001 * (i % 3), -0.2 * r
            row = {
                "name": f"{method}@{ratio}", "method": method, "kind": spec["kind"],
                "ratio": ratio, "task": "pooled", "label": "pooled",
                "requested_skip_ratio": None if ratio == "native" else float(ratio),
                "realised_skip_ratio": r,
                "unit": spec.get("unit") if spec["kind"] != "dense" else None,
                "routing": spec.get("routing"), "run": spec.get("run"),
                "candidates": spec.get("candidates"), "seed": spec.get("seed"),
                "train_samples": spec.get("train_samples"), "lora": spec.get("lora"),
            }  # fmt: skip
            for m, v in (("kl", kl), ("acc_diff", acc)):
                row |= {m: v, f"{m}_ci_low": v - 0.01, f"{m}_ci_high": v + 0.01}
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def matrix():
    m = _matrix()
    return _frame(m), {name: spec for name, (spec, _) in m.items()}


def _labels(drawn) -> list[str]:
    return [d["label"] for d in drawn if "label" in d]


def _is_slug_or_hash(label: str, slugs) -> bool:
    return bool(HASHY.search(label)) or any(s in label for s in slugs if s != "dense")


def _all_figures(ev, specs, out: Path):
    yield "quality_vs_skip", figure_quality_vs_skip(ev, out, "t", specs=specs)[1]
    for name, fn in CLAIM_FIGURES.items():
        yield name, fn(ev, out, "t", specs=specs)[1]


def test_no_legend_label_is_a_run_slug_or_ends_in_a_hash(matrix, tmp_path):
    ev, specs = matrix
    slugs = set(specs) | {s.get("run") for s in specs.values()} - {None}
    for name, drawn in _all_figures(ev, specs, tmp_path):
        assert drawn, name
        for label in _labels(drawn):
            assert not _is_slug_or_hash(label, slugs), (name, label)
    # without the records' specs the frame's columns still give words, never slugs
    for name, drawn in _all_figures(ev, None, tmp_path):
        for label in _labels(drawn):
            assert not _is_slug_or_hash(label, slugs), (name, label)


def test_each_claim_figure_has_at_most_eight_series_with_distinct_names(matrix, tmp_path):
    ev, specs = matrix
    for name, drawn in _all_figures(ev, specs, tmp_path):
        labels = _labels(drawn)
        assert len(labels) <= MAX_SERIES, (name, labels)
        assert len(set(labels)) == len(labels), (name, labels)
    drawn = dict(_all_figures(ev, specs, tmp_path))
    assert {"MindSkip: attention, sequence", "MindSkip: MLP, sequence",
            "MindSkip: block, sequence"} <= set(_labels(drawn["claim2_units"]))  # fmt: skip
    c4 = _labels(drawn["claim4_static"])
    assert sum(x.startswith("random") for x in c4) == 1  # three seeds, one series
    assert "attention drop (last k, all layers)" in c4
    assert "attention drop (similarity, routed layers)" in c4
    assert {"LoRA r=8", "LoRA + routers", "MindSkip: attention, sequence", "dense"} == set(
        _labels(drawn["claim6_lora"])
    )
    samples = next(d for d in drawn["claim5_samples"] if d["label"] != "dense")
    assert samples["x"] == [192, 500, 1000]  # the variants and LoRA runs are not counts


def test_names_come_from_the_label_when_there_is_one(matrix, tmp_path):
    ev, specs = matrix
    main = "attn-seq-n16-c0.5-embedded-192-e5c141"
    labelled = {**specs, main: {**specs[main], "label": "attention, sequence, long answers"}}
    assert describe(labelled[main]) == "attention, sequence, long answers"
    _, drawn = figure_claim(ev, tmp_path, labelled, "claim4_static")
    assert "attention, sequence, long answers" in _labels(drawn)
    assert describe({"kind": "router", "unit": "mlp", "routing": "token"}) == "MindSkip: MLP, token"


def figure_claim(ev, out, specs, name):
    return CLAIM_FIGURES[name](ev, out, "t", specs=specs)


def test_runs_differing_only_in_train_samples_get_distinct_names():
    a = _router("attn-seq-n16-c0.5-embedded-192-aaaaaa", "attn", "sequence", 192)
    b = _router("attn-seq-n16-c0.5-embedded-500-bbbbbb", "attn", "sequence", 500)
    names = distinct({"a": a, "b": b})
    assert names == {
        "a": "MindSkip: attention, sequence, 192 samples",
        "b": "MindSkip: attention, sequence, 500 samples",
    }
    # a recipe variant is named by what changed, and no setting is added where none is needed
    c = {**a, "name": "x-distill-cccccc", "variant": "distill"}
    assert distinct({"a": a, "c": c}) == {
        "a": "MindSkip: attention, sequence",
        "c": "MindSkip: attention, sequence, distill",
    }
    # static drop: missing ranking reads as similarity; the last-k ranking says so
    assert describe({"kind": "static", "unit": "attn", "candidates": "routed"}) == (
        "attention drop (similarity, routed layers)"
    )
    assert describe({"kind": "static", "unit": "attn", "candidates": "all", "ranking": "last"}) == (
        "attention drop (last k, all layers)"
    )


def test_figures_with_no_runs_still_write_their_files(tmp_path):
    dense_only = _frame({"dense": ({"name": "dense", "kind": "dense"}, ("native",))})
    for frame, where in ((dense_only, "dense"), (pd.DataFrame(), "empty")):
        out = tmp_path / where
        figures = [
            figure_quality_vs_skip(frame, out, "t"),
            *(fn(frame, out, "t") for fn in CLAIM_FIGURES.values()),
            figure_pareto(frame, pd.DataFrame(), out, "t"),
            figure_layer_skip(pd.DataFrame(), out, "t"),
            figure_training_curves([], out, "t"),
        ]
        for paths, _ in figures:
            assert all(p.stat().st_size > 500 for p in paths), paths
        assert {p.stem for p in out.iterdir()} == set(FIGURES)


def test_the_report_writes_every_figure_of_a_dense_only_run(tmp_path):
    from test_report import _record

    evals = [_record(tmp_path, {"name": "dense", "kind": "dense", "ratio": "native"}, 0.0,
                     {"t1": set()}, 0)]  # fmt: skip
    out = build_report(Roles(), evals, [], [], PAPER, tmp_path / "t", tmp_path / "f")
    written = {Path(p).name for p in out["figures"]}
    assert written == {f"{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")}


def test_training_curves_are_named_in_words(tmp_path):
    slug = "attn-seq-n16-c0.5-embedded-500-b8f890"
    curve = [{"step": i, "lm_loss": 3.0 - 0.1 * i, "capacity": 1 - 0.05 * i} for i in range(8)]
    runs = [
        {"run": slug, "log": curve, "mindskip_config": {"unit": "attn", "routing": "sequence",
         "capacity_target": 0.5}, "data": {"train_records": 500}, "objective": "lm"},
        {"run": "attn-seq-n16-c0.5-embedded-192-e5c141", "log": curve, "objective": "lm",
         "mindskip_config": {"unit": "attn", "routing": "sequence"},
         "data": {"train_records": 192}},
    ]  # fmt: skip
    _, drawn = figure_training_curves(runs, tmp_path, "t")
    assert sorted(_labels(drawn)) == [
        "MindSkip: attention, sequence, 192 samples",
        "MindSkip: attention, sequence, 500 samples",
    ]
