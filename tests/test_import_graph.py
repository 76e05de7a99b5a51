"""No import cycles among the modules of ``mindskip``.

The graph is read from the source (``ast``), so imports inside functions count as much as
those at the top: a function-level import that closes a circle only moves the failure to
the first call. An edge goes from a module to every module it names, and to the packages
above that module (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``), except
the importer's own packages (already running when it is imported). Imports under ``if
TYPE_CHECKING:`` never run and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mindskip"


def module_files(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` for every module under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip |= {id(n) for n in ast.walk(stmt)}
    return skip


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules it imports}`` among the modules under ``package``."""
    mods = module_files(package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        here = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        named: list[str] = []
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                named += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:  # ``from pkg import submodule`` names a module
                    sub = f"{source}.{alias.name}"
                    named.append(sub if sub in mods else source)
        edges = set()
        for target in named:
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                up = ".".join(parts[:k])
                if up in mods and up != name and not name.startswith(up + "."):
                    edges.add(up)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_function_level_and_package_edges():
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p"}, "q": set()}
    assert cycles(graph) == [["p", "p.a", "p.b"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_graph_reads_function_level_imports():
    graph = import_graph()
    # mindskip.profile.timing imports the captured step inside a function
    assert "mindskip.profile.captured" in graph["mindskip.profile.timing"]
    # the decoder and the profiler's captured step share mindskip.capture; the decoder
    # never imports the profiler
    assert "mindskip.capture" in graph["mindskip.profile.captured"]
    assert "mindskip.capture" in graph["mindskip.decode"]
    assert not any(m.startswith("mindskip.profile") for m in graph["mindskip.decode"])


def test_no_import_cycles_in_mindskip():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_decoder_does_not_import_the_profiler():
    assert not any(m.startswith("mindskip.profile") for m in import_graph()["mindskip.decode"])
