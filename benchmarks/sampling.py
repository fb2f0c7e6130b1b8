"""Sampler throughput vs transformers' ``generate`` (PyTorch), and the fraction of the roofline.

    python benchmarks/sampling.py            # ~10 min on a 2-core CPU; writes benchmarks/results/sampling.json

Settings: SmolLM2-135M-Instruct at batch 1, 16, 64 and the zoo's ``tiny`` model at batch 64;
each with prompts of exactly 64 tokens and exactly 128 new tokens, plain sampling
(temperature 1, no top-k/top-p, no stop token) on both sides, same weights (SmolLM2: both
dequantize the same GGUF file; tiny: saved with ``save_pretrained`` and loaded by transformers),
f32, 2 threads. Ours also returns log-probs and entropies at every step; ``generate`` does not.

tokens_per_s = B * 128 / wall time of one full call (prefill + decode), median of the timed runs
after a warm-up (compilation excluded, reported separately).

The peer runs in a separate torch-only process, with whichever of 1 or 2 torch threads is faster.

Roofline: a call is a prefill step and 127 decoding steps. For each step, FLOPs (2 per
weight-multiply-add for the non-embedding weights and the unembedding at every new-token row,
plus 4 * H * Dh * context per row per layer for attention) and bytes (all weights read once,
plus the KV cache read, in f32) give a compute floor (FLOPs / matmul rate) and a memory floor
(bytes / copy rate); the step's floor is the larger. The rates are measured in the same run: an
f32 2048^3 matmul, and a 256 MiB array update (read + write). fraction_of_roofline = floor time
/ measured time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from jaxrl_llm import sampling  # noqa: E402
from jaxrl_llm.models import get_model, save_pretrained, zoo  # noqa: E402

PROMPT_LEN, NEW_TOKENS = 64, 128
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sampling.json")


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_rates() -> dict:
    """f32 matmul FLOP/s (2048^3) and copy bytes/s (read + write of a 256 MiB buffer), in jax."""
    a = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    t = median_time(lambda: mm(a).block_until_ready(), 5)
    flops = 2 * 2048 ** 3 / t
    x = jnp.ones((64 * 2 ** 20,), jnp.float32)
    upd = jax.jit(lambda x: x * 1.0001 + 1.0, donate_argnums=0)
    x = upd(x)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x = upd(x)
        x.block_until_ready()
        times.append(time.perf_counter() - start)
    return {"matmul_flops_per_s": flops, "copy_bytes_per_s": 2 * x.nbytes / statistics.median(times)}


def roofline_seconds(cfg, batch: int, rates: dict) -> float:
    """The floor time of one call: prefill + (NEW_TOKENS - 1) decoding steps (see module docstring)."""
    L, D, V = cfg.num_layers, cfg.hidden_size, cfg.vocab_size
    H, K, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    nonembed = cfg.num_params - V * D * (1 if cfg.tie_word_embeddings else 2)
    weight_bytes = 4 * cfg.num_params

    def step(rows_tokens: int, rows: int, context: float) -> float:
        flops = 2 * rows_tokens * nonembed + 2 * rows * V * D + 4 * rows_tokens * L * H * Dh * context
        kv_bytes = 4 * 2 * L * rows * K * Dh * (context + rows_tokens / rows)
        return max(flops / rates["matmul_flops_per_s"], (weight_bytes + kv_bytes) / rates["copy_bytes_per_s"])

    total = step(batch * PROMPT_LEN, batch, PROMPT_LEN / 2)  # causal prefill: mean context S/2
    for t in range(1, NEW_TOKENS):
        total += step(batch, batch, PROMPT_LEN + t)
    return total


def prompts(vocab: int, batch: int, seed: int, tokenizer=None) -> np.ndarray:
    """[batch, 64] prompt ids: windows of a real text for SmolLM2, random ids for tiny."""
    if tokenizer is None:
        return np.random.RandomState(seed).randint(3, vocab, (batch, PROMPT_LEN)).astype(np.int32)
    text = " ".join(f"Question {i}: a farmer has {i + 3} cows and buys {2 * i + 1} more; explain step by step "
                    f"how many cows the farmer owns now, and what that means for the milk." for i in range(400))
    ids = tokenizer(text)["input_ids"]
    return np.stack([ids[7 * b: 7 * b + PROMPT_LEN] for b in range(batch)]).astype(np.int32)


def ours(model, tokens, reps: int) -> tuple[float, float]:
    cfg = sampling.SamplingConfig(max_new_tokens=NEW_TOKENS)
    mask = np.ones_like(tokens)
    run = lambda seed: sampling.sample(model, tokens, mask, jax.random.key(seed), cfg).tokens.block_until_ready()
    start = time.perf_counter()
    run(0)
    first = time.perf_counter() - start
    seeds = iter(range(1, reps + 1))
    return median_time(lambda: run(next(seeds)), reps), first


def peer_main(model_dir: str, tokens_file: str, threads: int, reps: int) -> None:
    """Times transformers' generate in this (torch-only) process; prints the median seconds."""
    torch.set_num_threads(threads)
    if model_dir == "smollm2":
        path = zoo.smollm2_path()
        tm = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
    else:
        tm = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor(np.load(tokens_file), dtype=torch.long)

    def run():
        with torch.no_grad():
            out = tm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                              top_k=0, top_p=1.0, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                              pad_token_id=0)
        assert out.shape[1] == PROMPT_LEN + NEW_TOKENS

    run()
    print(f"PEER_SECONDS {median_time(run, reps)}")


