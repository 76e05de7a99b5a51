#!/usr/bin/env bash
# The README's first command on a fresh clone, timed: clone this checkout's HEAD into a new
# folder, run `bash scripts/run.sh` there (install included, with its own .venv), and write
# results/logs/fresh_clone.json (command, commit, seconds, install seconds, machine, date).
#   bash scripts/fresh_clone_run.sh [DEST] [--copy-back]
# --copy-back copies the run's results/ (not the assets) into this checkout, to commit.
# pip's download cache of this machine is used; a machine that never installed the
# packages downloads them too (about 1 GB, mostly PyPI wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
dest="${1:-$(mktemp -d)/mindskip}"
copy_back="${2:-}"
git clone -q "$here" "$dest"
cd "$dest"
commit=$(git rev-parse HEAD)
t0=$(date +%s.%N)
bash scripts/install.sh
t1=$(date +%s.%N)
bash scripts/run.sh
t2=$(date +%s.%N)
python3 - "$commit" "$t0" "$t1" "$t2" >results/logs/fresh_clone.json <<'PY'
import json, os, sys, time
commit, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
print(json.dumps({
    "command": "bash scripts/run.sh",
    "commit": commit,
    "seconds": round(t2 - t0, 1),
    "install_seconds": round(t1 - t0, 1),
    "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, no GPU",
    "date": time.strftime("%Y-%m-%d", time.gmtime(t0)),
}, indent=2))
PY
cat results/logs/fresh_clone.json
if [ "$copy_back" = "--copy-back" ]; then
    for item in "$dest"/results/* "$dest"/results/.[!.]*; do
        [ -e "$item" ] || continue
        name=$(basename "$item")
        case "$name" in assets | README.md) continue ;; esac
        rm -rf "${here:?}/results/$name"
        cp -a "$item" "$here/results/$name"
    done
    echo "[fresh] results copied into $here/results (assets and README.md kept)"
fi
