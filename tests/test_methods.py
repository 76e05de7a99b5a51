"""The typed method specs (mindskip.methods) and the experiment plan (mindskip.plan):
validation, identities, the files a method reads, and resolving specs from those files."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from conftest import make_model

from mindskip import ConfigError, mindskip_layers
from mindskip.files import ResultFileError, write_json
from mindskip.method import KINDS, Method, resolve, stored_method
from mindskip.methods import (
    Dense,
    RandomSkip,
    Routed,
    StaticDrop,
    method_from_dict,
    prepare_method,
    set_task_rates,
)
from mindskip.plan import plan
from mindskip.roles import Roles, read_roles, write_roles
from mindskip.schema import validated
from mindskip.selection import last_layers, routed_range, static_layers

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_specs_validate_roundtrip_and_name_themselves():
    spec = RandomSkip("attn", {3: 0.5, 2: 0.25}, seed=1)
    assert spec.rates == ((2, 0.25), (3, 0.5))
    assert spec.slug.startswith("random-attn-n2-s1-")
    for s in (spec, StaticDrop("mlp", (5, 2)), Dense(), Routed("x/r", thresholds={4: 0.6})):
        assert method_from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert StaticDrop("attn", (5, 2)).slug == "static-attn-k2"
    assert Dense().slug == "dense" and Dense(lora="x/lora-a").slug == "lora-lora-a"
    assert Routed("results/routers/run1", thresholds={4: 0.6}).slug.startswith("router-run1-tau")
    for bad in (
        lambda: StaticDrop("attn", (0, 2)),
        lambda: StaticDrop("ffn", (2,)),
        lambda: RandomSkip("attn", {2: 1.5}),
        lambda: RandomSkip("attn", {}),
        lambda: RandomSkip("attn", {2: 0.5}, rates_by_task={"t": {3: 0.5}}),
        lambda: Routed("r", routing="tokens"),
        lambda: method_from_dict({"kind": "pruned"}),
        lambda: method_from_dict({"kind": "static", "unit": "attn", "layers": [2], "k": 1}),
    ):
        with pytest.raises(ConfigError):
            bad()


def test_task_rates_switch_the_random_decisions():
    spec = RandomSkip("attn", {2: 0.5, 3: 0.5}, rates_by_task={"a": {2: 1.0, 3: 0.0}})
    model = prepare_method(make_model(), spec)
    set_task_rates(model, spec, "a")
    assert [layer.force.rate for layer in mindskip_layers(model).values()] == [1.0, 0.0]
    set_task_rates(model, spec, "other")  # no rates of its own: the pooled ones
    assert [layer.force.rate for layer in mindskip_layers(model).values()] == [0.5, 0.5]


def _config(**edits) -> dict:
    """The default config with its first (swept) router run only."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["routers"] = config["routers"][:1]
    for key, value in edits.items():
        section, _, name = key.partition("__")
        config[section][name] = value
    return validated(config)


def test_plan_of_the_default_config():
    p = plan(_config(eval__also_request=True, sweep__skip_ratios=[0.125, 0.25]))
    (run,) = p.runs.values()
    assert run.slug.startswith("attn-seq-n16-c0.5-long-192-")
    kinds = sorted({m.kind for m in p.methods.values()})
    assert kinds == ["dense", "pattern", "random", "router", "static"]
    assert {"drop-attn-all", "drop-attn-n16", f"random0-{run.slug}", f"pattern-{run.slug}"} <= set(
        p.methods
    )
    # dense and the router natively (and under route_on=request); the router, random and
    # its pattern at every swept ratio; static drop (the similarity ranking x 2 candidate
    # sets) at every swept ratio and baselines.static_ratios (0.2)
    assert p.static_ratios == ("0.125", "0.200", "0.250")
    assert len(p.eval_jobs) == 3 + len(p.ratios) * 3 + len(p.static_ratios) * 2
    req = p.method(f"request-{run.slug}")
    assert (req.kind, req.route_on, req.variant) == ("router", "request", "request")
    assert (f"request-{run.slug}", "native") not in p.profile_jobs
    assert p.inputs("drop-attn-n16", "0.250")["ranking"].endswith("ranking-attn.json")
    ref = p.inputs(f"pattern-{run.slug}", "0.125")["reference"]
    assert ref == f"results/eval/smollm2-135m/{run.slug}/0.125/embedded.json"
    assert p.params(run.slug, "native")["kind"] == "router"
    with pytest.raises(KeyError, match="no method 'nope'"):
        p.method("nope")