def peer(model_dir: str, tokens: np.ndarray, reps: int) -> tuple[float, int]:
    """The peer's best time over 1 and 2 torch threads, each in a fresh process (no jax in it).

    With 2 OpenMP threads on a loaded 2-core machine ``generate`` can be ~10x slower than with 1
    (spinning barriers), so both are tried and the faster is kept.
    """
    best = (float("inf"), 0)
    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, tokens)
        for threads in (1, 2):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--peer", model_dir, f.name,
                                   str(threads), str(reps)], capture_output=True, text=True, check=True)
            seconds = float(proc.stdout.split("PEER_SECONDS")[-1])
            best = min(best, (seconds, threads))
    return best


def main():
    torch.set_num_threads(2)
    load_before = load_average()
    print(load_before, flush=True)
    rates = machine_rates()
    print(f"matmul {rates['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s, copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s",
          flush=True)

    smol, tok = get_model("smollm2-135m-instruct")
    tiny, _ = get_model("tiny")
    tiny_dir = tempfile.mkdtemp()
    save_pretrained(tiny, tiny_dir)

    settings = [("smollm2-135m-instruct", smol, "smollm2", 1, tok), ("smollm2-135m-instruct", smol, "smollm2", 16, tok),
                ("smollm2-135m-instruct", smol, "smollm2", 64, tok), ("tiny", tiny, tiny_dir, 64, None)]
    compiles_before = sampling.compile_count()
    results = []
    for name, model, tm, batch, tokenizer in settings:
        tokens = prompts(model.cfg.vocab_size, batch, batch, tokenizer)
        reps = 3 if batch < 64 or name == "tiny" else 2
        t_ours, t_first = ours(model, tokens, reps)
        t_peer, peer_threads = peer(tm, tokens, reps if name == "tiny" else 1)
        floor = roofline_seconds(model.cfg, batch, rates)
        row = {
            "model": name, "batch": batch, "prompt_tokens": PROMPT_LEN, "new_tokens": NEW_TOKENS,
            "tokens_per_s": batch * NEW_TOKENS / t_ours,
            "peer_tokens_per_s": batch * NEW_TOKENS / t_peer,
            "ratio_vs_peer": t_peer / t_ours,
            "fraction_of_roofline": floor / t_ours,
            "peer_fraction_of_roofline": floor / t_peer,
            "peer_torch_threads": peer_threads,
            "roofline_tokens_per_s": batch * NEW_TOKENS / floor,
            "first_call_s_incl_compile": t_first,
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    out = {
        "machine": {"cpus": os.cpu_count(), **rates, "load_before": load_before, "load_after": load_average()},
        "settings": "plain sampling (temperature 1, no top-k/p), no stop token, f32, 2 threads; peer = "
                    f"transformers {transformers.__version__} generate on torch {torch.__version__}",
        "sampler_compiles": sampling.compile_count() - compiles_before,
        "results": results,
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {RESULTS}; sampler compiles: {out['sampler_compiles']}; {out['machine']['load_after']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
