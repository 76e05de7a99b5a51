"""The typed method specs (mindskip.methods) and the experiment plan (mindskip.plan):
validation, identities, the files a method reads, and resolving specs from those files."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import make_model

from mindskip import ConfigError, mindskip_layers
from mindskip.files import write_json
from mindskip.methods import (
    Dense,
    RandomSkip,
    Routed,
    StaticDrop,
    method_from_dict,
    prepare_method,
    set_task_rates,
)
from mindskip.plan import plan, resolve, static_layers
from mindskip.schema import validated

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
    # dense and the router natively (and under route_on=request); every derived method at
    # every swept ratio
    assert len(p.eval_jobs) == 3 + len(p.ratios) * 5
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
    for key, value in (("capacity_lambda", 1.0), ("train_samples", 64), ("lora_r", 4)):
        other = copy.deepcopy(base)
        other["routers"].append({**other["routers"][0], key: value})
        slugs = list(plan(other).runs)
        assert len(set(slugs)) == 2, key
    other = copy.deepcopy(base)
    other["routers"].append({**other["routers"][0], "sweep": False})  # not an identity
    with pytest.raises(ValueError, match="same run"):
        plan(other)


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
    static = {"kind": "static", "unit": "attn", "ratio": "0.333", "candidates": "routed"}
    spec, meta = resolve(static | {"num_routed": 3}, {"ranking": tmp_path / "rank.json"})
    assert spec == StaticDrop("attn", (2, 4)) and meta["spec"]["kind"] == "static"
    spec, _ = resolve(static | {"candidates": "all"}, {"ranking": tmp_path / "rank.json"})
    assert spec == StaticDrop("attn", (1, 4))
    pattern = {"kind": "pattern", "unit": "attn", "ratio": "0.333"}
    spec, _ = resolve(pattern, {"reference": tmp_path / "ref.json"})
    assert spec == StaticDrop("attn", (2, 4))  # the two layers it executes least
    rnd = {"kind": "random", "unit": "attn", "ratio": "0.333", "seed": 3}
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