def test_every_identity_setting_makes_another_run():
    base = _config()
    twin = copy.deepcopy(base)
    twin["routers"].append(dict(twin["routers"][0]))
    with pytest.raises(ValueError, match="same run"):
        plan(twin)
    for key, value in (("capacity_lambda", 1.0), ("train_samples", 64)):
        other = copy.deepcopy(base)
        other["routers"].append({**other["routers"][0], key: value})
        slugs = list(plan(other).runs)
        assert len(set(slugs)) == 2, key
    other = copy.deepcopy(base)
    other["routers"].append({**other["routers"][0], "sweep": False})  # not an identity
    with pytest.raises(ValueError, match="same run"):
        plan(other)


def test_joint_lora_is_refused_before_any_job_runs():
    """A routers entry with lora_r > 0 would train adapters the evaluation never loads: the
    plan refuses it and names the paper's LoRA setting instead."""
    config = _config()
    config["routers"][0]["lora_r"] = 4
    with pytest.raises(ValueError, match="entry 0: lora_r 4 trains LoRA adapters jointly"):
        plan(config)


def test_unknown_dataset_or_lora_is_named():
    config = _config()
    config["routers"][0]["data"] = "alpaca"
    with pytest.raises(ValueError, match="'alpaca' is not a key of 'datasets'"):
        plan(config)
    config = _config()
    config["routers"][0]["lora"] = "a"
    with pytest.raises(ValueError, match="lora 'a' is not the name"):
        plan(config)


def test_static_layers_among_candidates():
    ranking = {
        "num_layers": 8,
        "ranking": [{"layer": i, "similarity": 1 - i / 10} for i in (7, 1, 2, 5, 3, 4, 6)],
    }
    assert static_layers(ranking, 0.25) == (1, 7)
    assert static_layers(ranking, 0.25, candidates=(2, 3, 4, 5, 6)) == (2, 5)
    with pytest.raises(ValueError, match="only 2 are candidates"):
        static_layers(ranking, 0.5, candidates=(2, 3))


def test_resolve_reads_each_kind_from_its_files(tmp_path):
    rank = {
        "format": 1,
        "num_layers": 6,
        "ranking": [{"layer": i, "similarity": 1 - i / 10} for i in (1, 4, 2, 3, 5)],
    }
    write_json(tmp_path / "rank.json", rank)
    ref = {
        "routing": {
            "realised": {"num_layers": 6, "skip_ratio": 2 / 6, "capacity_per_layer": cap()},
            "realised_per_task": {"t": {"capacity_per_layer": cap()}},
        }
    }
    write_json(tmp_path / "ref.json", ref)
    static = {
        "name": "drop",
        "kind": "static",
        "unit": "attn",
        "ratio": "0.333",
        "candidates": "routed",
    }
    spec, meta = resolve(static | {"num_routed": 3}, {"ranking": tmp_path / "rank.json"})
    assert spec == StaticDrop("attn", (2, 4)) and meta["spec"]["kind"] == "static"
    spec, _ = resolve(static | {"candidates": "all"}, {"ranking": tmp_path / "rank.json"})
    assert spec == StaticDrop("attn", (1, 4))
    pattern = {"name": "pattern-r", "kind": "pattern", "unit": "attn", "ratio": "0.333"}
    spec, _ = resolve(pattern, {"reference": tmp_path / "ref.json"})
    assert spec == StaticDrop("attn", (2, 4))  # the two layers it executes least
    rnd = {"name": "random3-r", "kind": "random", "unit": "attn", "ratio": "0.333", "seed": 3}
    spec, _ = resolve(rnd, {"reference": tmp_path / "ref.json"})
    assert dict(spec.rates) == pytest.approx({1: 0.0, 2: 0.9, 3: 0.2, 4: 0.9})
    assert spec.seed == 3 and dict(spec.rates_by_task)["t"] == spec.rates


def cap() -> dict[str, float]:
    return {"1": 1.0, "2": 0.1, "3": 0.8, "4": 0.1}


