"""Where every stage writes: one method per kind of file, below a results root.

The workflow's rules and :meth:`mindskip.plan.Plan.inputs` take their paths from here: the
rules from :meth:`Paths.patterns` (the same paths with Snakemake's wildcards in place of
the model, suite and names), the plan's inputs from the concrete ones. Trained artefacts
are folders (:mod:`mindskip.artefacts`) that know their own file names. Every job's log
and Snakemake benchmark (:meth:`Paths.job`) mirror each other below ``logs/`` and
``logs/benchmarks/``, named by the job's stage (the README's stage times group by it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

from .artefacts import AdapterFolder, RouterFolder
from .data.models import EmbeddedModel, embedded_model

ASSETS_DIR = "results/assets"  # shared by every results root

# A job's log and benchmark path below ``logs/`` and ``logs/benchmarks/``: its stage (the
# first part), then the names the job is for ({0}, {1}: the arguments of Paths.job).
_JOBS: dict[str, str] = {
    "prepare_assets": "prepare_assets",
    "convert_model": "convert_model/{0}",  # an embedded model's slug
    "roles": "roles",
    "report": "report",
    "data": "data/{model}/{0}",  # a generated dataset
    "lora": "lora/{model}/{0}",  # a LoRA fine-tune
    "train": "train/{model}/{0}",  # a router run
    "ranking": "baselines/{model}/ranking-{0}",  # a unit
    "calibration": "baselines/{model}/{0}/calibration-{1}",  # run, ratio
    "eval": "eval/{model}/{0}/{1}/{suite}",  # method, ratio
    "profile": "profile/{model}/{0}/{1}",  # method, ratio
}


@dataclass(frozen=True)
class JobFiles:
    """Where a job logs (``log:``) and where Snakemake times it (``benchmark:``)."""

    log: str
    benchmark: str


@dataclass(frozen=True)
class Paths:
    """Where every stage writes, for one model slug and one evaluation suite."""

    model: str
    suite: str
    root: str = "results"  # the config's ``results``: every output below it
    embedded: EmbeddedModel | None = None  # None: a folder or hub id, which nothing converts

    assets = f"{ASSETS_DIR}/manifest.json"  # the task suite and training set: every root's

    @property
    def model_asset(self) -> str | None:
        """The converted embedded model's provenance, written last by ``convert_model``.
        One file per model, so configs that name different models share the assets folder
        without one's conversion counting as a change to the other's jobs."""
        if self.embedded is None:
            return None
        return f"{ASSETS_DIR}/{self.embedded.subdir}/provenance.json"

    def asset_inputs(self) -> dict[str, str]:
        """What every job that loads the model or reads the assets takes as input."""
        model = {"model_asset": self.model_asset} if self.model_asset else {}
        return {"assets": self.assets, **model}

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Paths:
        """The paths of a (validated) config: its model, suite, results root, and the
        embedded model it converts."""
        spec = embedded_model(config["model"]["source"])
        root = config.get("results", "results")
        return cls(config["model"]["name"], config["eval"]["suite"], root, spec)

    @classmethod
    def patterns(cls, root: str) -> Paths:
        """The paths as Snakemake patterns: ``{model}`` and ``{suite}`` wildcards; pass
        ``"{run}"``, ``"{method}"``, ``"{ratio}"`` ... to the methods for the others."""
        return cls(model="{model}", suite="{suite}", root=root)

    @property
    def logs(self) -> str:
        return f"{self.root}/logs"

    @property
    def benchmarks(self) -> str:
        """Snakemake's benchmark TSVs (one per job), grouped by stage below it."""
        return f"{self.logs}/benchmarks"

    def job(self, stage: str, *names: str) -> JobFiles:
        """The log and benchmark of a job of ``stage`` (see ``_JOBS``) for ``names``."""
        if stage not in _JOBS:
            raise ValueError(f"no job stage {stage!r}: one of {sorted(_JOBS)}")
        template = _JOBS[stage]
        count = sum(field.isdigit() for _, field, _, _ in Formatter().parse(template) if field)
        if len(names) != count:
            raise ValueError(f"job stage {stage!r} takes {count} name(s), got {names!r}")
        stem = template.format(*names, model=self.model, suite=self.suite)
        return JobFiles(f"{self.logs}/{stem}.log", f"{self.benchmarks}/{stem}.tsv")

    def table(self, name: str, ext: str) -> str:
        return f"{self.root}/tables/{name}.{ext}"

    def figure(self, name: str, ext: str) -> str:
        return f"{self.root}/figures/{name}.{ext}"

    def routers(self, run: str) -> RouterFolder:
        return RouterFolder(f"{self.root}/routers/{self.model}/{run}")

    def lora(self, slug: str) -> AdapterFolder:
        return AdapterFolder(f"{self.root}/lora/{self.model}/{slug}")

    def data(self, name: str) -> str:
        """A self-generated training set (its sidecar: :meth:`data_manifest`)."""
        return f"{self.root}/data/{self.model}/{name}.jsonl"

    def data_manifest(self, name: str) -> str:
        return f"{self.root}/data/{self.model}/{name}.manifest.json"

    @property
    def roles(self) -> str:
        """Which runs the claims compare (:mod:`mindskip.roles`), written by rule ``roles``."""
        return f"{self.root}/plan/{self.model}/roles.json"

    def ranking(self, unit: str) -> str:
        return f"{self.root}/baselines/{self.model}/ranking-{unit}.json"

    def calibration(self, run: str, ratio: str) -> str:
        return f"{self.root}/baselines/{self.model}/{run}/calibration-{ratio}.json"

    def eval(self, method: str, ratio: str) -> str:
        return f"{self.root}/eval/{self.model}/{method}/{ratio}/{self.suite}.json"

    def items(self, method: str, ratio: str) -> str:
        return f"{self.root}/eval/{self.model}/{method}/{ratio}/{self.suite}.items.jsonl.gz"

    def lm_eval(self, method: str, ratio: str) -> str:
        """lm-eval's own results of the job."""
        return f"{self.root}/eval/{self.model}/{method}/{ratio}/{self.suite}.lm_eval.json"

    def prompts(self, method: str, ratio: str) -> str:
        """The token ids of every context a job scored (the profile's ``scored`` inputs)."""
        return f"{self.root}/eval/{self.model}/{method}/{ratio}/{self.suite}.prompts.jsonl.gz"

    def profile(self, method: str, ratio: str, ext: str = "csv") -> str:
        """A profile job's table (``csv``), record (``json``) or summary (``md``)."""
        return f"{self.root}/profile/{self.model}/{method}/{ratio}/profile.{ext}"
