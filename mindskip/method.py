"""What a job scores: one typed record of a method, from the config to the claims table.

A :class:`Method` is planned by :func:`mindskip.plan.plan` (its ``name`` is the workflow's
``{method}`` wildcard), stored in every evaluation and profile record as ``method.spec``
(:meth:`Method.to_dict` plus the job's ``ratio`` and the display ``label``), and read back
by :meth:`Method.from_dict`: the report, the verdicts and the profiler take that record,
and nothing re-parses a name. One set of kind names (:data:`KINDS`) is used everywhere.

:func:`resolve` turns a planned method and its input files into the executable spec of
:mod:`mindskip.methods` (what evaluation and profiling apply); the layers a static drop
or the router's own pattern skips are derived by :mod:`mindskip.selection`.

Imports neither torch nor Snakemake (the workflow plans with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .artefacts import AdapterFolder, Calibration, RouterFolder
from .files import ResultFileError, read_json
from .selection import last_layers, least_executed, routed_range, static_layers

NATIVE = "native"
# dense; LoRA alone; a trained router; a static drop; random skipping at a router's
# per-layer rates; the router's own static pattern (its least-executed layers)
KINDS = ("dense", "lora", "router", "static", "random", "pattern")
CANDIDATES = ("routed", "all")
# How a static drop picks its k layers: ``similarity``, the k most similar (least
# important) of a ranking file; ``last``, the last k candidates (no ranking needed).
RANKINGS = ("similarity", "last")
# keys of a stored spec that belong to the job, not to the method
_JOB_KEYS = ("ratio",)


@dataclass(frozen=True)
class Method:
    """A planned method; ``name`` is its ``{method}`` wildcard."""

    name: str
    kind: str
    unit: str = "attn"
    routing: str = "sequence"
    run: str | None = None  # router / random / pattern: the run; lora: the LoraRun
    candidates: str | None = None  # static: "routed" or "all"
    num_routed: int | None = None  # static over routed candidates
    # static: how the k layers are picked (None: "similarity", so that the planned method,
    # a job's params, stays what it was before there was a choice; the record says it)
    ranking: str | None = None
    seed: int | None = None  # random
    train_samples: int | None = None  # router / random / pattern: the run's sample count
    lora: str | None = None  # the LoraRun the model is tuned on (lora, router, derived)
    # what sets a run apart from the standard one (its recipe changes, other data, scoring
    # under route_on=request): the claims compare standard runs; variants are shown beside
    variant: str | None = None
    route_on: str | None = None  # None: the config's eval.route_on
    # a display name (from the run's ``name``): recorded, but no part of the job's params
    label: str | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.candidates not in (None, *CANDIDATES):
            raise ValueError(f"method {self.name!r}: candidates {self.candidates!r}")
        if self.ranking not in (None, *RANKINGS):
            raise ValueError(f"method {self.name!r}: ranking {self.ranking!r} not in {RANKINGS}")

    def to_dict(self) -> dict[str, Any]:
        """The planned method (a job's params): every setting but the display label."""
        d = asdict(self)
        d.pop("label")
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Method:
        """The method a stored spec describes (``to_dict`` plus ``ratio`` and ``label``);
        ``Method.from_dict(m.to_dict() | {"label": m.label})`` is ``m``. An unknown key is
        an error: the record was not written by this plan."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - set(_JOB_KEYS))
        if unknown:
            raise ResultFileError(f"method spec {dict(d)!r}: unknown keys {unknown}")
        if "name" not in d or "kind" not in d:
            raise ResultFileError(f"method spec {dict(d)!r} has no name or kind")
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def how(self) -> str | None:
        """A static drop's ranking, ``similarity`` when unset; None for other kinds."""
        return (self.ranking or "similarity") if self.kind == "static" else None

    @property
    def pool(self) -> str | None:
        """A static drop's candidate layers, ``all`` when unset; as set for other kinds."""
        return (self.candidates or "all") if self.kind == "static" else self.candidates

    @property
    def on_lora(self) -> bool:
        """Scored on a LoRA-tuned model (LoRA alone, or routers tuned on it)."""
        return self.lora is not None

    def family(self) -> tuple:
        """What a method is apart from its ratio: the points of one family are one method
        at different skip ratios (a router's sweep, one static drop's ratios)."""
        return (self.kind, self.unit, self.routing, self.pool, self.run, self.train_samples,
                self.on_lora, self.variant, self.how)  # fmt: skip


def lora_method(lora: str) -> str:
    """The name of the method that scores LoRA run ``lora`` alone."""
    return f"lora-{lora}"


def stored_method(record: Mapping[str, Any], where: str | Path) -> tuple[Method, str]:
    """The planned method and its ratio (``native`` or ``"0.250"``) that an evaluation or
    profile record stores under ``method.spec``; ``where`` names the file in the error."""
    spec = (record.get("method") or {}).get("spec") or {}
    try:
        method = Method.from_dict(spec)
    except (ResultFileError, ValueError, TypeError) as e:
        raise ResultFileError(
            f"{where} does not record its planned method (method.spec: {e}); it was not "
            "written by the workflow's evaluate or profile step: rerun that step"
        ) from None
    return method, str(spec.get("ratio", NATIVE))


def _reference(path: str | Path) -> dict[str, Any]:
    """The router's evaluation record: its realised per-layer capacity, pooled and per task."""
    rec = read_json(path, "router evaluation record")
    routing = rec.get("routing") or {}
    if not (routing.get("realised") or {}).get("capacity_per_layer"):
        raise ValueError(f"{path} records no routing statistics: is it a router's score file?")
    return routing


def pattern_layers(routing: Mapping[str, Any]) -> tuple[int, ...]:
    """The k layers the router executes least, k = its realised number of skipped layers."""
    real = routing["realised"]
    cap = {int(i): float(c) for i, c in real["capacity_per_layer"].items()}
    return least_executed(cap, round(real["skip_ratio"] * real["num_layers"]))


def resolve(
    params: Mapping[str, Any],
    inputs: Mapping[str, str | None],
    *,
    num_layers: int | None = None,
    label: str | None = None,
) -> tuple[Any, dict]:
    """``(spec, metadata)`` of a planned method at a ratio (a job's params: the method's
    :meth:`~Method.to_dict` and ``ratio``) from its input files.

    The metadata is what the evaluation and profile records keep: the planned method
    (``spec``; a static drop's says its ``ranking``, ``similarity`` or ``last``, and a
    method of a named run its ``label``), the resolved spec (``method_spec``), the
    requested ratio and router folder. ``num_layers``: the model's decoder layers (last-k
    static drop needs it; the others read it from their inputs).
    """
    from .methods import Dense, RandomSkip, Routed, StaticDrop

    method = Method.from_dict(params)
    ratio = params["ratio"]
    requested = None if ratio == NATIVE else float(ratio)
    lora = str(AdapterFolder.holding(inputs["lora"]).path) if inputs.get("lora") else None
    meta: dict[str, Any] = {"spec": dict(params), "requested_skip_ratio": requested}
    if method.kind == "static":
        meta["spec"]["ranking"] = method.how
    if label is not None:
        meta["spec"]["label"] = label
    kind = method.kind
    if kind in ("dense", "lora"):
        spec = Dense(lora=lora)
    elif kind == "router":
        folder = RouterFolder.holding(inputs["routers"])
        routers, taus = str(folder.path), {}
        if inputs.get("calibration"):
            cal = Calibration.read(inputs["calibration"])
            cal.check_routers(folder)
            taus = cal.thresholds
        spec = Routed(routers, method.unit, method.routing, taus, lora=lora)
        meta["router_path"] = routers
    elif kind == "static":
        spec = StaticDrop(method.unit, _static_drop(method, requested, inputs, num_layers))
    elif kind == "random":
        ref = _reference(inputs["reference"])
        rates = {i: 1.0 - c for i, c in ref["realised"]["capacity_per_layer"].items()}
        per_task = {
            t: {i: 1.0 - c for i, c in s["capacity_per_layer"].items()}
            for t, s in ref["realised_per_task"].items()
        }
        spec = RandomSkip(method.unit, rates, method.seed, per_task)
    else:  # pattern
        spec = StaticDrop(method.unit, pattern_layers(_reference(inputs["reference"])))
    meta["method"] = spec.kind
    meta["method_spec"] = spec.to_dict()
    return spec, meta


def _static_drop(
    method: Method, ratio: float | None, inputs: Mapping[str, Any], num_layers: int | None
) -> tuple[int, ...]:
    if ratio is None:
        raise ValueError(f"static drop {method.name!r} has no native form: give it a ratio")
    if method.how == "last":
        if num_layers is None:
            raise ValueError("last-k static drop needs the model's number of layers")
        cands = (
            routed_range(num_layers, method.num_routed) if method.candidates == "routed" else None
        )
        return last_layers(num_layers, ratio, cands)
    rank = read_json(inputs["ranking"], "importance ranking")
    n = rank["num_layers"]
    cands = routed_range(n, method.num_routed) if method.candidates == "routed" else None
    return static_layers(rank, ratio, cands)