def test_a_run_with_its_own_ratios_and_no_baselines():
    config = _config(eval__also_request=True)
    extra = {**config["routers"][0], "unit": "mlp", "sweep": False, "ratios": [0.25]}
    config["routers"].append(extra | {"sweep_baselines": False})
    p = plan(config)
    mlp = next(r for r in p.runs.values() if r.unit == "mlp")
    assert mlp.ratios == ("0.250",)
    jobs = {(m, r) for m, r in p.eval_jobs if m == mlp.slug or mlp.slug in m}
    assert jobs == {(mlp.slug, "native"), (mlp.slug, "0.250"), (f"request-{mlp.slug}", "native")}
    assert "drop-attn-n16" in p.methods and "drop-mlp-n16" not in p.methods  # units: attn


def test_a_runs_recipe_changes_are_its_identity_and_are_checked():
    base = _config()
    other = copy.deepcopy(base)
    other["routers"].append({**other["routers"][0], "recipe": {"objective": "distill"}})
    p = plan(other)
    assert len(set(p.runs)) == 2
    (distill,) = (m for m in p.methods.values() if m.kind == "router" and m.variant == "distill")
    assert distill.name.startswith("attn-seq-n16-c0.5-long-192-distill-")
    bad = copy.deepcopy(base)
    bad["routers"][0]["recipe"] = {"objectve": "distill"}
    with pytest.raises(ValueError, match="entry 0 recipe.*objectve"):
        plan(bad)
    bad["routers"][0]["recipe"] = {"penalty": "sum"}
    with pytest.raises(ValueError, match="entry 0 recipe.penalty"):
        plan(bad)


def test_schema_recipe_defaults_are_the_training_defaults():
    """One default per setting: the workflow's (schema) and the library's (TrainConfig)."""
    from mindskip.schema import schema_defaults
    from mindskip.train import TrainConfig

    schema = schema_defaults("recipe")
    lib = TrainConfig().to_dict()
    shared = set(schema) & set(lib)
    assert set(schema) - shared == {"val_count"}  # the split's, not the recipe's
    assert {k: schema[k] for k in shared} == {k: lib[k] for k in shared}


def test_a_generated_dataset_must_answer_a_source():
    config = _config()
    config["datasets"]["gen"] = {"generate": "embedded"}
    config["routers"][0]["data"] = "gen"
    p = plan(config)
    assert p.paths.data("gen") == "results/data/smollm2-135m/gen.jsonl"
    config["datasets"]["gen2"] = {"generate": "gen"}
    with pytest.raises(ValueError, match="datasets.gen2.generate"):
        plan(config)


# --------------------------------------------------------------------------- last-k drop
def test_last_k_drops_the_last_candidates_over_routed_and_over_all():
    """SmolLM2-135M: 30 layers; the routed range of n=16 is 13..28 (the last 16 before the
    final layer), so last-k over routed never drops layer 29 and last-k over all drops it
    first: the two differ at every ratio."""
    routed = routed_range(30, 16)
    assert routed == tuple(range(13, 29))
    assert last_layers(30, 0.2, routed) == (23, 24, 25, 26, 27, 28)  # k = 6
    assert last_layers(30, 0.2) == (24, 25, 26, 27, 28, 29)
    assert last_layers(30, 0.25, routed) == tuple(range(21, 29))  # k = round(7.5) = 8
    assert last_layers(30, 0.25) == tuple(range(22, 30))
    assert last_layers(30, 0.5) == tuple(range(15, 30))  # k = 15 of layers 1..29
    assert last_layers(8, 0.05) == ()  # k = 0
    with pytest.raises(ValueError, match="needs 18 layers; only 16 are candidates"):
        last_layers(30, 0.6, routed)


def test_resolve_last_k_needs_no_ranking_and_records_how_it_chose(tmp_path):
    last = {"name": "last", "kind": "static", "unit": "attn", "ratio": "0.200", "ranking": "last"}
    routed = last | {"candidates": "routed", "num_routed": 16}
    spec, meta = resolve(routed, {"assets": "x"}, num_layers=30)
    assert spec == StaticDrop("attn", (23, 24, 25, 26, 27, 28))
    assert meta["method_spec"]["layers"] == [23, 24, 25, 26, 27, 28]
    rec = meta["spec"]
    assert (rec["kind"], rec["unit"], rec["candidates"], rec["ranking"]) == (
        "static", "attn", "routed", "last",
    )  # fmt: skip
    spec, meta = resolve(last | {"candidates": "all"}, {}, num_layers=30)
    assert spec == StaticDrop("attn", (24, 25, 26, 27, 28, 29))
    assert meta["spec"]["candidates"] == "all" and meta["spec"]["ranking"] == "last"
    with pytest.raises(ValueError, match="number of layers"):
        resolve(last | {"candidates": "all"}, {})
    # a similarity drop's planned method names no ranking (its params are unchanged); its
    # record says "similarity"
    write_json(tmp_path / "rank.json", {"format": 1, "num_layers": 4, "ranking": [
        {"layer": 2, "similarity": 0.9}, {"layer": 1, "similarity": 0.5}]})  # fmt: skip
    sim = {"name": "drop", "kind": "static", "unit": "attn", "ratio": "0.250", "candidates": "all"}
    spec, meta = resolve(sim, {"ranking": tmp_path / "rank.json"}, num_layers=4)
    assert spec == StaticDrop("attn", (2,)) and meta["spec"]["ranking"] == "similarity"
    assert "label" not in meta["spec"]


