"""Artefact folders (mindskip.artefacts): every file a job reads is among its declared
inputs, a job finds its folder only from one of the folder's own files, and thresholds
calibrated for other routers are refused before they are used."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_methods import _configs

from mindskip.artefacts import AdapterFolder, Calibration, RouterFolder
from mindskip.method import resolve
from mindskip.plan import plan

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "results" / "full"
RUN = "attn-seq-n16-c0.5-long-192-e95350"


def test_every_file_a_method_loads_is_a_declared_input():
    """The evaluation and profile jobs of a router method declare the routing config that
    loading the routers reads, and a LoRA method the adapter config (not only weights)."""
    full = plan(dict(_configs())["full.yaml"])
    roles = full.roles
    routers = full.inputs(roles.mindskip, "0.250")
    folder = full.paths.routers(roles.mindskip)
    assert routers["routers"] == str(folder.weights)
    assert routers["routers_config"].endswith("/mindskip_config.json")
    assert routers["calibration"] == full.paths.calibration(roles.mindskip, "0.250")
    on_lora = full.inputs(roles.lora_routers, "native")
    assert on_lora["lora"].endswith("/adapter_model.safetensors")
    assert on_lora["lora_config"].endswith("/adapter_config.json")
    assert Path(on_lora["lora"]).parent == Path(on_lora["lora_config"]).parent
    assert full.inputs(roles.lora, "native").keys() == {
        "assets",
        "model_asset",
        "lora",
        "lora_config",
    }
    # the model a job loads is its conversion's provenance, one file per embedded model
    assert routers["model_asset"] == "results/assets/models/smollm2-135m-instruct/provenance.json"


def test_a_folder_is_found_only_from_its_own_files(tmp_path):
    assert RouterFolder.holding(tmp_path / "r" / "mindskip_config.json").path == tmp_path / "r"
    assert AdapterFolder.holding(tmp_path / "a" / "adapter_model.safetensors").path == (
        tmp_path / "a"
    )
    with pytest.raises(ValueError, match="not a file of a RouterFolder"):
        RouterFolder.holding(tmp_path / "r" / "adapter_model.safetensors")
    with pytest.raises(FileNotFoundError, match="no adapter_model.safetensors"):
        AdapterFolder(tmp_path).check()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        AdapterFolder(tmp_path).check()


def _job(tmp_path: Path) -> tuple[dict, dict]:
    """A committed router evaluation's params and inputs, its folder copied to tmp_path."""
    folder = tmp_path / RUN
    shutil.copytree(FULL / "routers" / "smollm2-135m" / RUN, folder)
    cal = FULL / "baselines" / "smollm2-135m" / RUN / "calibration-0.250.json"
    params = plan(dict(_configs())["full.yaml"]).params(RUN, "0.250")
    inputs = {**RouterFolder(folder).inputs(), "calibration": str(cal)}
    return params, inputs


def test_calibrated_thresholds_belong_to_the_routers_they_are_used_with(tmp_path):
    params, inputs = _job(tmp_path)
    spec, meta = resolve(params, inputs)
    cal = Calibration.read(inputs["calibration"])
    assert cal.requested == 0.25 and len(cal.thresholds) == 16
    assert dict(spec.thresholds) == {int(i): t for i, t in cal.thresholds.items()}
    assert meta["router_path"] == str(tmp_path / RUN)
    weights = Path(inputs["routers"])
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # retrained, say
    with pytest.raises(ValueError, match="calibrated for other routers"):
        resolve(params, inputs)


def test_a_calibration_without_thresholds_is_refused(tmp_path):
    path = tmp_path / "calibration-0.250.json"
    path.write_text('{"requested_skip_ratio": 0.25, "thresholds": {}}\n')
    with pytest.raises(ValueError, match="no thresholds"):
        Calibration.read(path)
    path.write_text('{"thresholds": {"13": 0.5}}\n')
    with pytest.raises(ValueError, match="not a calibration record"):
        Calibration.read(path)
