"""What a profile measures: :class:`ProfileConfig` (frozen, validated) and named shapes.

Nothing here touches torch or a model: a bad value fails on construction, before any
compute, and the command line and the workflow build the same object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import UNITS, MindSkipConfig

# Cache kinds of decode regimes. A new decode path (e.g. CUDA-graph capture) adds its name
# here and its :class:`mindskip.profile.timing.CacheKind` to ``timing.DECODERS``.
CACHES = ("dynamic", "static", "compiled", "captured")
TIMERS = ("generate", "loop")
PROMPT_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".pt")

# Named shapes for ``shape_only`` (random weights: speed does not depend on their values).
SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    ),
    "smollm2-135m": dict(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    ),
}


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure.

    Attributes:
        model: a name in :data:`SHAPES` or a local Hugging Face folder (label only when a
            model object is passed to :func:`mindskip.profile.profile`).
        shape_only: random weights from the named shape (or the folder's config.json).
        units: one forced-pattern method per unit (``attn``, ``mlp``, ``block``).
        layers: the skip pattern; ``None``: every other layer of the routed range.
        num_routed: the routed range (the last n layers before the final one).
        routing: ``sequence`` or ``token`` for the forced-pattern methods.
        routers: trained router folders, each profiled as one more method.
        grid: ``(batch, prompt_len, new_tokens)``; ``new_tokens == 0`` is a prefill regime.
        caches: ``dynamic``, ``static``, ``compiled`` (decode regimes only; prefill always
            uses a dynamic cache).
        decode_timer: ``generate`` (generate(N) - generate(1)) or ``loop``.
        repeats, warmup: timed repeats and untimed warm-up calls per variant and regime.
            A speed CI at ``ci_level`` needs enough repeats (6 for 95%); fewer give
            ``resolved=False``.
        ceiling: also measure the hand-removed ceiling of each method.
        device, dtype: ``dtype=None`` is float32 on CPU and bfloat16 on CUDA.
        threads: CPU threads (``torch.set_num_threads``); ``None`` leaves torch's default.
        compile_mode: ``torch.compile`` mode; ``None``: reduce-overhead on CUDA, else default.
        budget_s: stop starting new regimes after this many seconds (results so far kept).
        seed: random token ids, and the tie order of real prompts of equal length.
        strict: a variant that fails raises :class:`mindskip.profile.ProfileError` (naming
            the variant and the regime); ``False`` marks its rows ``status=error: ...``.
        inputs: ``"random"`` (token ids drawn with ``seed``, no padding) or a ``.jsonl``,
            ``.json`` or ``.pt`` file of token-id sequences (e.g. the tokenised evaluation
            prompts): each repeat of a regime takes ``batch`` of them, left-cut to the last
            ``prompt_len`` tokens, grouped by length and left-padded with an attention mask.
        ci_level: coverage of the order-statistic CI of the median paired speedup.
    """

    model: str = "smollm2-135m"
    shape_only: bool = False
    units: tuple[str, ...] = ("attn", "mlp", "block")
    layers: tuple[int, ...] | None = None
    num_routed: int = 16
    routing: str = "sequence"
    routers: tuple[str, ...] = ()
    grid: tuple[tuple[int, int, int], ...] = ((1, 512, 0), (8, 512, 0), (1, 128, 32), (8, 128, 32))
    caches: tuple[str, ...] = ("dynamic",)
    decode_timer: str = "generate"
    repeats: int = 10
    warmup: int = 1
    ceiling: bool = True
    device: str = "cpu"
    dtype: str | None = None
    threads: int | None = None
    attn_implementation: str = "sdpa"
    compile_mode: str | None = None
    budget_s: float | None = None
    seed: int = 0
    strict: bool = True
    inputs: str = "random"
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "units", tuple(self.units))
        set_(self, "routers", tuple(str(r) for r in self.routers))
        set_(self, "caches", tuple(self.caches))
        set_(self, "grid", tuple(tuple(int(v) for v in g) for g in self.grid))
        set_(self, "inputs", str(self.inputs))
        if self.layers is not None:
            set_(self, "layers", tuple(sorted(int(i) for i in self.layers)))
        bad = [u for u in self.units if u not in UNITS] + [
            c for c in self.caches if c not in CACHES
        ]
        if bad:
            raise ValueError(f"unknown units/caches {bad}: use {UNITS} and {CACHES}")
        if self.decode_timer not in TIMERS:
            raise ValueError(f"decode_timer must be one of {TIMERS}, got {self.decode_timer!r}")
        for g in self.grid:
            if len(g) != 3 or g[0] < 1 or g[1] < 1 or g[2] < 0 or g[2] == 1:
                raise ValueError(f"grid entry {g}: need (batch>=1, prompt>=1, new=0 or >=2)")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        if self.inputs != "random" and not Path(self.inputs).name.endswith(PROMPT_SUFFIXES):
            raise ValueError(
                f"inputs must be 'random' or a {'/'.join(PROMPT_SUFFIXES)} file of token-id "
                f"lists, got {self.inputs!r}"
            )
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")

    def pattern(self, num_layers: int) -> tuple[int, ...]:
        """The forced skip pattern: ``layers``, else every other layer of the routed range."""
        if self.layers is not None:
            return MindSkipConfig(layers=self.layers).routed_layers(num_layers)
        return self.routed_range(num_layers)[::2]

    def routed_range(self, num_layers: int) -> tuple[int, ...]:
        """The last ``num_routed`` layers before the final one (fewer if the model is small)."""
        n = min(self.num_routed, num_layers - 2)
        return MindSkipConfig(num_routed=n).routed_layers(num_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
