"""The experiment as data: :func:`plan` turns a validated config into runs, methods, jobs
and file paths. It is the one place that knows what a run or a method is called and which
files it reads; ``workflow/rules/common.smk`` imports it, and no rule parses a name.

Imports neither torch nor Snakemake, so planning a workflow costs milliseconds.

- A :class:`Run` is one router-tuning entry of ``routers:``. Its identity is a readable
  slug plus a short hash of the whole entry, so two entries that differ in any setting
  (lambda, penalty, objective, data, init, LoRA, ...) are two runs. Its display ``name``
  (optional) is no part of it: renaming a run moves no file and reruns nothing.
- A :class:`LoraRun` is one LoRA-only fine-tune of ``lora:`` (the paper's LoRA table); its
  ``name`` is what ``routers:`` entries refer to, its optional ``label`` a display name.
- A :class:`~mindskip.method.Method` is what a job scores, before its inputs are read: its
  kind, the run it derives from, and its settings (:mod:`mindskip.method`, with
  :func:`~mindskip.method.resolve`, which reads the input files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .capacity import check_control
from .method import NATIVE, RANKINGS, Method, lora_method
from .paths import Paths
from .presets import expand_preset, own_changes, routing_changes
from .roles import Roles, choose_roles

# The display names of ``routers:`` (``name``) and ``lora:`` (``label``) entries: written into
# the records as the method spec's ``label``, never part of a run's identity, slug or paths.
_ROUTER_LABEL, _LORA_LABEL = "name", "label"
# Settings of a router entry that do not change the trained routers.
_NOT_IDENTITY = ("sweep", "ratios", "sweep_baselines", "profile")
# Recipe settings whose value names itself in a run's slug ("-distill", not "-objectivedistill").
_NAMED_SETTINGS = ("objective", "penalty", "init", "schedule")


def fmt_ratio(r: float | str) -> str:
    return NATIVE if r == NATIVE else f"{float(r):.3f}"


def canonical(value: Any) -> Any:
    """The same settings in one key order (Snakemake compares params in order)."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def short_hash(entry: Mapping[str, Any]) -> str:
    text = json.dumps(canonical(dict(entry)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class LoraRun:
    """A LoRA-only fine-tune of the dense model."""

    slug: str
    entry: dict[str, Any] = field(hash=False, compare=False)  # without its label
    label: str | None = field(default=None, hash=False, compare=False)

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> LoraRun:
        label = entry.get(_LORA_LABEL)
        entry = {k: v for k, v in entry.items() if k != _LORA_LABEL}
        name = f"r{entry['r']}-{entry['data']}-{entry['train_samples']}-{short_hash(entry)}"
        return cls(slug=name, entry=entry, label=label)


@dataclass(frozen=True)
class Run:
    """One router-tuning run (an entry of ``routers:``)."""

    slug: str
    unit: str
    routing: str
    num_routed: int
    ratios: tuple[str, ...]  # the ratios it is calibrated to (its own, else the sweep's)
    baselines: bool  # random skipping and its own pattern at those ratios
    profiled: bool  # its methods are speed-profiled (natively and at profile.ratios)
    lora: str | None  # the LoraRun slug the routers are tuned on top of
    entry: dict[str, Any] = field(hash=False, compare=False)  # without its display name
    label: str | None = field(default=None, hash=False, compare=False)  # its display name

    @classmethod
    def of(
        cls, entry: Mapping[str, Any], sweep: tuple[str, ...] = (), lora: LoraRun | None = None
    ) -> Run:
        label = entry.get(_ROUTER_LABEL)
        entry = {k: v for k, v in entry.items() if k != _ROUTER_LABEL}
        ident = {k: v for k, v in entry.items() if k not in _NOT_IDENTITY}
        own = own_changes(entry)  # the recipe changes beyond the preset's
        if lora is not None:
            ident["lora"] = lora.entry
        target = entry.get("capacity_target")
        readable = (
            f"{entry['unit']}-{entry['routing'][:3]}-n{entry['num_routed']}-"
            f"{'free' if target is None else f'c{target:g}'}-{entry['data']}-"
            f"{entry['train_samples']}"
        )
        if entry.get("preset"):
            readable += f"-{entry['preset']}"
            for k, v in sorted(routing_changes(entry).items()):
                readable += f"-{v}" if k == "router_dtype" else f"-{k}{v}"
        for k, v in sorted(own.items()):  # e.g. "-distill"
            readable += f"-{v}" if k in _NAMED_SETTINGS else f"-{k}{v}"
        if entry.get("lora"):
            readable += f"-on-{entry['lora']}"
        entry = expand_preset(entry)  # what the jobs run: the preset's settings applied
        return cls(
            slug=f"{readable}-{short_hash(ident)}",
            unit=entry["unit"],
            routing=entry["routing"],
            num_routed=int(entry["num_routed"]),
            ratios=_run_ratios(entry, sweep),
            baselines=bool(entry.get("sweep_baselines", True)),
            profiled=bool(entry.get("profile", True)),
            lora=None if lora is None else lora.slug,
            entry=entry,
            label=label,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """What its training reads: the entry without the settings that only plan its
        scoring and profiling (``_NOT_IDENTITY``), so that editing those retrains nothing."""
        return {k: v for k, v in self.entry.items() if k not in _NOT_IDENTITY}


def _run_ratios(entry: Mapping[str, Any], sweep: tuple[str, ...]) -> tuple[str, ...]:
    if entry.get("ratios") is not None:
        return tuple(fmt_ratio(r) for r in entry["ratios"])
    return sweep if entry.get("sweep", False) else ()


@dataclass(frozen=True)
class Plan:
    runs: dict[str, Run]
    loras: dict[str, LoraRun]
    methods: dict[str, Method]
    ratios: tuple[str, ...]  # sweep.skip_ratios
    static_ratios: tuple[str, ...]  # every ratio static drops are scored at (sweep + extra)
    eval_jobs: tuple[tuple[str, str], ...]
    profile_jobs: tuple[tuple[str, str], ...]
    paths: Paths
    roles: Roles  # the runs each claim compares

    def method(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            known = sorted(self.methods)
            raise KeyError(f"no method {name!r} in this config (known: {known})") from None

    def inputs(self, name: str, ratio: str) -> dict[str, str]:
        """The files a method needs at a ratio, by role (rules unpack this)."""
        m, p = self.method(name), self.paths
        out = p.asset_inputs()
        run = self.runs.get(m.run) if m.run else None
        if m.kind == "lora":
            out |= p.lora(m.run).inputs()
        elif m.kind == "router":
            out |= p.routers(m.run).inputs()
            if ratio != NATIVE:
                out["calibration"] = p.calibration(m.run, ratio)
        elif m.kind == "static" and (m.ranking or "similarity") == "similarity":
            out["ranking"] = p.ranking(m.unit)  # last-k needs no ranking
        elif m.kind in ("random", "pattern"):
            out["reference"] = p.eval(m.run, ratio)  # the router's scores on the same items
        if run is not None and run.lora is not None:
            out |= p.lora(run.lora).inputs()
        return out

    def params(self, name: str, ratio: str) -> dict[str, Any]:
        """What a job records about its method (JSON-able, canonical key order)."""
        return canonical({**self.method(name).to_dict(), "ratio": ratio})

    def label(self, name: str) -> str | None:
        """A method's display name (None: none given; the report describes its settings).
        Rules pass it as a param derived from the output (untracked), so editing a name in
        the config reruns nothing; a record written before keeps the name it was run under."""
        return self.method(name).label


def _methods(config: Mapping[str, Any], runs: dict[str, Run], loras: dict[str, LoraRun]):
    b = config["baselines"]
    out = {"dense": Method("dense", "dense")}
    out |= {
        lora_method(s): Method(lora_method(s), "lora", run=s, lora=s, label=lr.label)
        for s, lr in loras.items()
    }
    variants = {r.slug: _variant(r.entry, b["calibration_data"]) for r in runs.values()}
    for r in runs.values():
        n, v = int(r.entry["train_samples"]), variants[r.slug]
        out[r.slug] = Method(
            r.slug, "router", r.unit, r.routing, r.slug, train_samples=n, lora=r.lora,
            variant=v, label=r.label,
        )  # fmt: skip
        if config["eval"].get("also_request") and config["eval"]["route_on"] != "request":
            name = f"request-{r.slug}"
            out[name] = Method(
                name, "router", r.unit, r.routing, r.slug, train_samples=n, lora=r.lora,
                variant=",".join(x for x in (v, "request") if x), route_on="request",
                label=_derived(r.label, "route_on=request"),
            )  # fmt: skip
    swept = [r for r in runs.values() if r.ratios]
    for unit in b["static_units"]:
        for ranking in b.get("static_rankings", ["similarity"]):
            for cand in b["static_candidates"]:
                out |= _static_methods(unit, ranking, cand, swept)
    for r in (r for r in swept if r.baselines):
        for s in b["random_seeds"]:
            name = f"random{s}-{r.slug}"
            out[name] = Method(
                name, "random", r.unit, run=r.slug, seed=int(s), lora=r.lora,
                variant=variants[r.slug], label=_derived(r.label, f"random skipping, seed {s}"),
            )  # fmt: skip
        if b["router_pattern"]:
            name = f"pattern-{r.slug}"
            out[name] = Method(
                name, "pattern", r.unit, run=r.slug, lora=r.lora, variant=variants[r.slug],
                label=_derived(r.label, "static pattern"),
            )  # fmt: skip
    return out


def _static_methods(unit: str, ranking: str, cand: str, swept: list[Run]) -> dict[str, Method]:
    """Static drop of ``unit`` over one candidate set: ``drop-<unit>-all`` /
    ``drop-<unit>-n<n>`` (similarity ranking, the names from before there was a choice),
    ``last-<unit>-all`` / ``last-<unit>-n<n>`` (the last k candidates)."""
    prefix = "drop" if ranking == "similarity" else ranking
    how = None if ranking == "similarity" else ranking  # see Method.ranking
    if cand == "all":
        name = f"{prefix}-{unit}-all"
        return {name: Method(name, "static", unit, candidates=cand, ranking=how)}
    out = {}
    for n in sorted({r.num_routed for r in swept}):  # every routed range a swept run has
        name = f"{prefix}-{unit}-n{n}"
        out[name] = Method(name, "static", unit, candidates=cand, num_routed=n, ranking=how)
    return out


def _derived(label: str | None, what: str) -> str | None:
    """A derived method's label: ``"<run name>: <what>"`` (None: the run has no name)."""
    return None if label is None else f"{label}: {what}"


def _variant(entry: Mapping[str, Any], standard_data: str) -> str | None:
    """``"distill"``, ``"data=answered"``, ``"lr=0.01,penalty=per_layer"``: a run's recipe
    changes and its data when that is not the standard one (None: a standard run)."""
    parts = [entry["preset"]] if entry.get("preset") else []
    parts += [f"{k}={v}" for k, v in sorted(routing_changes(entry).items())]
    parts += [
        str(v) if k in _NAMED_SETTINGS else f"{k}={v}"
        for k, v in sorted(own_changes(entry).items())
    ]
    if entry["data"] != standard_data:
        parts.append(f"data={entry['data']}")
    return ",".join(parts) or None


def _jobs(config: Mapping[str, Any], methods: dict[str, Method], runs: dict[str, Run]):
    """Every method natively where it has a native form; static drop at every swept ratio
    and at ``baselines.static_ratios``; a run and what derives from it at that run's ratios.
    ``profile.ratios: null`` profiles every ratio a static drop is scored at; a run with
    ``profile: false`` and what derives from it are never profiled."""
    ratios = tuple(fmt_ratio(r) for r in config["sweep"]["skip_ratios"])
    extra = [fmt_ratio(r) for r in config["baselines"].get("static_ratios", [])]
    static = tuple(sorted(set(ratios) | set(extra), key=float))
    evals = [(n, NATIVE) for n, m in methods.items() if m.kind in ("dense", "lora", "router")]
    for n, m in methods.items():
        if m.kind == "static":
            evals += [(n, r) for r in static]
        elif m.kind != "lora" and m.run in runs and m.route_on is None:
            evals += [(n, r) for r in runs[m.run].ratios]
    prof = config["profile"]
    chosen = static if prof["ratios"] is None else tuple(fmt_ratio(r) for r in prof["ratios"])
    timed = {n for n, m in methods.items() if m.kind in ("router", "static") and not m.route_on}
    timed -= {n for n, m in methods.items() if m.run in runs and not runs[m.run].profiled}
    profiles = [(n, NATIVE) for n, m in methods.items() if m.kind == "router" and n in timed]
    profiles += [(n, r) for n, r in evals if r in chosen and n in timed]
    return ratios, static, tuple(evals), tuple(profiles) if prof["enabled"] else ()


def plan(config: Mapping[str, Any]) -> Plan:
    """Runs, methods and jobs of a config validated against the workflow's schema."""
    _check_datasets(config)
    _check_static(config["baselines"])
    loras = {lr.slug: lr for lr in (LoraRun.of(e) for e in config.get("lora", []))}
    lora_names = {e.get("name"): s for e, s in zip(config.get("lora", []), loras, strict=True)}
    runs: dict[str, Run] = {}
    for i, entry in enumerate(config["routers"]):
        if entry["data"] not in config["datasets"]:
            raise ValueError(
                f"config 'routers' entry {i}: data {entry['data']!r} is not a key of "
                f"'datasets' (known: {sorted(config['datasets'])})"
            )
        _check_recipe(entry.get("recipe") or {}, f"config 'routers' entry {i}")
        lora_name = entry.get("lora")
        if lora_name is not None and lora_name not in lora_names:
            raise ValueError(
                f"config 'routers' entry {i}: lora {lora_name!r} is not the name of a 'lora' "
                f"entry (known: {sorted(k for k in lora_names if k)})"
            )
        if entry.get("lora_r"):
            raise ValueError(
                f"config 'routers' entry {i}: lora_r {entry['lora_r']} trains LoRA adapters "
                "jointly with the routers, which the workflow does not score (its evaluation "
                "would load the routers without them); the paper's LoRA setting is a 'lora' "
                "entry and 'lora: <its name>' on this entry (joint training stays a library "
                "option: mindskip.train.TrainConfig(lora_r=...))"
            )
        sweep = tuple(fmt_ratio(r) for r in config["sweep"]["skip_ratios"])
        run = Run.of(entry, sweep, loras[lora_names[lora_name]] if lora_name else None)
        recipe = {**(config.get("recipe") or {}), **(run.entry.get("recipe") or {})}
        try:
            check_control(recipe.get("capacity_control"), run.entry.get("capacity_target"))
        except ValueError as e:
            raise ValueError(f"config 'routers' entry {i}: {e}") from None
        if run.slug in runs:
            raise ValueError(
                f"config 'routers' entries {list(runs).index(run.slug)} and {i} are the same "
                "run (every setting equal; a display name is no setting); remove one or make "
                "them differ"
            )
        runs[run.slug] = run
    methods = _methods(config, runs, loras)
    ratios, static, evals, profiles = _jobs(config, methods, runs)
    paths = Paths.of(config)
    roles = choose_roles(runs.values(), {slug: methods[slug].variant for slug in runs})
    return Plan(runs, loras, methods, ratios, static, evals, profiles, paths, roles)


def is_generated(dataset: Any) -> bool:
    """A ``datasets`` value the dense model answers itself (built by ``generate_data``)."""
    return isinstance(dataset, Mapping)


def _check_datasets(config: Mapping[str, Any]) -> None:
    datasets = config["datasets"]
    named = [(f"'lora' entry {i} data", e["data"]) for i, e in enumerate(config.get("lora", []))]
    named.append(("baselines.calibration_data", config["baselines"]["calibration_data"]))
    for where, name in named:
        if name not in datasets:
            raise ValueError(
                f"config {where}: {name!r} is not a key of 'datasets' (known: {sorted(datasets)})"
            )
    for name, value in datasets.items():
        if is_generated(value):
            src = datasets.get(value["generate"])
            if not isinstance(src, str):
                raise ValueError(
                    f"config datasets.{name}.generate: {value['generate']!r} must name a "
                    "dataset given as a source string (embedded, hf:..., or a JSONL path)"
                )
    if is_generated(datasets[config["baselines"]["calibration_data"]]):
        raise ValueError("config baselines.calibration_data must be a source string dataset")


def _check_static(b: Mapping[str, Any]) -> None:
    """``baselines.static_rankings`` and ``static_ratios``: what the schema cannot say, in
    one line naming the key (the schema checks the values' range and kind)."""
    rankings = list(b.get("static_rankings", ["similarity"]))
    bad = [r for r in rankings if r not in RANKINGS]
    if bad or not rankings or len(set(rankings)) != len(rankings):
        raise ValueError(
            f"config baselines.static_rankings: {rankings!r} must be a non-empty list of "
            f"distinct values of {list(RANKINGS)}"
        )
    seen: dict[str, float] = {}
    for r in b.get("static_ratios", []):
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 < r < 1:
            raise ValueError(
                f"config baselines.static_ratios: {r!r} is not a skip ratio (a number "
                "strictly between 0 and 1)"
            )
        if fmt_ratio(r) in seen:
            raise ValueError(
                f"config baselines.static_ratios: {seen[fmt_ratio(r)]!r} and {r!r} are the "
                f"same ratio ({fmt_ratio(r)}, results are named by 3 decimals); keep one"
            )
        seen[fmt_ratio(r)] = r


def _check_recipe(changes: Mapping[str, Any], where: str) -> None:
    """A run's recipe changes: known keys, each valid as the top-level recipe's."""
    from .schema import check_section

    check_section("recipe", changes, where=f"{where} recipe")