def test_static_rankings_plan_both_names_and_only_similarity_reads_a_ranking():
    p = plan(
        _config(baselines__static_rankings=["similarity", "last"], baselines__static_ratios=[])
    )
    static = {n: m for n, m in p.methods.items() if m.kind == "static"}
    assert set(static) == {"drop-attn-n16", "drop-attn-all", "last-attn-n16", "last-attn-all"}
    assert p.params("drop-attn-all", "0.250") == {
        "candidates": "all",
        "kind": "static",
        "name": "drop-attn-all",
        "ratio": "0.250",
        "routing": "sequence",
        "unit": "attn",
    }  # fmt: skip  (as before there was a choice: existing results stay up to date)
    assert p.params("last-attn-n16", "0.250")["ranking"] == "last"
    assert p.params("last-attn-n16", "0.250")["num_routed"] == 16
    assert "ranking" in p.inputs("drop-attn-n16", "0.250")
    assert p.inputs("last-attn-n16", "0.250") == p.paths.asset_inputs()  # assets and model
    only = plan(_config(baselines__static_rankings=["last"], baselines__static_ratios=[]))
    assert {n for n, m in only.methods.items() if m.kind == "static"} == {
        "last-attn-n16", "last-attn-all",
    }  # fmt: skip
    default = _config()
    del default["baselines"]["static_rankings"], default["baselines"]["static_ratios"]
    default = validated(default)
    assert default["baselines"]["static_rankings"] == ["similarity"]
    assert default["baselines"]["static_ratios"] == []
    assert not any(n.startswith("last-") for n in plan(default).methods)


def test_static_ratios_add_exactly_the_static_jobs():
    base = _config(
        baselines__static_rankings=["similarity", "last"],
        baselines__static_ratios=[],
        sweep__skip_ratios=[0.125, 0.25],
        profile__ratios=None,
    )
    extra = copy.deepcopy(base)
    extra["baselines"]["static_ratios"] = [0.3, 0.0667, 0.25]  # 0.25 is swept already
    before, after = plan(base), plan(extra)
    static = {n for n, m in after.methods.items() if m.kind == "static"}
    assert len(static) == 4 and set(before.methods) == set(after.methods)
    added = set(after.eval_jobs) - set(before.eval_jobs)
    assert added == {(n, r) for n in static for r in ("0.067", "0.300")}
    assert set(before.eval_jobs) <= set(after.eval_jobs)
    assert len(after.eval_jobs) == len(set(after.eval_jobs))  # 0.25 once
    assert after.static_ratios == ("0.067", "0.125", "0.250", "0.300")
    assert after.ratios == before.ratios == ("0.125", "0.250")  # routers: the sweep only
    # profile.ratios: null profiles every ratio a static drop is scored at
    assert set(after.profile_jobs) - set(before.profile_jobs) == added
    chosen = copy.deepcopy(extra)
    chosen["profile"]["ratios"] = [0.25]
    assert not any(r in ("0.067", "0.300") for _, r in plan(chosen).profile_jobs)


