#!/usr/bin/env bash
# Run the default (embedded, offline) pipeline end to end.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --dry-run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv="${MINDSKIP_VENV:-.venv}"
export PATH="$PWD/$venv/bin:$PATH"
exec snakemake --cores 2 --configfile config.yaml "$@"
