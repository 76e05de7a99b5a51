#!/usr/bin/env bash
# Everything the GPU path needs measured, in one command on one H200 (at most 8 minutes, no
# network, only the image's torch and transformers plus this checkout), into ONE archive:
#
#   bash benchmarks/gpu_h200.sh [DEST]   # DEST (default: $OUT, else benchmarks/) gets
#                                        # gpu-h200.tar.gz (a gpu-h200/ folder inside)
#   MINDSKIP_GPU_BENCH_SMOKE=1 bash benchmarks/gpu_h200.sh /tmp/x   # CPU, tiny shape, ~1 min
#
# Parts (one process each, each under a hard timeout and the global deadline; a part cut
# short keeps what it wrote, and parts.tsv says how each ended):
#   checks   random weights in bf16, 8 layers of the Llama-3-8B shape: forced execute ==
#            dense, forced skip == hand-removed, mixed rows == each row alone, cached ==
#            uncached, captured decode == eager decode (mindskip.decode), per unit/routing
#   prefill  Llama-3-8B shape (32 layers, random bf16 weights), attn/mlp/block with 8 of 32
#            layers skipped (15, 17, ..., 29) vs dense vs the hand-removed ceiling:
#            prefill b1 x 2048, b8 x 2048 (python -m mindskip.profile)
#   captured the same variants, decode b1 x 512+128 and b16 x 1024+128, each decode step a
#            CUDA graph over a static cache, decisions fixed at prefill (python -m
#            mindskip.profile with the `captured` cache kind), 6 repeats
#   train    one router-training step vs one full fine-tuning step (AdamW), time and peak
#            memory (mindskip.train.benchmark_training_cost); all 32 layers in bf16 with
#            bf16 optimizer states (about 64 GB + activations; no fp32 master copy); on OOM
#            the layer count is halved and the result says so
#   eager    the decode regimes again, eager with the dynamic cache (launch-bound: 1 timed
#            repeat after the memory pass, and the b16 regime only if time is left)
# Needs: python3 with CUDA torch (2.11 on the image) and transformers >= 5.17. Nothing is
# installed; mindskip comes from this checkout (PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dest="${1:-${OUT:-benchmarks}}"
py="${PYTHON:-python3}"
smoke="${MINDSKIP_GPU_BENCH_SMOKE:-0}"
deadline="${MINDSKIP_GPU_BENCH_SECONDS:-470}"  # the whole run, archive included
tmp="$(mktemp -d)"
work="$tmp/gpu-h200"
mkdir -p "$work" "$dest"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$smoke" = 1 ]; then
    "$py" benchmarks/gpu_h200.py tiny-config "$work/tiny-shape"
    model="$work/tiny-shape" device=cpu dtype=float32 layers=() pattern=2,4 routed=4
    checks=(--length 8 --new-tokens 4 --decode-mode graph)
    prefill_grid=2x16x0 decode_grid=2x16x4 reps=(1 1) train=(--max-length 96 --steps 1)
else
    model=llama3-8b device=cuda dtype=bfloat16 layers=(--layers 8) pattern=15,17,19,21,23,25,27,29
    routed=16 checks=(--length 64 --new-tokens 16)
    prefill_grid=1x2048x0,8x2048x0 decode_grid=1x512x128,16x1024x128 reps=(6 1) train=()
fi

part() {  # part NAME LIMIT_S COMMAND... : run under a timeout, log, record the exit status
    local name=$1 limit=$2 left
    shift 2
    left=$((deadline - 15 - SECONDS))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        printf '%s\tskipped\t0\n' "$name" >>"$work/parts.tsv"
        return
    fi
    local start=$SECONDS
    echo "== $name (<= ${limit}s): $*" | tee -a "$work/commands.txt"
    timeout "$limit" "$@" >"$work/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$work/parts.tsv"
    echo "   exit $rc after $((SECONDS - start)) s"
    tail -n 3 "$work/$name.log"
}

{
    date -u +%FT%TZ
    echo "smoke=$smoke device=$device dtype=$dtype model=$model"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
    "$py" -c 'import sys
from importlib.metadata import version as v
print("python", sys.version.split()[0], *(f"{p} {v(p)}" for p in ("torch", "transformers")))'
    git -C "$root" rev-parse HEAD 2>/dev/null
    git -C "$root" status --short 2>/dev/null | head -20
} >"$work/env.txt" 2>&1
cat "$work/env.txt"

profile=(--model "$model" --shape-only --device "$device" --dtype "$dtype" --units attn,mlp,block
    --layers "$pattern" --num-routed "$routed" --decode-timer loop --keep-going --no-progress)
part checks 90 "$py" benchmarks/gpu_h200.py checks --out "$work" --model "$model" \
    "${layers[@]}" --device "$device" --dtype "$dtype" "${checks[@]}"
part prefill 80 "$py" -m mindskip.profile "${profile[@]}" --grid "$prefill_grid" \
    --caches dynamic --repeats "${reps[0]}" --warmup 1 --out "$work/prefill"
part captured 150 "$py" -m mindskip.profile "${profile[@]}" --grid "$decode_grid" \
    --caches captured --repeats "${reps[0]}" --warmup 0 --out "$work/captured"
part train 75 "$py" benchmarks/gpu_h200.py train --out "$work" --model "$model" \
    --device "$device" --dtype "$dtype" "${train[@]}"
# eager decode last: the slowest part (launch-bound, about 24 ms a step at b1); the
# profiler starts no new regime once its budget is spent, so the run ends in time
left=$((deadline - 20 - SECONDS))
part eager 240 "$py" -m mindskip.profile "${profile[@]}" --grid "$decode_grid" \
    --caches dynamic --repeats "${reps[1]}" --warmup 0 --budget-s $((left > 120 ? left - 100 : 20)) \
    --out "$work/eager"

"$py" benchmarks/gpu_h200.py summary "$work" >/dev/null 2>"$work/summary.log"
cat "$work/SUMMARY.md" 2>/dev/null
tar -czf "$dest/gpu-h200.tar.gz" -C "$tmp" gpu-h200
rm -rf "$tmp"
echo "done in ${SECONDS}s: $dest/gpu-h200.tar.gz"