def test_a_run_left_out_of_the_profiles_keeps_its_identity_and_its_scoring():
    base = _config(profile__ratios=[0.25])
    quiet = copy.deepcopy(base)
    quiet["routers"][0]["profile"] = False
    p, q = plan(base), plan(validated(quiet))
    (run,) = p.runs.values()
    assert list(q.runs) == [run.slug] and q.runs[run.slug].settings == run.settings
    assert p.eval_jobs == q.eval_jobs
    # the run natively and at 0.25 go; static drop stays
    assert set(p.profile_jobs) - set(q.profile_jobs) == {(run.slug, "native"), (run.slug, "0.250")}
    assert q.profile_jobs and {q.method(m).kind for m, _ in q.profile_jobs} == {"static"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("static_ratios", [1.5], r"1.5 is greater than or equal to the maximum of 1"),
        ("static_ratios", [0.0], r"0.0 is less than or equal to the minimum of 0"),
        ("static_ratios", ["0.2"], r"'0.2' is not of type 'number'"),
        ("static_ratios", 0.2, r"0.2 is not of type 'array'"),
        ("static_ratios", [0.2, 0.2], r"non-unique"),
        ("static_rankings", ["random"], r"'random' is not one of \['similarity', 'last'\]"),
        ("static_rankings", [], r"should be non-empty"),
        ("static_rankings", ["last", "last"], r"non-unique"),
    ],
)
def test_bad_static_baseline_settings_are_rejected_by_the_schema(key, value, message):
    from snakemake.exceptions import WorkflowError

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["baselines"][key] = value
    with pytest.raises(WorkflowError) as err:
        validated(config)
    assert re.search(message, str(err.value)) and key in str(err.value)


def test_static_ratios_that_name_the_same_result_are_rejected():
    config = _config(baselines__static_ratios=[0.2, 0.2001])
    with pytest.raises(ValueError, match=r"static_ratios: 0.2 and 0.2001 are the same ratio"):
        plan(config)
    config = _config()
    config["baselines"]["static_rankings"] = ["similarity", "pruned"]  # past the schema
    with pytest.raises(ValueError, match=r"static_rankings: .*'pruned'"):
        plan(config)


# --------------------------------------------------------------------------- display names
def test_a_display_name_changes_no_identity_and_is_recorded(tmp_path):
    plain = _config(eval__also_request=True)
    named = copy.deepcopy(plain)
    named["routers"][0]["name"] = "attention, sequence, long answers"
    named["lora"] = [{"name": "a", "label": "LoRA on the embedded data"}]
    plain["lora"] = [{"name": "a"}]
    named, plain = validated(named), validated(plain)
    p, q = plan(named), plan(plain)
    assert list(p.runs) == list(q.runs) and list(p.loras) == list(q.loras)
    assert p.eval_jobs == q.eval_jobs and p.profile_jobs == q.profile_jobs
    (run,) = p.runs.values()
    assert "name" not in run.entry and run.label == "attention, sequence, long answers"
    for name, ratio in p.eval_jobs:  # the params (what Snakemake compares) and the paths
        assert p.params(name, ratio) == q.params(name, ratio)
        assert p.inputs(name, ratio) == q.inputs(name, ratio)
        assert "label" not in p.params(name, ratio)
    assert run.slug.startswith("attn-seq-n16-c0.5-long-192-")
    labels = {n: p.label(n) for n in p.methods}
    assert labels[run.slug] == "attention, sequence, long answers"
    assert labels[f"request-{run.slug}"] == "attention, sequence, long answers: route_on=request"
    assert (
        labels[f"random0-{run.slug}"]
        == "attention, sequence, long answers: random skipping, seed 0"
    )
    assert labels[f"pattern-{run.slug}"] == "attention, sequence, long answers: static pattern"
    (lora,) = p.loras
    assert labels[f"lora-{lora}"] == "LoRA on the embedded data"
    assert labels["dense"] is None and labels["drop-attn-all"] is None
    assert all(q.label(n) is None for n in q.methods)  # no name: no label
    # the record: every eval record of the run carries it as method.spec["label"]
    write_json(tmp_path / "cal.json", {"requested_skip_ratio": 0.25, "thresholds": {"20": 0.5}})
    inputs = {
        "routers": str(tmp_path / "r" / "routers.safetensors"),
        "calibration": str(tmp_path / "cal.json"),
    }
    _, meta = resolve(p.params(run.slug, "0.250"), inputs, label=p.label(run.slug))
    assert meta["spec"]["label"] == "attention, sequence, long answers"
    assert meta["spec"]["name"] == run.slug
    _, meta = resolve(q.params(run.slug, "0.250"), inputs, label=q.label(run.slug))
    assert "label" not in meta["spec"]


