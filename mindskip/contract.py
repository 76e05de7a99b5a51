"""The family contract, checked on tiny random models of the installed transformers.

For a family (``model_type``), a unit and a routing, :func:`check` builds a tiny random
model of the family and verifies four things against it:

- ``execute``: every router forced to execute gives the dense model's logits;
- ``skip``: every router forced to skip gives the logits of the model with the unit removed
  by hand: the stock layer with its attention or feed-forward submodule replaced by one that
  returns zeros (``block``: the layer replaced by the identity), and :func:`remove_sublayers`
  gives the same; and every module of the layer that receives a skipped unit's zero (a norm
  after the sublayer) returns zero, so a skipped unit adds nothing;
- ``mixed``: a batch with mixed decisions gives each row's logits run alone with its own
  decisions;
- ``decode``: prefill then one-token decode steps give the logits of one uncached forward.

Refused combinations are checked to be refused by :func:`mindskip.apply_mindskip` before any
compute. :func:`families_in_transformers` enumerates the causal-LM families of the installed
transformers, so a new release's families are listed (and refused until checked).
``python -m mindskip.contract`` writes the resulting table to ``docs/families.md``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import MindSkipConfig
from .families import ROUTINGS, UNITS, UnsupportedFamilyError, family
from .files import write_text

ATOL = 1e-5
NUM_LAYERS = 4
ROUTED = (1, 2)
BATCH, LENGTH, PREFILL = 3, 8, 6
VOCAB = 128

# a tiny config: names a family does not know are ignored by it (kept as plain attributes)
_TINY: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=NUM_LAYERS,
    num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
    pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    # mixtures of experts: few, small experts
    num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2,
    moe_intermediate_size=32, shared_expert_intermediate_size=32, n_shared_experts=1,
    # no sliding window shorter than the tiny sequences, no dropout
    sliding_window=64, use_sliding_window=False, attention_dropout=0.0, hidden_dropout=0.0,
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """One family x unit x routing: ``status`` is ``exact``, ``refused``, ``skipped`` (no
    tiny model) or ``failed``; ``detail`` says why (empty when exact)."""

    model_type: str
    unit: str
    routing: str
    status: str
    detail: str = ""


def families_in_transformers() -> list[str]:
    """Every causal-LM ``model_type`` of the installed transformers, sorted."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def tiny_model(model_type: str, seed: int = 0) -> nn.Module:
    """A tiny random float32 model of ``model_type`` in eval mode (sdpa attention).

    Raises ``LookupError`` when the installed transformers lacks the family and
    ``ValueError`` when its tiny model cannot be built or is not a decoder layer stack.
    """
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .surgery import decoder_layers

    if model_type not in CONFIG_MAPPING:
        raise LookupError(f"transformers has no family {model_type!r}")
    try:
        config = CONFIG_MAPPING[model_type](**_TINY)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 (any failure means: no tiny model)
        raise ValueError(f"no tiny model: {type(e).__name__}: {_first_line(e)}") from e
    try:
        layers = decoder_layers(model)
    except TypeError as e:
        raise ValueError(str(e)) from e
    if len(layers) != NUM_LAYERS:
        raise ValueError(f"the tiny config gave {len(layers)} layers, not {NUM_LAYERS}")
    return model.eval()


def check(
    model_type: str,
    unit: str,
    routing: str,
    *,
    enforce: bool = True,
    dense: nn.Module | None = None,
) -> Outcome:
    """Check one combination (see the module docstring). ``enforce=False`` runs the checks
    on a family the table refuses (to see whether the refusal is still needed). ``dense``:
    the family's tiny model, when already built (it is not changed)."""
    reason = family(model_type).refusal(unit, routing)
    if reason and enforce:
        return _check_refused(model_type, unit, routing, reason)
    if dense is None:
        try:
            dense = tiny_model(model_type)
        except (LookupError, ValueError) as e:
            return Outcome(model_type, unit, routing, "skipped", str(e))
    with torch.no_grad():
        try:
            failures, notes = _check_exact(dense, unit, routing)
        except Exception as e:  # noqa: BLE001 (a crash is a failed contract)
            failures, notes = [f"crashed: {type(e).__name__}: {_first_line(e)}"], []
    if failures:
        return Outcome(model_type, unit, routing, "failed", "; ".join(failures))
    return Outcome(model_type, unit, routing, "exact", "; ".join(notes))


