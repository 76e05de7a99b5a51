"""Counts that track the package's shape (issue 28's before/after): modules over 400 lines,
functions over 80 lines, total lines, and the classes that spell out what a method is
(their own ``kind`` field). Run from a checkout:

    python scripts/code_counts.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# a class that spells out what a method is carries its own ``kind`` field (or property)
METHOD_FIELDS = ("kind",)


def counts(root: Path) -> dict[str, object]:
    files = sorted((root / "mindskip").rglob("*.py"))
    lines = {f.relative_to(root).as_posix(): len(f.read_text().splitlines()) for f in files}
    long_functions, shapes = [], []
    for f in files:
        tree = ast.parse(f.read_text())
        rel = f.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_functions.append(f"{rel}:{node.name} ({n})")
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.AnnAssign | ast.FunctionDef)
                and getattr(getattr(b, "target", None), "id", getattr(b, "name", None))
                in METHOD_FIELDS
                for b in node.body
            ):
                shapes.append(f"{rel}:{node.name}")
    return {
        "lines": sum(lines.values()),
        "modules over 400 lines": sorted(f"{k} ({v})" for k, v in lines.items() if v > 400),
        "functions over 80 lines": sorted(long_functions),
        "classes with their own method kind": sorted(shapes),
    }


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for key, value in counts(root).items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for v in value:
                print(f"  {v}")
        else:
            print(f"{key}: {value}")
