#!/usr/bin/env bash
# SmolLM2-135M-Instruct (real weights, fp32) on CPU (THREADS, default 2): dense vs MindSkip (forced
# pattern, 8 of 30 layers: 13,15,...,27, 16 routed layers with zero routers) vs the same
# sublayers removed by hand (the ceiling), for attn, mlp and block. One process, interleaved
# repeats. Writes benchmarks/cpu-smollm2.{md,csv,json} (and the per-run folder).
#
#   bash benchmarks/cpu_smollm2.sh                 # ~15-40 min on 2 cores, depending on load
#   MODEL=smollm2-135m SHAPE=--shape-only bash benchmarks/cpu_smollm2.sh   # without the weights
#   THREADS=1 bash benchmarks/cpu_smollm2.sh   # on a shared machine: 2 OpenMP threads thrash
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
model="${MODEL:-results/assets/models/smollm2-135m-instruct}"
out=benchmarks/cpu-smollm2
cmd=("$py" -m mindskip.profile --model "$model" ${SHAPE:-} --units attn,mlp,block
    --grid 1x512x0,8x512x0,1x128x32,8x128x32 --caches dynamic --decode-timer generate
    --repeats 5 --warmup 1 --threads "${THREADS:-2}" --out "$out")
echo "${cmd[*]}" | tee "$out.cmd"
"${cmd[@]}" >"$out.log" 2>&1
cp "$out/profile.md" "$out.md"
cp "$out/profile.csv" "$out.csv"
cp "$out/profile.json" "$out.json"
cat "$out.md"