def check_family(model_type: str, *, enforce: bool = True) -> list[Outcome]:
    """Every unit and routing of one family (its tiny model is built once)."""
    combos = [(u, r) for u in UNITS for r in ROUTINGS]
    dense = None
    if not enforce or any(family(model_type).refusal(u, r) is None for u, r in combos):
        try:
            dense = tiny_model(model_type)
        except (LookupError, ValueError) as e:
            return [Outcome(model_type, u, r, "skipped", str(e)) for u, r in combos]
    return [check(model_type, u, r, enforce=enforce, dense=dense) for u, r in combos]


# ---------------------------------------------------------------------- the checks
def _config(unit: str, routing: str) -> MindSkipConfig:
    return MindSkipConfig(unit=unit, routing=routing, layers=ROUTED)


def _ids(batch: int = BATCH, length: int = LENGTH, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=g)


def _check_refused(model_type: str, unit: str, routing: str, reason: str) -> Outcome:
    """``apply_mindskip`` refuses from the config alone: the model here is a bare module
    with the family's config, which could not compute anything."""
    from .surgery import apply_mindskip

    model = _Bare(model_type)
    try:
        apply_mindskip(model, _config(unit, routing))
    except UnsupportedFamilyError as e:
        if repr(model_type) not in str(e) or reason not in str(e):
            return Outcome(model_type, unit, routing, "failed", f"unclear refusal: {e}")
        return Outcome(model_type, unit, routing, "refused", reason)
    return Outcome(model_type, unit, routing, "failed", "the table refuses it, apply does not")


class _Bare(nn.Module):
    """A module with nothing but a family's config."""

    def __init__(self, model_type: str) -> None:
        super().__init__()
        from transformers import PretrainedConfig

        self.config = PretrainedConfig()
        self.config.model_type = model_type


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _check_exact(dense: nn.Module, unit: str, routing: str) -> tuple[list[str], list[str]]:
    """The four checks' failures, and notes on checks left out; ``dense`` is routed,
    pruned and cut in place, then restored."""
    from .surgery import _apply, remove_mindskip

    x = _ids()
    want = dense(x).logits
    with _removed_by_hand(dense, unit):
        removed = dense(x).logits
    with _pruned(dense, unit):
        pruned = dense(x).logits
    # the reference itself: where the dense model's own cached decode differs from its
    # uncached forward (a transformers release's bug, e.g. doge on 5.17), the routed
    # model's cache cannot be held to it, and that check is left out
    dense_decode = _decode_diff(dense, x, want)
    model = _apply(dense, _config(unit, routing))
    try:
        failures = _check_routed(model, x, want, removed, decode=dense_decode <= ATOL)
    finally:
        remove_mindskip(model)
    notes = []
    if dense_decode > ATOL:
        notes.append(
            f"decode not checked: the dense model's own cached decode differs from its "
            f"uncached forward by {dense_decode:.2g} in this transformers"
        )
    if _max_diff(removed, want) < 1e-3:
        failures.append("removing the unit by hand changes nothing (the check is void)")
    d = _max_diff(pruned, removed)
    if d > ATOL:
        failures.append(f"remove_sublayers differs from the unit removed by hand by {d:.2g}")
    return failures, notes


