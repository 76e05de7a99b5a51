#!/usr/bin/env bash
# The withdrawn BIG-bench full matrix (its last commit, c8a2c95), its claims table rebuilt
# from its committed per-item logs by today's verdict code (matched ratios, cluster
# bootstrap, decidability). Those runs scored BIG-bench stand-ins for the paper's tasks
# and can no longer be rerun; their item logs can still be re-analysed.
#   bash scripts/rebuild_archived_claims.sh        (from the repository root, venv active)
set -euo pipefail
COMMIT=${1:-c8a2c957b5d6e8d59b3ed203f435b168f0518d60}
OUT=results/archive/bigbench-full
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$COMMIT" results/full | tar -x -C "$tmp"
python -m mindskip.report --results "$tmp/results/full" --model smollm2-135m >/dev/null
mkdir -p "$OUT"
cp "$tmp/results/full/tables/claims.md" "$tmp/results/full/tables/claims.csv" "$OUT/"
python -m mindskip.report.findings "$OUT/claims.csv" --title "# The withdrawn BIG-bench full matrix, re-analysed

<!-- Written by scripts/rebuild_archived_claims.sh: edit the code, not the numbers. -->

The full matrix of commit \`${COMMIT:0:9}\` (SmolLM2-135M, BIG-bench stand-ins for the
paper's tasks, which can no longer be rebuilt: see \`results/README.md\`), its committed
item logs re-analysed by today's verdict code: comparisons at matched realised ratios,
intervals that resample items sharing a prompt together, and the items an undecided
comparison would need. The claims table is \`claims.md\` beside this file. These verdicts
are about those stand-in tasks; \`config/full.yaml\` reruns the matrix on the paper's." > "$OUT/README.md"
echo "$OUT"
