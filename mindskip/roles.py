"""Which runs the claims compare: chosen once, by the plan, and read by the verdicts.

The paper's claims compare *standard* router runs (no recipe changes, the standard data,
scored as configured): "MindSkip" (attention, sequence routing) against dense, static
drop and its own pattern; against the MLP and block runs (claim 2); against attention
with token routing (claim 3); runs that differ only in their sample count (claim 5); and
routers tuned on a LoRA model against that LoRA alone (claim 6). :func:`mindskip.plan.
plan` picks these runs from the config (:attr:`Plan.roles`), the workflow writes them to
``plan/<model>/roles.json`` (rule ``roles``, an input of ``report``), and
:func:`mindskip.verdicts.resolve_comparisons` reads them: no verdict guesses a run's role
back from its records.

Torch-free, like the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .files import ResultFileError, read_json, write_json
from .method import lora_method


class Run(Protocol):
    """What the roles read of a run (:class:`mindskip.plan.Run`)."""

    slug: str
    unit: str
    routing: str
    ratios: tuple[str, ...]
    lora: str | None
    entry: dict[str, Any]


FORMAT = 1


@dataclass(frozen=True)
class Roles:
    """Run slugs (``routers:`` entries) by role; None or empty: the config has no such run.

    ``mindskip``: the attention / sequence run (claims 1-6; the swept one, else the one
    with the most samples); ``units``: ``{"mlp": run, "block": run}``, sequence routing
    (claim 2); ``token``: attention, token routing (claim 3); ``samples``: ``{count: run}``,
    attention / sequence runs that differ in ``train_samples`` (claim 5); ``lora_routers``:
    attention / sequence routers tuned on a LoRA model and ``lora``, the method of that
    LoRA alone (claim 6)."""

    mindskip: str | None = None
    units: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    samples: dict[int, str] = field(default_factory=dict)
    lora_routers: str | None = None
    lora: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = {str(k): v for k, v in sorted(self.samples.items())}
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Roles:
        if d.get("format") != FORMAT:
            raise ResultFileError(f"roles: format {d.get('format')!r}, expected {FORMAT}")
        body = {k: v for k, v in d.items() if k != "format"}
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise ResultFileError(f"roles: unknown keys {unknown}")
        body["samples"] = {int(k): v for k, v in (body.get("samples") or {}).items()}
        body["units"] = dict(body.get("units") or {})
        return cls(**body)


def choose_roles(runs: Iterable[Run], variants: Mapping[str, str | None]) -> Roles:
    """The standard runs each claim compares, in config order (:func:`mindskip.plan.plan`
    calls it with its runs and each run's ``variant``): a standard run has no recipe
    changes and the standard data (``variant`` None)."""
    standard = [r for r in runs if variants[r.slug] is None]

    def standard_of(unit: str, routing: str, lora: bool = False) -> list[Run]:
        return [
            r for r in standard if (r.unit, r.routing, r.lora is not None) == (unit, routing, lora)
        ]

    def samples(r: Run) -> int:
        return int(r.entry["train_samples"])

    attn = standard_of("attn", "sequence")
    # MindSkip: the swept run (most ratios), then the most samples, then config order
    main = min(attn, key=lambda r: (-len(r.ratios), -samples(r)), default=None)
    by_count: dict[int, str] = {}
    for r in attn:
        by_count.setdefault(samples(r), r.slug)
    other = {u: standard_of(u, "sequence") for u in ("mlp", "block")}
    units = {u: found[0].slug for u, found in other.items() if found}
    token = standard_of("attn", "token")
    on_lora = standard_of("attn", "sequence", lora=True)
    return Roles(
        mindskip=main and main.slug,
        units=units,
        token=token[0].slug if token else None,
        samples=by_count,
        lora_routers=on_lora[0].slug if on_lora else None,
        lora=lora_method(on_lora[0].lora) if on_lora else None,
    )


def write_roles(roles: Roles, path: str | Path) -> Path:
    return write_json(path, roles.to_dict(), indent=1)


def read_roles(path: str | Path) -> Roles:
    return Roles.from_dict(read_json(path, "roles (which runs the claims compare)"))
