"""Artefact folders: what a training stage writes, as a folder whose file names are known
in one place.

- :class:`RouterFolder`: trained routers (``routers.safetensors``, ``mindskip_config.json``,
  the training's ``metrics.json``). :func:`mindskip.save_routers` writes it and
  :func:`mindskip.load_routers` loads it.
- :class:`AdapterFolder`: LoRA adapters in peft's own layout (``adapter_model.safetensors``,
  ``adapter_config.json``), so ``peft.PeftModel.from_pretrained(model, folder)`` loads them
  too; :func:`mindskip.train.save_adapters` / :func:`mindskip.train.load_adapters`.

The workflow declares a folder's :meth:`inputs` (every file a job reads) and its
:meth:`outputs`; a job's code gets the folder back with :meth:`holding`. Light on purpose
(no torch): :mod:`mindskip.paths` hands these out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .files import read_json
from .provenance import sha256_file


@dataclass(frozen=True)
class _Folder:
    path: Path
    role: ClassVar[str]  # the key of its weights among a job's inputs
    weights_file: ClassVar[str]
    config_file: ClassVar[str]
    metrics_file: ClassVar[str] = "metrics.json"

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def holding(cls, file: str | Path):
        """The folder of one of its files (a job's declared input): refuses any other file."""
        file = Path(file)
        if file.name not in (cls.weights_file, cls.config_file, cls.metrics_file):
            raise ValueError(f"{file} is not a file of a {cls.__name__}")
        return cls(file.parent)

    @property
    def weights(self) -> Path:
        return self.path / self.weights_file

    @property
    def config(self) -> Path:
        return self.path / self.config_file

    @property
    def metrics(self) -> Path:
        return self.path / self.metrics_file

    def inputs(self) -> dict[str, str]:
        """What a job that loads the folder reads, by role (a rule's named inputs)."""
        return {self.role: str(self.weights), f"{self.role}_config": str(self.config)}

    def outputs(self) -> dict[str, str]:
        """What the training job writes (a rule's named outputs)."""
        return {
            self.role: str(self.weights),
            "config": str(self.config),
            "metrics": str(self.metrics),
        }

    def check(self) -> None:
        """Raise FileNotFoundError naming the first file the folder lacks."""
        for file in (self.weights, self.config):
            if not file.is_file():
                raise FileNotFoundError(f"no {file.name} in {self.path}")

    def sha256(self) -> str:
        """sha256 of the weights file, for provenance records."""
        return sha256_file(self.weights)

    def read_config(self) -> dict:
        return read_json(self.config, f"{type(self).__name__} config")


class RouterFolder(_Folder):
    """Trained routers: weights (with the model's fingerprint and routing config as
    metadata) and the routing config as JSON beside them."""

    role = "routers"
    weights_file = "routers.safetensors"
    config_file = "mindskip_config.json"


class AdapterFolder(_Folder):
    """LoRA adapters in peft's file layout (``PeftModel.from_pretrained`` reads it)."""

    role = "lora"
    weights_file = "adapter_model.safetensors"
    config_file = "adapter_config.json"


@dataclass(frozen=True)
class Calibration:
    """Thresholds that hit a requested skip ratio for one router folder (the record that
    rule ``calibrate_thresholds`` writes, :func:`mindskip.baselines.calibration_record`)."""

    path: Path
    requested: float
    thresholds: dict[str, float]  # routed layer index -> tau, as stored
    routers_sha256: str | None

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        path = Path(path)
        record = read_json(path, "calibration")
        try:
            taus = {str(int(i)): float(t) for i, t in record["thresholds"].items()}
            requested = float(record["requested_skip_ratio"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path} is not a calibration record: {e!r}") from e
        if not taus:
            raise ValueError(f"{path} holds no thresholds")
        return cls(path, requested, taus, record.get("routers_sha256"))

    def check_routers(self, folder: RouterFolder) -> None:
        """Refuse thresholds fitted to other routers than ``folder``'s (a retrained run)."""
        if self.routers_sha256 is not None and self.routers_sha256 != folder.sha256():
            raise ValueError(
                f"{self.path} was calibrated for other routers than {folder.weights} "
                "(they were retrained since): rerun the calibration"
            )