def test_the_label_reaches_the_rules_as_an_untracked_param():
    """Snakemake leaves params computed from a job's output out of its params-changed check
    (a "derived" param): the label param takes ``output``, so editing a name reruns nothing."""
    from snakemake.rules import Rule

    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "def method_label(wildcards, output)" in text
    for rule in ("evaluate", "profile"):
        assert "label=method_label," in (ROOT / "workflow" / "rules" / f"{rule}.smk").read_text()

    def method_label(wildcards, output):  # the signature Snakemake inspects
        return None

    def method_params(wildcards):
        return None

    assert Rule._is_deriving_function(method_label)
    assert not Rule._is_deriving_function(method_params)


def _configs() -> list[tuple[str, dict]]:
    """Every committed config, merged over config.yaml as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    out = []
    for path in [ROOT / "config.yaml", *sorted((ROOT / "config").glob("*.yaml"))]:
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        update_config(config, yaml.safe_load(path.read_text()))
        out.append((path.name, validated(config)))
    return out


def test_every_planned_method_round_trips_through_its_stored_dict():
    """The record a job stores (``to_dict`` + ratio + label) gives back the same Method,
    for every method of every committed config; the kinds are the one set of names."""
    seen = set()
    for name, config in _configs():
        p = plan(config)
        for m in p.methods.values():
            stored = p.params(m.name, "0.250") | ({"label": m.label} if m.label else {})
            back = Method.from_dict(stored)
            assert back == m and back.label == m.label, (name, m.name)
            assert back.to_dict() | {"ratio": "0.250"} == p.params(m.name, "0.250")
            seen.add(m.kind)
    assert seen == set(KINDS)


def test_every_committed_record_stores_a_method_that_reads_back_losslessly():
    """Evaluation and profile records under results/: ``method.spec`` is a Method plus the
    job's ratio, nothing else, and writing the Method back gives the same dict."""
    records = sorted(ROOT.glob("results/**/eval/**/*.json")) + sorted(
        ROOT.glob("results/**/profile/**/profile.json")
    )
    records = [r for r in records if "/logs/" not in str(r)]
    assert len(records) > 50  # the committed runs (results/, authors/, gemma3/, capacity/)
    for path in records:
        rec = json.loads(path.read_text())
        if "method" not in rec:  # a prompts or items sidecar
            continue
        spec = rec["method"]["spec"]
        method, ratio = stored_method(rec, path)
        label = {"label": method.label} if method.label else {}
        assert method.to_dict() | {"ratio": ratio} | label == spec, path


def test_a_stored_method_with_an_unknown_key_or_kind_is_refused():
    with pytest.raises(ResultFileError, match="unknown keys"):
        Method.from_dict({"name": "x", "kind": "static", "layers": [1]})
    with pytest.raises(ValueError, match="kind 'router_static'"):
        Method.from_dict({"name": "x", "kind": "router_static"})
    with pytest.raises(ResultFileError, match="does not record its planned method"):
        stored_method({"method": {"spec": {"kind": "dense"}}}, "x.json")


def test_the_plan_gives_each_claim_its_standard_runs(tmp_path):
    """Roles (mindskip.roles) come from the config, never from the records: MindSkip is
    the swept standard attention run (a 1000-sample run with one ratio, a distilled run
    or the authors' recipe do not take its place); MLP, block, token, the sample series
    and the LoRA pair are the config's standard runs; the file round-trips."""
    configs = dict(_configs())
    full = plan(configs["full.yaml"])
    roles = full.roles
    main = full.runs[roles.mindskip]
    assert (main.unit, main.routing, main.ratios) == ("attn", "sequence", full.ratios)
    assert sorted(roles.samples) == [192, 500, 1000, 2000] and roles.samples[192] == roles.mindskip
    assert {u: full.runs[s].unit for u, s in roles.units.items()} == {
        "mlp": "mlp",
        "block": "block",
    }
    assert full.runs[roles.token].routing == "token"
    assert roles.lora == f"lora-{full.runs[roles.lora_routers].lora}" in full.methods
    chosen = [roles.mindskip, roles.token, roles.lora_routers, *roles.units.values()]
    assert all(full.methods[s].variant is None for s in chosen + list(roles.samples.values()))
    default = plan(configs["config.yaml"]).roles
    assert default == Roles(mindskip=main.slug, samples={192: main.slug})
    path = write_roles(roles, tmp_path / "roles.json")
    assert read_roles(path) == roles
    path.write_text(path.read_text().replace('"token"', '"tokens"'))
    with pytest.raises(ResultFileError, match="unknown keys"):
        read_roles(path)
