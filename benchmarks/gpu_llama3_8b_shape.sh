#!/usr/bin/env bash
# Llama-3-8B shape (random weights, bf16) on one GPU: dense vs MindSkip (forced pattern, 8 of
# 32 layers: 15,17,...,29) vs the same sublayers removed by hand (the ceiling), one process
# per part, interleaved repeats. Fits in about 8 minutes on an H200 (hard timeouts below).
#
#   bash benchmarks/gpu_llama3_8b_shape.sh [OUT]        # default OUT: benchmarks/gpu-llama3-8b-shape
#   PARTS="eager" bash benchmarks/gpu_llama3_8b_shape.sh # only part A
#   EXTRA_ARGS="--device cpu --dtype float32 --model smollm2-135m --grid 1x16x0" ...  # plumbing check
#
# Needs torch (CUDA) and transformers >= 5.17 in $PYTHON (default python3); mindskip is taken
# from this checkout (PYTHONPATH), nothing is installed. Parts:
#   A eager   dynamic cache, attn/mlp/block: prefill b1x2048, b8x2048; decode b1 ctx512,
#             b64 ctx1024, b16 ctx2048 (32 new tokens, 31 timed steps)      <= 230 s
#   B static  dynamic vs StaticCache (eager), attn only: decode b1 ctx512, b16 ctx1024 <= 110 s
#   C compiled StaticCache + torch.compile(mode=reduce-overhead), attn only: decode b1 ctx512
#             (compile time is spent in the warm-up; a part cut by its timeout leaves nothing) <= 140 s
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/gpu-llama3-8b-shape}"
parts="${PARTS:-eager static compiled}"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
mkdir -p "$out"
{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$py" -c 'import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))'
} | tee "$out/env.txt"

common=(--model llama3-8b --shape-only --device cuda --dtype bfloat16 --decode-timer loop
    --no-progress)
run() {  # run NAME TIMEOUT ARGS...
    local name=$1 limit=$2
    shift 2
    echo "== part $name (timeout ${limit}s): python -m mindskip.profile ${common[*]} $* ${EXTRA_ARGS:-} --out $out/$name" \
        | tee -a "$out/commands.txt"
    # shellcheck disable=SC2086  # EXTRA_ARGS is split on purpose
    timeout "$limit" "$py" -m mindskip.profile "${common[@]}" "$@" ${EXTRA_ARGS:-} --out "$out/$name" \
        >"$out/$name.log" 2>&1
    echo "   exit $? after ${SECONDS}s total" | tee -a "$out/commands.txt"
    [ -f "$out/$name/profile.md" ] && cat "$out/$name/profile.md"
}
case " $parts " in *" eager "*)
    run eager 230 --units attn,mlp,block --caches dynamic --repeats 3 --warmup 1 --budget-s 190 \
        --grid 1x2048x0,8x2048x0,1x512x32,64x1024x32,16x2048x32 ;;
esac
case " $parts " in *" static "*)
    run static 110 --units attn --caches dynamic,static --repeats 3 --warmup 1 --budget-s 70 \
        --grid 1x512x32,16x1024x32 ;;
esac
case " $parts " in *" compiled "*)
    run compiled 140 --units attn --caches dynamic,compiled --repeats 5 --warmup 3 \
        --grid 1x512x32 ;;
esac
echo "done in ${SECONDS}s; results under $out"
