#!/usr/bin/env bash
# The GPU benchmark run, one script: forward+backward and sampling, ours (JAX) vs transformers
# (PyTorch), SmolLM2-135M architecture with random weights, bf16 parameters and compute; then ours
# alone on a 1B-class shape (zoo `llama-1b-random`) at [8, 2048]: attention `auto` (cuDNN) as is,
# the reference `xla` (f32 scores) under `--remat dots` (it does not fit otherwise, below), and
# `auto` under `--remat dots` too: the last two's ratio is what fused attention buys at that size.
# Sampling at that shape too (batch 64 and 256, 128 new tokens), the decode attention "ragged"
# (jaxrl_llm/kernels/ragged_attention.py: each row reads only its own KV blocks) and the reference
# "xla", against transformers' generate with its static cache; right after SmolLM2's sampling.
#
#     OUT=/some/dir bash benchmarks/gpu/run.sh
#
# Needs python3 with jax (CUDA), flax, optax, chex, transformers, torch (CUDA), safetensors,
# numpy; no download, no GGUF file, no pip install (jaxrl_llm is imported from this checkout).
# Writes to $OUT: env.log, run.log (one line per step), <step>.log (each step's full output),
# forward_backward_<B>x<S>.json, forward_backward_<model>_<B>x<S>_<attention>[_remat-<policy>].json,
# sampling.json, sampling_<model>.json, summary.txt (the table also printed at the end; with each
# step's compile time and peak device memory).
#
# Wall time is bounded by BUDGET_S (default 540 s): each step runs under `timeout`, capped by its
# own limit and by what is left of the budget; a step with under 30 s left is skipped. A failed
# or timed-out step is logged (its traceback is in the printed tail) and the next one runs.
# JAX_COMPILATION_CACHE_DIR (default /tmp/jax_cache) lets a rerun on the same machine skip the
# compiles (then first_call_s_incl_compile / compile_seconds no longer include compilation).
# SMOKE=1 runs the same steps at tiny sizes on the CPU (to check this script without a GPU).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/jaxrl_llm_gpu_bench}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# JAX preallocates this fraction of GPU memory; the rest is PyTorch's (the peer runs in the same
# process). Half each: ours at [8, 1024] with the reference attention needs ~15 GB (it keeps f32
# attention scores per layer). The 1B steps run without the peer and give JAX 0.95.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
BUDGET_S=${BUDGET_S:-540}
START=$(date +%s)
COMMON=(--weights random --dtype bfloat16 --device gpu)

step() {  # step NAME MAX_SECONDS COMMAND...
  local name=$1 max=$2 left limit t0 rc
  shift 2
  left=$(( BUDGET_S - ($(date +%s) - START) ))
  limit=$(( max < left ? max : left ))
  if (( limit < 30 )); then
    echo "== $name: skipped, ${left}s of the ${BUDGET_S}s budget left" | tee -a "$OUT/run.log"
    return
  fi
  echo "== $name (timeout ${limit}s): $*" | tee -a "$OUT/run.log"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  grep -v "Loading weights" "$OUT/$name.log" | tail -n 40
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s$( (( rc == 124 || rc == 137 )) && echo ' (TIMED OUT)')" \
    | tee -a "$OUT/run.log"
}

{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm --format=csv
  python3 --version
  timeout 90 python3 -c '
import jax, jaxlib, flax, optax, transformers
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "transformers", transformers.__version__)
print("jax.devices():", jax.devices(), "backend:", jax.default_backend())
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
import jaxrl_llm
print("jaxrl_llm from", jaxrl_llm.__file__)
'
} 2>&1 | tee "$OUT/env.log"

fb() {  # fb BxS MAX_SECONDS ITERS
  step "forward_backward_$1" "$2" python3 benchmarks/forward_backward.py "${COMMON[@]}" --batch "${1%x*}" \
    --seq "${1#*x}" --rounds 3 --iters "$3" --out "$OUT/forward_backward_$1.json"
}

# The 1B-class shape of the attention steps. The reference's f32 scores at [8, 2048] alone take
# 16 layers x 8 x 32 heads x 2048^2 x 4 B = 64 GiB when the backward keeps every layer's: on an
# 80 GB card that step does not fit. `--remat dots` (jaxrl_llm/models/remat.py) keeps the weight
# matmuls' outputs (~0.75 GiB a layer in bf16) and reruns attention in the backward, so the scores
# live one layer at a time (4 GiB, and as much for their gradient): ~45 GiB in all by this count,
# with the f32 [8, 2048, 128256] logits (7.8 GiB) and their gradient. Not yet run on a GPU.
BIG=llama-1b-random
fb_attention() {  # fb_attention BxS ATTENTION MAX_SECONDS ITERS [REMAT]: $BIG, ours only
  local remat=${5:-none} tag=""
  [[ $remat != none ]] && tag="_remat-$remat"
  step "forward_backward_${BIG}_$1_$2$tag" "$3" env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python3 \
    benchmarks/forward_backward.py "${COMMON[@]}" --model "$BIG" --attention "$2" --remat "$remat" --no-peer \
    --batch "${1%x*}" --seq "${1#*x}" --rounds 2 --iters "$4" --out "$OUT/forward_backward_${BIG}_$1_$2$tag.json"
}

if [[ ${SMOKE:-0} == 1 ]]; then  # this script's own check on a CPU machine: same steps, tiny sizes
  COMMON=(--weights random --dtype bfloat16 --device cpu)
  BIG=smollm2-135m-instruct  # a 1B model is no smoke test on a CPU; the steps' flags are what is checked
  fb 2x32 150 1
  step sampling 200 python3 benchmarks/sampling.py "${COMMON[@]}" --batch 1,2 --new-tokens 8 --reps 1 \
    --out "$OUT/sampling.json"
  step "sampling_$BIG" 200 python3 benchmarks/sampling.py "${COMMON[@]}" --model "$BIG" --batch 2 --new-tokens 8 \
    --reps 1 --cpu-meshes 1 --backend ragged,xla --peer-cache static --out "$OUT/sampling_$BIG.json"
  fb 1x16 120 1
  fb_attention 1x16 auto 120 1
  fb_attention 1x16 xla 120 1 dots
  fb_attention 1x16 auto 120 1 dots
else
  fb 8x256 150 10
  step sampling 200 python3 benchmarks/sampling.py "${COMMON[@]}" --batch 1,16,64,256 --new-tokens 128 --reps 3 \
    --out "$OUT/sampling.json"
  # ours on both backends first, then the peer (its first call includes torch.compile): the JSON
  # is rewritten after each row, so a step cut short keeps ours
  step "sampling_$BIG" 270 python3 benchmarks/sampling.py "${COMMON[@]}" --model "$BIG" --batch 64,256 \
    --new-tokens 128 --reps 3 --backend ragged,xla --peer-cache static --out "$OUT/sampling_$BIG.json"
  fb 32x256 120 5
  fb 8x1024 120 5
  fb_attention 8x2048 auto 150 3
  fb_attention 8x2048 xla 150 3 dots
  fb_attention 8x2048 auto 150 3 dots
fi

echo "== summary ($(( $(date +%s) - START ))s total)"
timeout 30 python3 benchmarks/gpu/summarize.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
