#!/usr/bin/env bash
# Lint and test. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k data`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv="${MINDSKIP_VENV:-.venv}"
export PATH="$PWD/$venv/bin:$PATH"

echo "[test] ruff check"
ruff check .
echo "[test] pytest"
pytest -q "$@"
