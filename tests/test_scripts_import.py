"""The scripts outside the package still match its API.

Every ``benchmarks/*.py`` is imported (as a module, so its ``__main__`` block does not run):
a name it imports that the package no longer has fails here, not on the next benchmark run.
Every ``workflow/scripts/*.py`` runs only inside Snakemake (it reads a ``snakemake``
global), so it is compiled, not run, and each name of its ``from mindskip... import ...``
lines must exist in that module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))
WORKFLOW_SCRIPTS = sorted((ROOT / "workflow/scripts").glob("*.py"))


def test_there_are_scripts_to_check():
    assert BENCHMARKS and WORKFLOW_SCRIPTS


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_imports(path):
    spec = importlib.util.spec_from_file_location(f"_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # raises on a stale import
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


def mindskip_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every ``from mindskip... import name`` in ``path``
    (and ``(line, module, "")`` for ``import mindskip...``), at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level:
            if (node.module or "").split(".")[0] == "mindskip":
                out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("mindskip")]
    return out


@pytest.mark.parametrize("path", WORKFLOW_SCRIPTS, ids=lambda p: p.name)
def test_workflow_script_compiles_and_its_mindskip_names_exist(path):
    compile(path.read_text(), str(path), "exec")
    names = mindskip_imports(path)
    assert names, f"{path.name} imports nothing from mindskip"
    missing = []
    for line, module_name, name in names:
        module = importlib.import_module(module_name)
        if name and not hasattr(module, name):
            try:  # ``from package import submodule``
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"line {line}: {module_name}.{name}")
    assert not missing, f"{path.name} imports names that do not exist: {missing}"


def test_the_check_finds_a_missing_name(tmp_path):
    script = tmp_path / "stale.py"
    script.write_text("from mindskip.baselines import MethodSpec\nsm = snakemake  # noqa\n")
    ((_, module, name),) = mindskip_imports(script)
    assert not hasattr(importlib.import_module(module), name)
