"""Where every stage writes: one method per kind of file, below a results root.

The workflow's rules and :meth:`mindskip.plan.Plan.inputs` take their paths from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paths:
    """Where every stage writes, for one model slug and one evaluation suite."""

    model: str
    suite: str
    root: str = "results"  # the config's ``results``: every output below it

    assets = "results/assets/manifest.json"  # shared by every results root

    def routers(self, run: str) -> str:
        return f"{self.root}/routers/{self.model}/{run}/routers.safetensors"

    def router_config(self, run: str) -> str:
        return f"{self.root}/routers/{self.model}/{run}/mindskip_config.json"

    def metrics(self, run: str) -> str:
        return f"{self.root}/routers/{self.model}/{run}/metrics.json"

    def lora(self, slug: str) -> str:
        return f"{self.root}/lora/{self.model}/{slug}/lora.safetensors"

    def data(self, name: str) -> str:
        """A self-generated training set (its sidecar: ``<name>.manifest.json``)."""
        return f"{self.root}/data/{self.model}/{name}.jsonl"

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

    def prompts(self, method: str, ratio: str) -> str:
        """The token ids of every context a job scored (the profile's ``scored`` inputs)."""
        return f"{self.root}/eval/{self.model}/{method}/{ratio}/{self.suite}.prompts.jsonl.gz"

    def profile(self, method: str, ratio: str) -> str:
        return f"{self.root}/profile/{self.model}/{method}/{ratio}/profile.csv"
