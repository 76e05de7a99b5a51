"""Where every stage writes: one method per kind of file, below a results root.

The workflow's rules and :meth:`mindskip.plan.Plan.inputs` take their paths from here: the
rules from :meth:`Paths.patterns` (the same paths with Snakemake's wildcards in place of
the model, suite and names), the plan's inputs from the concrete ones. Trained artefacts
are folders (:mod:`mindskip.artefacts`) that know their own file names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .artefacts import AdapterFolder, RouterFolder


@dataclass(frozen=True)
class Paths:
    """Where every stage writes, for one model slug and one evaluation suite."""

    model: str
    suite: str
    root: str = "results"  # the config's ``results``: every output below it

    assets = "results/assets/manifest.json"  # shared by every results root

    @classmethod
    def patterns(cls, root: str) -> Paths:
        """The paths as Snakemake patterns: ``{model}`` and ``{suite}`` wildcards; pass
        ``"{run}"``, ``"{method}"``, ``"{ratio}"`` ... to the methods for the others."""
        return cls(model="{model}", suite="{suite}", root=root)

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