def _check_routed(
    model: nn.Module,
    x: torch.Tensor,
    want: torch.Tensor,
    removed: torch.Tensor,
    decode: bool = True,
) -> list[str]:
    from .surgery import forced_decisions, get_config

    failures: list[str] = []
    with forced_decisions(model, "execute"):
        d = _max_diff(model(x).logits, want)
    if d > ATOL:
        failures.append(f"all-execute differs from dense by {d:.2g}")
    with forced_decisions(model, "skip"), _zero_in_nonzero_out(model) as leaks:
        d = _max_diff(model(x).logits, removed)
    if d > ATOL:
        failures.append(f"all-skip differs from the unit removed by hand by {d:.2g}")
    failures += [
        f"{name} turns a skipped sublayer's zero into non-zero (a norm with a bias?): the "
        "layer still adds something for a skipped unit"
        for name in sorted(leaks)
    ]

    decisions = _mixed(get_config(model).routing)
    with forced_decisions(model, {i: _Slices(m) for i, m in decisions.items()}):
        got = model(x).logits
    for row in range(BATCH):
        alone = {i: _Slices(m[row : row + 1]) for i, m in decisions.items()}
        with forced_decisions(model, alone):
            d = _max_diff(model(x[row : row + 1]).logits[0], got[row])
        if d > ATOL:
            failures.append(f"row {row} of a mixed batch differs from it alone by {d:.2g}")
            break

    d = _decode_diff(model, x, got, decisions) if decode else 0.0
    if d > ATOL:
        failures.append(f"cached decode differs from uncached by {d:.2g}")
    return failures


@contextlib.contextmanager
def _zero_in_nonzero_out(model: nn.Module) -> Iterator[set[str]]:
    """The names of the routed layers' own modules (norms, not the units) that receive an
    all-zero input and return a non-zero output: a module after a skipped sublayer (a post
    norm) must map its zero to zero, or the layer adds something for a skipped unit."""
    from .surgery import mindskip_layers
    from .units import RoutedUnit

    found: set[str] = set()
    handles = []
    for i, wrapper in mindskip_layers(model).items():
        for name, child in wrapper.layer.named_children():
            if isinstance(child, RoutedUnit):
                continue

            def hook(_m: nn.Module, args: tuple, out: Any, name: str = f"layer {i} {name}"):
                if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                    if not args[0].any() and out.any():
                        found.add(name)

            handles.append(child.register_forward_hook(hook))
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _pruned(model: nn.Module, unit: str) -> Iterator[None]:
    """``model`` with :func:`remove_sublayers` applied to the routed layers, then undone."""
    from .surgery import _remove_sublayers, decoder_layers

    layers = decoder_layers(model)
    _remove_sublayers(model, ROUTED, unit)
    try:
        yield
    finally:
        for i in ROUTED:
            layers[i] = layers[i].unwrap()


def _mixed(routing: str) -> dict[int, torch.Tensor]:
    """Forced decisions with some rows (or tokens) executing and some skipping."""
    if routing == "sequence":
        return {1: torch.tensor([True, False, True]), 2: torch.tensor([False, True, True])}
    g = torch.Generator().manual_seed(1)
    masks = {i: torch.rand(BATCH, LENGTH, generator=g) < 0.5 for i in ROUTED}
    masks[ROUTED[0]][0] = True  # one row executes every token, one none
    masks[ROUTED[0]][1] = False
    return masks


class _Slices:
    """A forced decision that hands out consecutive chunks of a full (B, T) token mask,
    one chunk per forward (prefill, then decode steps); a sequence mask (B,) as is."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask
        self.offset = 0

    def __call__(self, layer: Any, batch: int, length: int) -> torch.Tensor:
        if self.mask.dim() == 1:
            return self.mask
        out = self.mask[:, self.offset : self.offset + length]
        self.offset += length
        return out


def _decode_diff(
    model: nn.Module,
    x: torch.Tensor,
    want: torch.Tensor,
    decisions: dict[int, torch.Tensor] | None = None,
) -> float:
    """Prefill + one-token decode steps against ``want``: of the routed model with
    ``decisions`` forced, or (None) of the model as it is (the unrouted reference)."""
    from transformers import DynamicCache

    from .capture import cache_kwarg
    from .surgery import forced_decisions

    cache, kw = DynamicCache(config=model.config), cache_kwarg(model)
    forced = (
        contextlib.nullcontext()
        if decisions is None
        else forced_decisions(model, {i: _Slices(m) for i, m in decisions.items()})
    )
    with forced:
        logits = [model(x[:, :PREFILL], use_cache=True, **{kw: cache}).logits]
        for t in range(PREFILL, LENGTH):
            logits.append(model(x[:, t : t + 1], use_cache=True, **{kw: cache}).logits)
    return _max_diff(torch.cat(logits, dim=1), want)


class _Zero(nn.Module):
    """A sublayer removed by hand: it returns zeros shaped like its input (attention: with
    no attention weights)."""

    def __init__(self, attention: bool) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        h = args[0] if args else kwargs["hidden_states"]
        return (torch.zeros_like(h), None) if self.attention else torch.zeros_like(h)


class _Identity(nn.Module):
    """A decoder layer removed by hand."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


