"""Line counts of the package's files and its longest functions (the house's size rule:
functions under about 80 lines, files under about 400 unless the file says why).

    python scripts/code_stats.py [ROOT] [--top N]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", nargs="?", default="mindskip")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    files = sorted(Path(a.root).rglob("*.py"))
    sizes = sorted(((len(p.read_text().splitlines()), str(p)) for p in files), reverse=True)
    print(f"{len(files)} files, {sum(n for n, _ in sizes)} lines; largest:")
    for n, p in sizes[: a.top]:
        print(f"  {n:5d}  {p}")
    funcs = sorted((f for p in files for f in functions(p)), reverse=True)
    print("longest functions:")
    for n, where in funcs[: a.top]:
        print(f"  {n:5d}  {where}")


if __name__ == "__main__":
    main()
