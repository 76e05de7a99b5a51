"""What a method is: one typed spec per kind, and the one function that applies it.

Evaluation and profiling both call :func:`prepare_method` on a fresh dense model, so they
measure exactly the same method:

- :class:`Dense`: the stock model (optionally with LoRA adapters).
- :class:`Routed`: trained routers (:func:`mindskip.load_routers`), optionally with
  calibrated thresholds and the LoRA adapters they were tuned on.
- :class:`StaticDrop`: the ``unit`` of ``layers`` dropped for every sequence (the wrapper
  with every decision forced to skip).
- :class:`RandomSkip`: each sequence skips each layer at a given rate, decided by a hash of
  (seed, layer, the sequence's real tokens) (:class:`mindskip.baselines.HashedSkip`).

A spec is a frozen dataclass with ``kind``, ``unit``, ``slug`` and ``to_dict``;
:func:`method_from_dict` reads one back. :func:`mindskip.method.resolve` turns a planned
method (:class:`mindskip.method.Method`) and its input files into a spec.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .config import ROUTINGS, UNITS, ConfigError, MindSkipConfig

if TYPE_CHECKING:
    from torch import nn

Pairs = tuple[tuple[int, float], ...]


def _pairs(value: Any, name: str) -> Pairs:
    items = value.items() if isinstance(value, Mapping) else value
    pairs = tuple(sorted((int(i), float(v)) for i, v in items))
    for i, v in pairs:
        if i < 1 or not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name}: layer {i} -> {v} (layers >= 1, values in [0, 1])")
    if len({i for i, _ in pairs}) != len(pairs):
        raise ConfigError(f"{name} has a layer twice: {pairs}")
    return pairs


def _check_unit(unit: str, routing: str = "sequence") -> None:
    if unit not in UNITS or routing not in ROUTINGS:
        raise ConfigError(f"bad unit/routing: {unit!r}/{routing!r}")


class _Spec:
    """Shared behaviour: ``to_dict`` with ``kind``, a short ``digest`` of it."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name in ("thresholds", "rates"):
                v = {str(i): x for i, x in v}
            elif f.name == "rates_by_task":
                v = {t: {str(i): x for i, x in r} for t, r in v}
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d

    @property
    def digest(self) -> str:
        """First 6 hex digits of the sha256 of :meth:`to_dict` (as sorted JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:6]


@dataclass(frozen=True)
class Dense(_Spec):
    """The stock model; ``lora``: a folder of LoRA adapters to load first."""

    kind: ClassVar[str] = "dense"
    unit: str = "attn"
    lora: str | None = None

    @property
    def slug(self) -> str:
        return "dense" if self.lora is None else f"lora-{Path(self.lora).name}"


@dataclass(frozen=True)
class Routed(_Spec):
    """Trained routers (a folder written by :func:`mindskip.save_routers`), with optional
    per-layer tau (calibration) and the LoRA adapters the routers were tuned on."""

    kind: ClassVar[str] = "router"
    routers: str
    unit: str = "attn"
    routing: str = "sequence"
    thresholds: Pairs = ()
    lora: str | None = None

    def __post_init__(self) -> None:
        _check_unit(self.unit, self.routing)
        object.__setattr__(self, "routers", str(self.routers))
        object.__setattr__(self, "thresholds", _pairs(self.thresholds, "thresholds"))

    @property
    def slug(self) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.routers).name) or "routers"
        return f"router-{name}" + (f"-tau{self.digest}" if self.thresholds else "")


@dataclass(frozen=True)
class StaticDrop(_Spec):
    """``unit`` dropped from ``layers`` for every sequence."""

    kind: ClassVar[str] = "static"
    unit: str
    layers: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        layers = tuple(sorted(int(i) for i in self.layers))
        if any(i < 1 for i in layers) or len(set(layers)) != len(layers):
            raise ConfigError(
                f"layers must be distinct and >= 1 (layer 0 is never routed): {layers}"
            )
        object.__setattr__(self, "layers", layers)

    @property
    def slug(self) -> str:
        return f"static-{self.unit}-k{len(self.layers)}"

    def mindskip_config(self) -> MindSkipConfig:
        return MindSkipConfig(unit=self.unit, routing="sequence", layers=self.layers)


@dataclass(frozen=True)
class RandomSkip(_Spec):
    """Per-sequence random skipping at per-layer ``rates`` (seeded hash of the tokens).

    ``rates_by_task``: rates measured per evaluation task (``((task, pairs), ...)``);
    :func:`set_task_rates` switches to a task's rates before it is scored.
    """

    kind: ClassVar[str] = "random"
    unit: str
    rates: Pairs
    seed: int = 0
    rates_by_task: tuple[tuple[str, Pairs], ...] = ()

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        object.__setattr__(self, "rates", _pairs(self.rates, "rates"))
        by_task = self.rates_by_task
        items = by_task.items() if isinstance(by_task, Mapping) else by_task
        object.__setattr__(
            self,
            "rates_by_task",
            tuple(sorted((str(t), _pairs(r, f"rates_by_task[{t}]")) for t, r in items)),
        )
        if not self.rates:
            raise ConfigError("random skipping needs per-layer rates")
        layers = {i for i, _ in self.rates}
        for task, r in self.rates_by_task:
            if {i for i, _ in r} != layers:
                raise ConfigError(f"rates_by_task[{task}] covers other layers than rates")

    @property
    def slug(self) -> str:
        return f"random-{self.unit}-n{len(self.rates)}-s{self.seed}-{self.digest}"

    def mindskip_config(self) -> MindSkipConfig:
        return MindSkipConfig(
            unit=self.unit, routing="sequence", layers=tuple(i for i, _ in self.rates)
        )


Spec = Dense | Routed | StaticDrop | RandomSkip
_KINDS: dict[str, type] = {c.kind: c for c in (Dense, Routed, StaticDrop, RandomSkip)}


def method_from_dict(d: Mapping[str, Any]) -> Spec:
    """The spec that :meth:`to_dict` wrote (``kind`` selects the class)."""
    d = dict(d)
    cls = _KINDS.get(d.pop("kind", None))
    if cls is None:
        raise ConfigError(f"unknown method kind in {d}; known: {sorted(_KINDS)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {unknown}")
    if "layers" in d:
        d["layers"] = tuple(d["layers"])
    return cls(**d)


# --------------------------------------------------------------------------- applying
def prepare_method(model: nn.Module, spec: Spec, *, merge_lora: bool = False) -> nn.Module:
    """Make ``model`` (in place) behave as ``spec``; any routers it had are removed first.

    Dense: LoRA adapters if any (``merge_lora``: folded into the base weights, which it
    writes, as a deployed LoRA model runs; the profiler's choice). Routed: adapters,
    routers, then ``spec.thresholds``. StaticDrop: wrap ``spec.layers`` and force every
    decision to skip. RandomSkip: wrap the rated layers and force
    :class:`~mindskip.baselines.HashedSkip` decisions.
    """
    from .baselines import HashedSkip
    from .checkpoint import load_routers, read_router_config
    from .surgery import (
        PrunedLayer,
        apply_mindskip,
        decoder_layers,
        mindskip_layers,
        remove_mindskip,
        set_decisions,
        set_thresholds,
    )

    remove_mindskip(model)
    if any(isinstance(layer, PrunedLayer) for layer in decoder_layers(model)):
        raise ValueError("this model has hand-removed sublayers; prepare a fresh dense model")
    if getattr(spec, "lora", None):
        from .train import load_adapters

        load_adapters(model, spec.lora, merge=merge_lora)
    if isinstance(spec, Dense):
        return model
    if isinstance(spec, Routed):
        saved = read_router_config(spec.routers)
        if (saved.unit, saved.routing) != (spec.unit, spec.routing):
            raise ConfigError(
                f"{spec.routers} holds {saved.unit}/{saved.routing} routers, "
                f"but the spec asks for {spec.unit}/{spec.routing}"
            )
        load_routers(model, spec.routers)
        unknown = sorted({i for i, _ in spec.thresholds} - set(mindskip_layers(model)))
        if unknown:
            raise ConfigError(f"thresholds for layers {unknown}, which are not routed")
        if spec.thresholds:
            set_thresholds(model, dict(spec.thresholds))
        return model
    apply_mindskip(model, spec.mindskip_config())
    if isinstance(spec, StaticDrop):
        set_decisions(model, False)
    else:
        set_decisions(model, {i: HashedSkip(spec.seed, r) for i, r in spec.rates})
    return model


def set_task_rates(model: nn.Module, spec: Spec, task: str) -> None:
    """Before scoring ``task``: a :class:`RandomSkip` with per-task rates takes that task's
    rates (the pooled ``rates`` for a task it has none for). Other specs: nothing."""
    if not isinstance(spec, RandomSkip) or not spec.rates_by_task:
        return
    from .baselines import HashedSkip
    from .surgery import set_decisions

    rates = dict(dict(spec.rates_by_task).get(task, spec.rates))
    set_decisions(model, {i: HashedSkip(spec.seed, r) for i, r in rates.items()})