@contextlib.contextmanager
def _removed_by_hand(model: nn.Module, unit: str) -> Iterator[None]:
    """``model`` with ``unit`` of the routed layers replaced by zeros (or the identity),
    the stock layer's own forward running around it; restored on exit."""
    from .surgery import decoder_layers

    fam = family(model.config.model_type)
    layers = decoder_layers(model)
    undo: list[tuple[nn.Module, str, nn.Module]] = []
    for i in ROUTED:
        if unit == "block":
            undo.append((layers, str(i), layers[i]))
            layers[i] = _Identity()
        else:
            name = fam.attention if unit == "attn" else fam.feed_forward
            undo.append((layers[i], name, getattr(layers[i], name)))
            setattr(layers[i], name, _Zero(attention=unit == "attn"))
    try:
        yield
    finally:
        for parent, name, module in reversed(undo):
            setattr(parent, name, module)


# ---------------------------------------------------------------------- the table
def table(outcomes: Iterable[Outcome], transformers_version: str) -> str:
    """``docs/families.md``: one row per family, one column per unit x routing."""
    rows: dict[str, dict[tuple[str, str], Outcome]] = {}
    for o in outcomes:
        rows.setdefault(o.model_type, {})[(o.unit, o.routing)] = o
    cols = [(u, r) for u in UNITS for r in ROUTINGS]
    reasons: dict[str, int] = {}

    def cell(o: Outcome) -> str:
        if o.status == "exact" and not o.detail:
            return "exact"
        n = reasons.setdefault(f"{o.status}: {o.detail}", len(reasons) + 1)
        return f"{o.status} [{n}]"

    lines = [
        "# Model families: exact or refused",
        "",
        "Written by `python -m mindskip.contract`, not by hand, from "
        f"tiny random models of every causal-LM family of transformers {transformers_version}.",
        "`exact`: all-execute equals dense, all-skip equals the unit removed by hand, mixed "
        f"rows equal each row alone, cached decode equals uncached (float32, max abs logit "
        f"difference <= {ATOL:g}). `refused`: `apply_mindskip` raises before any compute, "
        "naming the family and the reason (a family missing from the table is refused as "
        "never checked).",
        "",
        "| family | " + " | ".join(f"{u} {r}" for u, r in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for kind in sorted(rows):
        got = rows[kind]
        lines.append(f"| {kind} | " + " | ".join(cell(got[c]) for c in cols) + " |")
    lines += ["", "Reasons:", ""]
    lines += [f"{n}. {text}" for text, n in reasons.items()]
    return "\n".join(lines) + "\n"


def run_all(model_types: Iterable[str] | None = None) -> list[Outcome]:
    """Outcomes for every installed causal-LM family (refusals are checked from the config
    alone, so only the families routed exactly build a tiny model)."""
    kinds = families_in_transformers() if model_types is None else list(model_types)
    out: list[Outcome] = []
    for kind in kinds:
        out += check_family(kind)
    return out


def main(argv: list[str]) -> None:
    import transformers

    torch.set_num_threads(1)  # tiny models: one thread is fastest
    path = Path(argv[0] if argv else "docs/families.md")
    outcomes = run_all()
    write_text(path, table(outcomes, transformers.__version__))
    bad = [o for o in outcomes if o.status == "failed"]
    print(f"wrote {path}: {len(outcomes)} outcomes, {len(bad)} failed", file=sys.stderr)
    for o in bad:
        print(f"  {o.model_type} {o.unit} {o.routing}: {o.detail}", file=sys.stderr)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


if __name__ == "__main__":  # python -m mindskip.contract [docs/families.md]
    main(sys.argv[1:])
